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


@pytest.fixture(scope="module")
def server(built_book):
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(built_book))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def _offline_cdn(message: str, server: str) -> bool:
    """A CDN script (MathJax) that cannot load because this machine has no internet.

    The published site loads it normally; a failure to load anything served by the book
    itself, or any JavaScript exception, still fails the test.
    """
    url = message.split(" ", 1)[0]
    return (url.startswith("https://") and not url.startswith(server)
            and "Failed to load resource" in message and "ERR_NAME_NOT_RESOLVED" in message)


def _pages(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*.html")
                  if not p.name.startswith(("genindex", "search")) and "_static" not in p.parts)


def _expected_figures(stem: str) -> int:
    from brainmri.core import paths

    path = paths.project_root() / "book" / "notebooks" / f"{stem}.ipynb"
    if not path.exists():
        return 0
    nb = nbformat.read(path, 4)
    return sum("image/png" in o.get("data", {}) for c in nb.cells for o in c.get("outputs", []))


def test_every_page_loads_without_errors_and_with_its_figures(browser, server, built_book):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    problems = []
    pages = _pages(built_book)
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
            expected = _expected_figures(Path(page).stem)
            shown = browser.execute_script(
                "return document.querySelectorAll('.cell_output img').length;")
            if shown < expected:
                problems.append(f"{page}: {shown} output figures shown, {expected} expected")
    assert not problems, "\n".join(problems)


def test_landing_page_screenshot(browser, server):
    browser.get(f"{server}/index.html")
    title = browser.title
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "landing.png"
    assert browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000
    assert "brainmri" in title.lower() or "brain" in title.lower()
