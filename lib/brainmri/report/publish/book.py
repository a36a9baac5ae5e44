"""Build the Jupyter Book from one run's executed notebooks.

``brainmri book --run quick`` copies ``results/<run>/notebooks/*.ipynb`` into
``book/notebooks/`` (a staging folder, not committed) and runs ``jupyter-book build``
with warnings as errors. A notebook that the table of contents lists but the run did
not execute gets a one-paragraph page saying so, and the build prints its name.
What jupyter-book and Sphinx print goes to ``_build/book.log``; the console gets the
book's location and Sphinx's warnings and errors.

The maths renderer travels with the book, so that equations render offline: MathJax 3
from the ``django-static-mathjax`` package (MathJax's own npm files) is copied into
``_build/static/mathjax/``, which ``_config.yml`` lists as a static folder and names in
``mathjax_path``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from brainmri.core import paths
from brainmri.core.errors import BrainMRIError

STAGE = Path("book") / "notebooks"
#: Static files the book serves (``html_static_path`` in _config.yml); not committed.
STATIC = Path("_build") / "static"
#: The MathJax component the book loads (the one Sphinx takes from a CDN by default).
MATHJAX_BUNDLE = "tex-mml-chtml.js"
#: MathJax's speech rule files the book keeps (its language, braille, their base).
SPEECH_RULES = ("base.json", "en.json", "nemeth.json")
#: Everything jupyter-book and Sphinx print (progress, library warnings): the console
#: gets the book's location and Sphinx's own warnings and errors only.
BUILD_LOG = Path("_build") / "book.log"
WARNING_LINE = re.compile(r"\b(?:WARNING|ERROR|CRITICAL|SEVERE):|^Traceback|^\w*Error: ")
#: At most this many warning lines on the console; the rest are in the log.
SHOWN_WARNINGS = 40


def _report_warnings(log: Path) -> int:
    """Print the build's warnings and errors (Sphinx's, not Python's deprecation notices)
    to stderr; return how many there were."""
    lines = [line for line in log.read_text(errors="replace").splitlines()
             if WARNING_LINE.search(line) and "DeprecationWarning" not in line]
    lines = list(dict.fromkeys(lines))
    for line in lines[:SHOWN_WARNINGS]:
        print(line, file=sys.stderr)
    if len(lines) > SHOWN_WARNINGS:
        print(f"... and {len(lines) - SHOWN_WARNINGS} more in {log}", file=sys.stderr)
    return len(lines)


def toc_titles(root: Path | None = None) -> dict[str, str | None]:
    """{stem: the title ``_toc.yml`` gives it, or None} for the executed notebooks it lists."""
    root = root or paths.project_root()
    toc = yaml.safe_load((root / "_toc.yml").read_text())
    titles = {}
    for part in toc.get("parts", []):
        for chapter in part.get("chapters", []):
            file = chapter.get("file", "")
            if file.startswith(STAGE.as_posix() + "/"):
                titles[file.split("/")[-1]] = chapter.get("title")
    return titles


def toc_notebooks(root: Path | None = None) -> list[str]:
    """Stems of the executed notebooks that ``_toc.yml`` lists."""
    return list(toc_titles(root))


def _retitle(nb, title: str) -> None:
    """Give the page the title the table of contents gives it: one source notebook run
    on two datasets (08b) would otherwise show two pages under one heading."""
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            continue
        lines = cell.source.splitlines()
        for i, line in enumerate(lines):
            if line.startswith("# "):
                lines[i] = f"# {title}"
                cell.source = "\n".join(lines)
                return


def stage_notebook(source: Path, target: Path, title: str | None = None) -> int:
    """Copy an executed notebook for the book without its stderr streams (TensorFlow's
    C++ log lines, library warnings): they are the run's log, not the chapter; the run
    folder keeps them. ``title`` replaces the page's first heading. Returns how many
    outputs were left out."""
    import nbformat

    nb = nbformat.read(source, 4)
    if title:
        _retitle(nb, title)
    dropped = 0
    for cell in nb.cells:
        outputs = cell.get("outputs", [])
        kept = [o for o in outputs
                if not (o.get("output_type") == "stream" and o.get("name") == "stderr")]
        dropped += len(outputs) - len(kept)
        if outputs:
            cell["outputs"] = kept
    nbformat.write(nb, target)
    return dropped


def stage(run_dir: Path, root: Path | None = None) -> list[str]:
    """Copy the run's notebooks into book/notebooks/; return the stems that were missing."""
    root = root or paths.project_root()
    if not (run_dir / "notebooks").is_dir():
        raise BrainMRIError(f"{run_dir}/notebooks does not exist: run the series first "
                            f"(make run PROFILE=...) or pick another run with --run.")
    target = root / STAGE
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    missing = []
    for stem, title in toc_titles(root).items():
        source = run_dir / "notebooks" / f"{stem}.ipynb"
        if source.exists():
            stage_notebook(source, target / f"{stem}.ipynb", title)
        else:
            missing.append(stem)
            title = stem.split("_", 1)[-1].replace("_", " ").replace("-", " ").capitalize()
            (target / f"{stem}.md").write_text(
                f"# {title}\n\nThe run `{run_dir.name}` shown in this book did not execute "
                f"`notebooks/{stem.split('-')[0]}.ipynb`"
                f"{' for ' + stem.split('-', 1)[1] if '-' in stem else ''}. Run the series "
                f"with a profile that includes it (see the appendix) to fill this page.\n")
    return missing


def stage_mathjax(root: Path | None = None) -> Path:
    """Copy MathJax into the book's static files, instead of loading it from a CDN that
    offline readers (and the browser test) cannot reach."""
    root = root or paths.project_root()
    try:
        import mathjax  # the django-static-mathjax package: MathJax's npm files, no Django
    except ImportError:
        raise BrainMRIError("django-static-mathjax is missing (the book's maths renderer): "
                            "run make env.") from None
    source = Path(mathjax.__file__).parent / "static" / "mathjax" / "es5"
    if not (source / MATHJAX_BUNDLE).is_file():
        raise BrainMRIError(f"{source} holds no {MATHJAX_BUNDLE}: reinstall "
                            f"django-static-mathjax (requirements.txt pins the version).")

    def unused(folder: str, names: list[str]) -> list[str]:
        """The other combined bundles and the SVG output (the book loads one bundle, which
        renders with CHTML): a third of the size; and the speech rules of languages other
        than the book's (MathJax's accessibility menu reads maths aloud in English or
        as Nemeth braille here): 3 MB more."""
        if Path(folder) == source:
            return [n for n in names if n.endswith(".js") and n != MATHJAX_BUNDLE]
        if Path(folder).name == "mathmaps":
            return [n for n in names if n not in SPEECH_RULES]
        return [n for n in names if n.startswith("svg")] if Path(folder).name == "output" else []

    target = root / STATIC / "mathjax"
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target, ignore=unused)
    return target


#: What a previous build leaves that the next one could show: its pages, and myst-nb's
#: glue cache (``<page>.glue.json``), which cross-page pastes read. myst-nb rewrites a
#: page's cache only when the page glues something, so a run whose chapter lacks a key
#: would silently show the previous run's value instead of failing the build.
PREVIOUS_BUILD = ("_build/html", "_build/jupyter_execute")


def clear_previous_build(root: Path) -> None:
    for folder in PREVIOUS_BUILD:
        shutil.rmtree(root / folder, ignore_errors=True)


def build(run: str = "quick", results_root: Path | None = None, strict: bool = True) -> Path:
    root = paths.project_root()
    run_dir = (results_root or paths.results_root()) / run
    missing = stage(run_dir, root)
    stage_mathjax(root)
    if missing:
        print(f"note: run {run!r} has no executed notebook for: {', '.join(missing)} "
              f"(placeholder pages used)", file=sys.stderr)
    clear_previous_build(root)
    jb = Path(sys.executable).parent / "jupyter-book"
    cmd = [str(jb if jb.exists() else "jupyter-book"), "build", str(root), "--builder", "html",
           "--all", *(["-W", "-n", "--keep-going"] if strict else [])]
    log = root / BUILD_LOG
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as out:
        result = subprocess.run(cmd, cwd=root, stdout=out, stderr=subprocess.STDOUT)
    shown = _report_warnings(log)
    if result.returncode != 0:
        raise BrainMRIError(
            f"jupyter-book build failed (exit {result.returncode}); "
            + ("the warnings above name the pages" if shown else "see the end of the log")
            + f". Full output: {log}")
    html = root / "_build" / "html"
    # The theme's source maps (3.5 MB) serve only someone debugging its minified files.
    for source_map in (html / "_static").rglob("*.map"):
        source_map.unlink()
    # Browsers ask for /favicon.ico whatever the page says, and the theme renders no icon
    # link here: serve the book's icon there too, so that no page logs a 404.
    favicon = yaml.safe_load((root / "_config.yml").read_text()).get("html", {}).get("favicon")
    if favicon:
        shutil.copy2(root / favicon, html / "favicon.ico")
    print(f"book built from results/{run}: {html / 'index.html'} (build log: {log})")
    return html
