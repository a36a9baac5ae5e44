"""Open every page of the built book in headless Chromium and check what a reader sees."""

import contextlib
import functools
import http.server
import os
import shutil
import threading
from pathlib import Path

import nbformat
import pytest

from test_weight import MAX_PAGE_BYTES

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


@pytest.fixture(scope="module",
                params=["quick", "reference"])
def shown_book(request):
    """The book as a reader gets it: built from the quick run (every code path), and from
    the committed reference run (the published book, its real figures and text). Each is
    built once per test session, whatever order the tests run in."""
    return request.getfixturevalue("built_book" if request.param == "quick"
                                   else "reference_book")


@contextlib.contextmanager
def _serving(folder: Path):
    """``folder`` served over HTTP on a free local port; yields its base URL."""
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(folder))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()


@pytest.fixture(scope="module")
def server(shown_book):
    with _serving(shown_book) as url:
        yield url


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
    return sum(any(k in o.get("data", {}) for k in ("image/png", "image/jpeg"))
               for c in nb.cells for o in c.get("outputs", []))


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


#: The pages a review looks at first (issue 20): the landing page, one model chapter, the
#: ablation, the benchmark and the explanations.
SCREENSHOTS = {"landing": "index.html",
               "model": "book/notebooks/08b_compact_cnn-nickparvar.html",
               "ablation": "book/notebooks/08c_shortcut_ablation.html",
               "benchmark": "book/notebooks/09_benchmark.html",
               "explainability": "book/notebooks/10_explainability.html"}


def test_landing_and_benchmark_pages_screenshots(browser, server, shown_book, request):
    """Screenshots of the pages a reader opens first, kept for review in
    _build/test-artifacts/ (<run>-<name>.png, names as in ``SCREENSHOTS``)."""
    from selenium.webdriver.support.ui import WebDriverWait

    run = request.node.callspec.params["shown_book"]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for name, page in SCREENSHOTS.items():
        browser.get(f"{server}/{page}")
        # the first page after the browser starts may still be painting (a blank 4 kB
        # shot in CI): wait for the document and its images before the screenshot
        WebDriverWait(browser, 20).until(lambda b: b.execute_script(
            "return document.readyState === 'complete' && "
            "Array.from(document.images).every(i => i.complete);"))
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


#: What a reader should never meet on a page, found in the main content (the article):
#: - a horizontal scroll bar (an element whose content is wider than its box and that
#:   scrolls: a wide table, a long line of code, cell input included), content that
#:   sticks out of the column or is clipped, or a page wider than the window;
#: - a raw markdown table (``|---|``) or a Python repr (``dtype:``, ``PosixPath(``, a
#:   list of quoted names, ``<... object at 0x...>``) in the prose or in an output; the
#:   code of a cell and code in the prose are code, and are not searched;
#: - a log: a stderr or traceback output block, Keras epoch lines and progress bars,
#:   TensorFlow's C++ log lines, Python warnings, Keras downloads.
#: Returns {rule, snippet} per finding, and the images the page shows (for its weight).
_READER = r"""
const article = document.querySelector('main article') || document.querySelector('main')
  || document.body;
const found = [];
const clean = s => s.replace(/\s+/g, ' ').trim();
const shown = el => el.innerText ?? el.textContent ?? '';  // SVG has no innerText
const add = (rule, snippet) => found.push({rule: rule, snippet: clean(snippet).slice(0, 120)});
const name = el => (el.closest('.cell_input') ? 'cell code ' : el.closest('.cell_output')
                   ? 'cell output ' : '') + el.tagName.toLowerCase()
  + (typeof el.className === 'string' && el.className.trim()
     ? '.' + el.className.trim().split(/\s+/).slice(0, 3).join('.') : '');
const doc = document.documentElement;
if (doc.scrollWidth > doc.clientWidth + 1) {
  add('page scrolls sideways', `page ${doc.scrollWidth} px wide in a ${doc.clientWidth} px window`);
}
const right = article.getBoundingClientRect().right;
const reported = [];
const margin = 'mjx-container, .margin, .sidebar, aside, .headerlink';
for (const el of article.querySelectorAll('*')) {
  if (!el.clientWidth || reported.some(r => r.contains(el)) || el.closest(margin)) continue;
  const overflow = getComputedStyle(el).overflowX;
  const wider = el.scrollWidth > el.clientWidth + 1;
  const text = `${name(el)}: ${el.scrollWidth} px of content in ${el.clientWidth} px: `
    + shown(el).slice(0, 60);
  if (wider && (overflow === 'auto' || overflow === 'scroll')) {
    add('horizontal scroll bar', text); reported.push(el);
  } else if (wider && (overflow === 'hidden' || overflow === 'clip')
             && !el.matches('span.math')) {  // inline maths: a glyph's overhang, not text
    add('content clipped', text); reported.push(el);
  } else if (el.getBoundingClientRect().right > right + 1) {
    let scroller = false;  // inside a box that scrolls or clips: reported there if wide
    for (let a = el.parentElement; a && a !== article; a = a.parentElement) {
      if (getComputedStyle(a).overflowX !== 'visible') { scroller = true; break; }
    }
    if (!scroller) {
      const end = Math.round(el.getBoundingClientRect().right);
      add('wider than the column', `${name(el)} ends at ${end} px, the column at `
          + `${Math.round(right)} px: ` + shown(el).slice(0, 60));
      reported.push(el);
    }
  }
}
for (const el of article.querySelectorAll('.output.stderr')) add('stderr output', shown(el));
for (const el of article.querySelectorAll('.output.traceback')) add('traceback', shown(el));
const rules = [
  ['raw markdown table', /\|\s*:?-{3,}:?\s*\|/],
  ['Python repr', new RegExp([
    String.raw`\bdtype: \w+`, String.raw`\bdtype=\w+`, String.raw`\b(?:Posix|Windows)?Path\(`,
    String.raw`<[\w.]+ object at 0x[0-9a-fA-F]+>`, String.raw`<Figure size \d+x\d+ with`,
    String.raw`\barray\(\[`,
    String.raw`\[\s*(['"])[^'"\n\]]*\1(?:\s*,\s*(['"])[^'"\n\]]*\2)*\s*\]`].join('|'))],
  ['log output', new RegExp([
    String.raw`\bEpoch \d+/\d+`, '\u2501{3}', String.raw`\b\w+\.cc:\d+\]`,
    String.raw`node_def_util\.cc`, String.raw`^\s*[IWEF]\d{4} \d\d:\d\d:\d\d`,
    String.raw`^\s*\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWEF] `,
    String.raw`WARNING:(?:absl|tensorflow)`, String.raw`\b[A-Z]\w*Warning: `,
    String.raw`^Downloading data from `,
    String.raw`\d+%\|[\u2588\u2589\u258a\u258b\u258c\u258d\u258e\u258f ]*\|`].join('|'), 'm')],
];
const walker = document.createTreeWalker(article, NodeFilter.SHOW_TEXT);
for (let node = walker.nextNode(); node; node = walker.nextNode()) {
  const el = node.parentElement;
  if (!el || el.closest('script, style, mjx-container, .cell_input')) continue;
  if (el.closest('pre, code') && !el.closest('.cell_output')) continue;  // code, not output
  if (el.closest('.output.stderr, .output.traceback')) continue;  // reported as a block
  if (!(el.checkVisibility ? el.checkVisibility() : el.getClientRects().length)) continue;
  const text = node.textContent;
  for (const [rule, pattern] of rules) {
    const m = pattern.exec(text);
    if (m) add(rule, text.slice(Math.max(0, m.index - 40), m.index + 60));
  }
}
return {found: found,
        images: Array.from(document.images).map(i => i.currentSrc || i.src).filter(s => s)};
"""


def _reader_problems(browser, base: str, book: Path, page: str) -> list[str]:
    """What a reader should not meet on ``page`` (see _READER), and its weight: HTML and
    images over MAX_PAGE_BYTES. One line per finding: page, rule, snippet."""
    from urllib.parse import unquote, urlparse

    browser.get(f"{base}/{page}")
    seen = browser.execute_script(_READER)
    lines, per_rule = [], {}
    for item in seen["found"]:
        per_rule.setdefault(item["rule"], []).append(item["snippet"])
    for rule, snippets in per_rule.items():
        more = f" (and {len(snippets) - 3} more)" if len(snippets) > 3 else ""
        lines += [f"{page}: {rule}: {snippet!r}" for snippet in snippets[:3]]
        if more:
            lines[-1] += more
    files = {book / unquote(urlparse(src).path).lstrip("/") for src in seen["images"]
             if src.startswith(base)}
    weight = (book / page).stat().st_size + sum(f.stat().st_size for f in files if f.is_file())
    if weight > MAX_PAGE_BYTES:
        lines.append(f"{page}: page over {MAX_PAGE_BYTES / 1e6:.0f} MB: "
                     f"{weight / 1e6:.1f} MB with its {len(files)} images")
    return lines


def test_every_page_reads_as_a_report(browser, server, shown_book):
    """At 1280 px, no page scrolls sideways, shows a repr, a raw table or a log, or weighs
    over 3 MB; every finding of every page is listed in one failure."""
    problems = []
    for page in _pages(shown_book):
        problems += _reader_problems(browser, server, shown_book, page)
    assert not problems, f"{len(problems)} findings:\n" + "\n".join(problems)


#: One page per rule of _READER, and a clean page that uses what a page may use.
_BAD_PAGES = {
    "scroll.html": '<div style="overflow-x:auto"><table><tr><td style="white-space:nowrap">'
                   + "wide column " * 200 + "</td></tr></table></div>",
    "code.html": '<div class="highlight"><pre style="overflow-x:auto">make report '
                 + "--flag " * 200 + "</pre></div>",
    "sticks.html": '<img alt="" style="width:2000px;height:10px" src="">',
    "clipped.html": '<pre style="overflow:hidden">' + "x" * 2000 + "</pre>",
    "table.html": "<p>| model | accuracy |\n|---|---:|\n| a | 1 |</p>",
    "series.html": '<div class="cell_output"><pre>glioma 826\nName: files found, dtype: int64'
                   "</pre></div>",
    "path.html": "<p>Written to PosixPath('results/reference/claims.csv').</p>",
    "tags.html": "<div class=\"cell_output\"><pre>['relu_cnn-sartaj', 'compact_cnn-sartaj']"
                 "</pre></div>",
    "stderr.html": '<div class="cell_output"><div class="output stderr"><pre>some warning'
                   "</pre></div></div>",
    "epochs.html": '<div class="cell_output"><pre>Epoch 1/40</pre></div>',
    "progress.html": '<div class="cell_output"><pre>' + "\u2501" * 20
                     + " 12s 80ms/step</pre></div>",
    "traceback.html": '<div class="cell_output"><div class="output traceback"><pre>'
                      "KeyError: 'x'</pre></div></div>",
    "tf.html": '<div class="cell_output"><pre>2026-11-26 05:59:03.249839: W tensorflow/core/'
               "framework/op_kernel.cc:1857] OP_REQUIRES failed: node_def_util.cc</pre></div>",
    "heavy.html": '<img alt="" style="width:10px" src="_images/heavy.png">',
}
_CLEAN_PAGE = (
    "<p>Accuracy 98.3 % (95 % CI 97.6-98.9) on 1,311 images; see <code>['a', 'b']</code> and "
    "<code>PosixPath('x')</code> in code.</p>"
    '<div class="cell_input"><pre>df.astype(int)  # dtype: int64, Epoch 1/2</pre></div>'
    '<div class="highlight"><pre>make report</pre></div>'
    '<table><tr><th>model</th><td>0.983</td></tr></table>'
    '<div class="cell_output"><img alt="" style="max-width:100%" src="_images/light.png">'
    "</div>")


def _page(body: str) -> str:
    return ('<!DOCTYPE html><html><head><meta charset="utf-8"><title>t</title></head><body>'
            f'<main><article style="width:676px">{body}</article></main></body></html>')


def test_reader_rules_fire_on_bad_pages_and_not_on_a_clean_one(browser, tmp_path):
    """Each rule of the reader check, on a tiny page made to break it (no book needed)."""
    from PIL import Image

    (tmp_path / "_images").mkdir()
    Image.new("RGB", (20, 20)).save(tmp_path / "_images" / "light.png")
    heavy = tmp_path / "_images" / "heavy.png"
    Image.new("RGB", (20, 20)).save(heavy)
    with heavy.open("ab") as f:  # still a valid PNG, with 3 MB of trailing bytes
        f.write(b"\0" * MAX_PAGE_BYTES)
    for name, body in {**_BAD_PAGES, "clean.html": _CLEAN_PAGE}.items():
        (tmp_path / name).write_text(_page(body))
    expected = {"scroll.html": ["horizontal scroll bar"],
                "code.html": ["horizontal scroll bar"],
                "sticks.html": ["wider than the column", "page scrolls sideways"],
                "clipped.html": ["content clipped"], "table.html": ["raw markdown table"],
                "series.html": ["Python repr"], "path.html": ["Python repr"],
                "tags.html": ["Python repr"], "stderr.html": ["stderr output"],
                "traceback.html": ["traceback"], "epochs.html": ["log output"],
                "progress.html": ["log output"], "tf.html": ["log output"],
                "heavy.html": ["page over 3 MB"]}
    with _serving(tmp_path) as base:
        found = {name: _reader_problems(browser, base, tmp_path, name)
                 for name in [*_BAD_PAGES, "clean.html"]}
    assert found.pop("clean.html") == []
    missed = {name: lines for name, lines in found.items()
              if not all(any(f": {rule}" in line for line in lines) for rule in expected[name])}
    assert not missed, missed
    assert any("Name: files found, dtype: int64" in line for line in found["series.html"])
