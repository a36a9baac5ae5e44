"""The report stays light enough to clone, review and read: every committed executed
notebook at most 2 MB, the built book at most 25 MB, each of its pages (HTML and the
images it shows) at most 3 MB. Chapter 10 alone once weighed 13 MB (its maps as PNG)."""

import re
from pathlib import Path

import pytest

from brainmri.core import paths

MB = 1_000_000
#: Largest executed notebook of the committed run.
MAX_NOTEBOOK_BYTES = 2 * MB
#: Largest built book: every file of its html folder (pages, images, sources, static).
MAX_BOOK_BYTES = 25 * MB
#: Largest page: its HTML and the images it shows (tests/test_browser.py checks it too,
#: from what the browser loads).
MAX_PAGE_BYTES = 3 * MB

REFERENCE = paths.project_root() / "results" / "reference" / "notebooks"


def _mb(n: int) -> str:
    return f"{n / MB:.1f} MB"


def heavy_notebooks(folder: Path) -> list[str]:
    """Executed notebooks of ``folder`` over the limit, one line each."""
    return [f"{p.name}: {_mb(p.stat().st_size)}" for p in sorted(folder.glob("*.ipynb"))
            if p.stat().st_size > MAX_NOTEBOOK_BYTES]


def test_every_committed_executed_notebook_is_at_most_2_mb():
    if not list(REFERENCE.glob("*.ipynb")):
        pytest.skip("no committed reference run in this checkout")
    heavy = heavy_notebooks(REFERENCE)
    assert not heavy, (f"executed notebooks over {_mb(MAX_NOTEBOOK_BYTES)} in "
                       f"results/reference/notebooks: " + "; ".join(heavy))


@pytest.mark.slow
def test_every_executed_notebook_of_the_quick_run_is_at_most_2_mb(quick_run):
    """Every chapter's outputs at the quick profile's sizes: the same code paths (maps as
    JPEG, no training logs) that keep the reference run's notebooks light."""
    folder = quick_run["run_dir"] / "notebooks"
    sizes = {p.name: p.stat().st_size for p in folder.glob("*.ipynb")}
    assert len(sizes) >= 10, sorted(sizes)
    largest = max(sizes, key=sizes.get)
    print(f"largest executed notebook of the quick run: {largest}, {_mb(sizes[largest])}")
    assert not heavy_notebooks(folder), heavy_notebooks(folder)


_IMG = re.compile(r"""<img\b[^>]*?\bsrc=["']([^"']+)["']""", re.IGNORECASE)


def page_bytes(html_root: Path, page: Path) -> int:
    """A page's HTML plus the local images it shows (each counted once)."""
    images = {(page.parent / src.split("#")[0].split("?")[0]).resolve()
              for src in _IMG.findall(page.read_text(errors="replace"))
              if not src.startswith(("data:", "http://", "https://"))}
    return page.stat().st_size + sum(p.stat().st_size for p in images if p.is_file())


def book_weight_problems(html_root: Path) -> list[str]:
    """What breaks the book's size limits, one line each (empty when none)."""
    total = sum(p.stat().st_size for p in html_root.rglob("*") if p.is_file())
    problems = [] if total <= MAX_BOOK_BYTES else [
        f"book: {_mb(total)} in {html_root.name}/ (at most {_mb(MAX_BOOK_BYTES)})"]
    for page in sorted(html_root.rglob("*.html")):
        size = page_bytes(html_root, page)
        if size > MAX_PAGE_BYTES:
            problems.append(f"{page.relative_to(html_root)}: {_mb(size)} with its images "
                            f"(at most {_mb(MAX_PAGE_BYTES)})")
    return problems


def test_book_weight_rules_fire(tmp_path):
    """The rules on a tiny book: a heavy image makes its page (and the book) too heavy."""
    html = tmp_path / "html"
    (html / "_images").mkdir(parents=True)
    (html / "_images" / "map.jpg").write_bytes(b"\xff" * (MAX_PAGE_BYTES + 1))
    (html / "light.html").write_text("<p>text</p>")
    (html / "heavy.html").write_text('<p><img alt="" src="_images/map.jpg#x"></p>')
    (html / "_sources").mkdir()
    (html / "_sources" / "big.ipynb").write_bytes(b"0" * MAX_BOOK_BYTES)
    problems = book_weight_problems(html)
    assert len(problems) == 2, problems
    assert problems[0].startswith("book: 28.0 MB")
    assert problems[1].startswith("heavy.html: 3.0 MB")
    (html / "_sources" / "big.ipynb").unlink()
    (html / "_images" / "map.jpg").write_bytes(b"\xff" * 1000)
    assert book_weight_problems(html) == []


@pytest.mark.slow
def test_quick_book_is_at_most_25_mb_and_each_page_3_mb(built_book):
    """The quick run's book: every code path of every chapter."""
    problems = book_weight_problems(built_book)
    assert not problems, "\n".join(problems)


@pytest.mark.slow
def test_reference_book_is_at_most_25_mb_and_each_page_3_mb(reference_book):
    """The committed reference run's book: the one readers get."""
    problems = book_weight_problems(reference_book)
    assert not problems, "\n".join(problems)
