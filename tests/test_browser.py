"""Open every page of the built book in headless Chromium and check what a reader sees."""

import functools
import http.server
import os
import shutil
import threading
from pathlib import Path

import nbformat
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.browser]

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
ARTIFACTS = Path(__file__).resolve().parent.parent / "_build" / "test-artifacts"


@pytest.fixture(scope="module")
def browser():
    if not (CHROMIUM and CHROMEDRIVER):
        message = "headless Chromium/chromedriver not installed (make browser-deps)"
        if os.environ.get("BRAINMRI_REQUIRE_BROWSER") == "1":
            pytest.fail(message)
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--window-size=1280,900",
                 "--disable-dev-shm-usage"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


@pytest.fixture(scope="module", params=["quick", "reference"])
def shown_book(request):
    """The book as a reader gets it: built from the quick run (every code path), and from
    the committed reference run (the published book, its real figures and text). Each is
    built once per test session, whatever order the tests run in."""
    return request.getfixturevalue("built_book" if request.param == "quick"
                                   else "reference_book")


@pytest.fixture(scope="module")
def server(shown_book):
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(shown_book))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def _offline_cdn(message: str, server: str) -> bool:
    """A CDN resource that cannot load because this machine has no internet.

    None is expected (MathJax ships with the book, see test_maths_render_offline); a
    failure to load anything served by the book itself, or any JavaScript exception,
    still fails the test.
    """
    url = message.split(" ", 1)[0]
    return (url.startswith("https://") and not url.startswith(server)
            and "Failed to load resource" in message and "ERR_NAME_NOT_RESOLVED" in message)


def _pages(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*.html")
                  if not p.name.startswith(("genindex", "search")) and "_static" not in p.parts)


def _expected_figures(book: Path, stem: str) -> int:
    """Figures in the executed notebook the page ``stem`` of ``book`` was built from."""
    path = book.parent / "notebooks" / f"{stem}.ipynb"
    if not path.exists():
        return 0
    nb = nbformat.read(path, 4)
    return sum("image/png" in o.get("data", {}) for c in nb.cells for o in c.get("outputs", []))


def test_every_page_loads_without_errors_and_with_its_figures(browser, server, shown_book):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    problems = []
    pages = _pages(shown_book)
    assert "index.html" in pages and len(pages) > 10
    for page in pages:
        browser.get(f"{server}/{page}")
        browser.execute_script("window.scrollTo(0, document.body.scrollHeight);")
        broken = browser.execute_script(
            "return Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0))"
            ".map(i => i.getAttribute('src'));")
        if broken:
            problems.append(f"{page}: images not loaded: {broken}")
        errors = [e["message"] for e in browser.get_log("browser")
                  if e["level"] == "SEVERE" and not _offline_cdn(e["message"], server)]
        if errors:
            problems.append(f"{page}: console errors: {errors}")
        if page.startswith("book/notebooks/"):
            expected = _expected_figures(shown_book, Path(page).stem)
            shown = browser.execute_script(
                "return document.querySelectorAll('.cell_output img').length;")
            if shown < expected:
                problems.append(f"{page}: {shown} output figures shown, {expected} expected")
    assert not problems, "\n".join(problems)


def test_landing_and_benchmark_pages_screenshots(browser, server, shown_book, request):
    """Screenshots of the two pages a reader opens first, kept for review in
    _build/test-artifacts/ (<run>-landing.png, <run>-benchmark.png)."""
    run = request.node.callspec.params["shown_book"]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for name, page in (("landing", "index.html"),
                       ("benchmark", "book/notebooks/09_benchmark.html")):
        browser.get(f"{server}/{page}")
        shot = ARTIFACTS / f"{run}-{name}.png"
        assert browser.save_screenshot(str(shot))
        assert shot.stat().st_size > 10_000
        assert "brain" in browser.title.lower() or name != "landing"
        headings = browser.execute_script(
            "return Array.from(document.querySelectorAll('main h1')).map(h => h.textContent);")
        assert headings, f"{page}: no title shown"


#: Resolves once MathJax has typeset the page ('none': the page has no maths, so Sphinx
#: loads no MathJax; 'missing': maths but no MathJax after 20 s).
_TYPESET = """
const done = arguments[arguments.length - 1];
if (!document.querySelector('.math.notranslate')) { done('none'); return; }
const start = Date.now();
const wait = () => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
    MathJax.startup.promise.then(() => done('typeset'), e => done('failed: ' + e));
  } else if (Date.now() - start > 20000) { done('missing'); } else { setTimeout(wait, 100); }
};
wait();
"""

#: What a reader sees of the maths: raw TeX delimiters left in visible text (outside
#: code), math elements without MathJax output, TeX errors, and where MathJax came from.
_MATHS = r"""
const raw = [];
const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
for (let node = walker.nextNode(); node; node = walker.nextNode()) {
  const el = node.parentElement;
  if (!el || el.closest('pre, code, script, style, textarea')) continue;
  if (!(el.checkVisibility ? el.checkVisibility() : el.getClientRects().length)) continue;
  if (/\\[(\[]/.test(node.textContent)) raw.push(node.textContent.trim().slice(0, 60));
}
const maths = Array.from(document.querySelectorAll('.math.notranslate'));
return {
  raw: raw,
  maths: maths.length,
  rendered: maths.filter(m => m.querySelector('mjx-container')).length,
  errors: Array.from(document.querySelectorAll('mjx-merror')).map(e => e.textContent),
  scripts: Array.from(document.scripts).map(s => s.src).filter(s => /mathjax/i.test(s)),
};
"""


def test_maths_render_offline_on_every_page(browser, server, shown_book):
    r"""MathJax ships with the book: every page's maths is typeset without the internet,
    so no reader sees raw TeX such as \(10^{-4}\)."""
    browser.set_script_timeout(30)
    problems, maths_per_page = [], {}
    for page in _pages(shown_book):
        browser.get(f"{server}/{page}")
        status = browser.execute_async_script(_TYPESET)
        seen = browser.execute_script(_MATHS)
        maths_per_page[page] = seen["maths"]
        if status not in ("none", "typeset"):
            problems.append(f"{page}: MathJax {status}")
        if seen["raw"]:
            problems.append(f"{page}: raw TeX visible: {seen['raw'][:3]}")
        if seen["rendered"] < seen["maths"]:
            problems.append(f"{page}: {seen['maths'] - seen['rendered']} of {seen['maths']} "
                            f"formulas not typeset")
        if seen["errors"]:
            problems.append(f"{page}: TeX errors: {seen['errors'][:3]}")
        foreign = [src for src in seen["scripts"] if not src.startswith(server)]
        if foreign:
            problems.append(f"{page}: MathJax not served by the book: {foreign}")
    assert not problems, "\n".join(problems)
    assert maths_per_page.get("book/metrics.html", 0) > 20, "the metrics chapter lost its maths"
