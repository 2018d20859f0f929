"""The built book as a reader meets it: every page opened in headless Chromium, offline.

The book is built once a session, from nbval's execution of the chapters (run A,
see chapter_runs.py) with the flags of `make book`, and
served on 127.0.0.1. Set ADAMBOOK_HTML_DIR to check a book built elsewhere instead,
e.g. `ADAMBOOK_HTML_DIR=_build/html pytest tests/test_browser.py` after `make book`.

Every page gets a full-page screenshot at 1280 px and at 390 px (a phone) in
artifacts/browser/ (``<page>-1280.png``, ``<page>-390.png``, with report.json, all that
was recorded, and build.log), so that a person can look at what the test saw. With
CI=true the 1280 px one is the first screen only: the full page at 1280 px is the
costliest image to render (on a loaded 2-core machine, 40 s of the pass's 100 s),
and the checks measure the whole page either way.

The layout tests read measurements taken on the one visit of each page
(``browse._LAYOUT``): the page's width at 390 px, blocks and display equations wider
than their box at 1280 px, the verdict boxes, and the links to each figure.
"""

import os
import shutil
from pathlib import Path
from urllib.parse import urlsplit

import pytest

import browse
import book

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "artifacts" / "browser"

pytestmark = pytest.mark.book


@pytest.fixture(scope="session")
def artifacts():
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir(parents=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def book_html(request, artifacts, tmp_path_factory):
    given = os.environ.get("ADAMBOOK_HTML_DIR")
    if given:
        return Path(given).resolve()
    runs = request.getfixturevalue("chapter_runs")
    executed = {c.source: runs.reference(c).notebook for c in book.chapters(ROOT)}
    html, _ = book.build_html(ROOT, tmp_path_factory.mktemp("book") / "src", executed,
                              log=artifacts / "build.log")
    return html


@pytest.fixture(scope="session")
def pages(book_html, artifacts):
    if browse.find_chromium() is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI needs a Chromium for the browser test; `make test` installs "
                        "Debian's with apt-get when CI=true")
        pytest.skip("no Chromium here, so the pages were not opened: install Debian's "
                    "chromium, run `.venv/bin/playwright install chromium`, or set "
                    "ADAMBOOK_CHROMIUM to a Chromium binary")
    full = (NARROW,) if os.environ.get("CI") == "true" else None  # see above
    records = browse.browse_book(book_html, artifacts, full_page=full)
    browse.write_report(records, artifacts / "report.json")
    return records


def _failures(pages, check):
    lines = [f"{p.path}: {msg}" for p in pages for msg in check(p)]
    return "\n".join(lines)


WIDE, NARROW = browse.VIEWPORT["width"], browse.NARROW["width"]


def _png_size(path: Path) -> tuple[int, int]:
    """Width and height of a PNG, from its header."""
    head = Path(path).read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def test_every_page_opened(pages):
    opened = {p.path for p in pages}
    missing = [pg.html for pg in book.toc_pages(ROOT) if pg.html not in opened]
    assert not missing, f"pages of _toc.yml missing from the build: {missing}"


def test_every_page_photographed_at_both_widths(pages):
    """A screenshot of each page at 1280 px and at 390 px: the full page
    (the first screen at 1280 px when CI=true), so at least a viewport."""
    def check(p):
        for width, viewport in ((WIDE, browse.VIEWPORT), (NARROW, browse.NARROW)):
            shot = p.screenshots.get(width)
            if not shot or not Path(shot).is_file() or Path(shot).stat().st_size == 0:
                yield f"no screenshot at {width} px"
                continue
            w, h = _png_size(shot)
            if w < width or h < viewport["height"]:
                yield f"screenshot at {width} px is {w}x{h}, not a full page"

    failures = _failures(pages, check)
    assert not failures, failures


def test_no_page_wider_than_a_phone(pages):
    """At 390 px the page does not scroll sideways (document scrollWidth <= 390).

    Code, tables and display equations may scroll inside their own box; nothing may
    make the page itself wider. Listed: the innermost elements that reach past the
    right edge with no box around them that scrolls or clips.
    """
    def check(p):
        width = p.page_width.get(NARROW)
        if width is None:
            yield f"not measured at {NARROW} px"
        elif width > NARROW:
            yield f"page is {width} px wide at a {NARROW}-px viewport"
            for e in p.overflowing:
                yield (f"  {e['where']}: {e['element']} reaches {e['right']} px: "
                       f"{e['text']!r}")

    assert all(NARROW in p.page_width for p in pages), "the narrow pass did not run"
    failures = _failures(pages, check)
    assert not failures, f"pages wider than the viewport at {NARROW} px:\n{failures}"


def test_no_display_equation_wider_than_its_box(pages):
    """At 1280 px every display equation fits the text column (it does not scroll)."""
    def check(p):
        for eq in p.wide_equations:
            yield (f"{eq['label']}: {eq['width']} px in a {eq['box_width']}-px box: "
                   f"{eq['tex']!r}")

    assert sum(p.equations for p in pages) > 0, "no display equation: is the check looking?"
    failures = _failures(pages, check)
    assert not failures, f"display equations wider than their box at {WIDE} px:\n{failures}"


def test_no_block_scrolls_sideways(pages):
    """At 1280 px no code cell, output or table is wider than its box.

    For each: where it is (cell number counted from the top of the page, input or
    output), its content and box widths, and its longest line (a table: its first
    row).
    """
    def check(p):
        for b in p.scrolling_blocks:
            yield (f"{b['where']} ({b['element']}): {b['scroll_width']} px in a "
                   f"{b['box_width']}-px box: {b['text']!r}")

    failures = _failures(pages, check)
    assert not failures, f"blocks that scroll sideways at {WIDE} px:\n{failures}"


def test_every_chapter_shows_a_verdict_box(pages):
    """Each chapter (a notebook page of _toc.yml) shows at least one verdict box."""
    by_path = {p.path: p for p in pages}
    chapters = book.chapters(ROOT)
    assert chapters, "no chapters found in _toc.yml"
    problems = []
    for chapter in chapters:
        page = by_path.get(chapter.html)
        if page is None:
            problems.append(f"{chapter.html}: not opened")
        elif not page.verdict_boxes:
            problems.append(f"{chapter.html}: no div.admonition.verdict-holds, "
                            "verdict-qualified or verdict-fails")
    assert not problems, "chapters without a verdict box:\n" + "\n".join(problems)


def test_every_figure_is_referenced_from_the_body(pages):
    """Every figure with an id has a link to it on its page, outside the figure and
    outside the Summary section (a {numref} in the paragraph that discusses it)."""
    def check(p):
        for f in p.figures:
            if not f["body_refs"]:
                where = " (only from the Summary)" if f["summary_refs"] else ""
                yield f"figure #{f['id']} not referenced{where}: {f['caption']!r}"

    assert sum(len(p.figures) for p in pages) > 0, "no figure with an id: is the check looking?"
    failures = _failures(pages, check)
    assert not failures, f"figures not referenced from the body:\n{failures}"


def test_math_is_typeset(pages):
    def check(p):
        if p.mathjax_timeout:
            yield "MathJax did not finish within 30 s"
        if p.math_untypeset:
            yield f"{len(p.math_untypeset)} math node(s) not typeset, e.g. {p.math_untypeset[0]!r}"
        if p.math_nodes and p.mjx_containers < p.math_nodes:
            yield f"{p.math_nodes} math nodes but {p.mjx_containers} MathJax outputs"
        for e in p.mjx_errors:
            yield f"MathJax error: {e}"
        for raw in p.raw_tex:
            yield f"raw TeX left in the text, {raw}"

    assert sum(p.math_nodes for p in pages) > 0, "no page has math: is the check looking?"
    failures = _failures(pages, check)
    assert not failures, failures


def test_every_image_loads(pages):
    def check(p):
        for img in p.images:
            if not (img["complete"] and img["width"] > 0 and img["height"] > 0):
                yield f"image not loaded: {img}"

    assert sum(len(p.images) for p in pages) > 0, "no page has an image: is the check looking?"
    failures = _failures(pages, check)
    assert not failures, failures


def test_every_internal_link_resolves(pages, book_html):
    base = urlsplit(pages[0].final_url)._replace(path="/", query="", fragment="").geturl()
    ids = {p.final_url[len(base):]: set(p.ids) for p in pages}
    checked = 0

    def check(p):
        nonlocal checked
        links = list(p.links) + ([p.redirect_to] if p.redirect_to else [])
        for href in links:
            if href.startswith(base):
                checked += 1
            why = browse.resolve_link(href, base, book_html, ids)
            if why:
                yield f"{href[len(base):] if href.startswith(base) else href}: {why}"

    failures = _failures(pages, check)
    assert checked > 0, "no internal link found: is the check looking?"
    assert not failures, failures


def test_no_console_errors(pages):
    def check(p):
        yield from (f"console error: {e}" for e in p.console_errors)
        yield from (f"uncaught error: {e}" for e in p.page_errors)
        yield from (f"request failed: {e}" for e in p.failed_requests)
        yield from (f"server answered {code} for {path}" for path, code in p.server_errors)

    failures = _failures(pages, check)
    assert not failures, failures


def test_no_request_leaves_localhost(pages):
    assert all(p.requests for p in pages), "requests are not being recorded"
    failures = _failures(pages, lambda p: (f"request to {u}" for u in p.external_requests))
    assert not failures, failures


def _plain(text: str) -> str:
    """Text as compared: whitespace folded, and the curly quotes that Sphinx's
    smartquotes puts into parsed prose (the verdict box) made straight, as the
    ledger's pasted text has them."""
    text = text.replace("\u2019", "'").replace("\u2018", "'")
    text = text.replace("\u201c", '"').replace("\u201d", '"')
    return " ".join(text.split())


def test_ledger_rows_show_what_their_chapters_show(book_html):
    """Each row's verdict and measured numbers appear on the page its link opens."""
    from bs4 import BeautifulSoup

    ledger = BeautifulSoup((book_html / "chapters" / "ledger.html").read_text(),
                           "html.parser")
    rows = [tr for table in ledger.select("table") for tr in table.select("tbody tr")]
    assert len(rows) >= 15, f"{len(rows)} ledger rows rendered"
    problems, texts = [], {}
    for tr in rows:
        cells = tr.find_all("td")
        verdict = cells[2].get_text(" ", strip=True)
        measured = _plain(cells[4].get_text(" ", strip=True))
        link = cells[3].find("a", href=True)
        if not (verdict and measured and link):
            problems.append(f"row {cells[0].get_text()}: empty cell or no link")
            continue
        page = (book_html / "chapters" / link["href"].split("#")[0]).resolve()
        if page not in texts:  # several rows link into one chapter: parse it once
            texts[page] = _plain(BeautifulSoup(page.read_text(), "html.parser")
                                 .get_text(" ", strip=True))
        text = texts[page]
        for what in (verdict, measured):
            if what not in text:
                problems.append(f"row {cells[0].get_text()}: {what!r} not on {page.name}")
    assert not problems, "\n".join(problems)


#: A page with one of each fault the layout tests look for, and one of each thing
#: done right, to show that the measurements find them (without building the book).
_FAULTS_PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>faults</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body { margin: 0; } article { margin: 0 16px; max-width: 640px; }
pre { overflow: auto; } div.math { display: flex; overflow: hidden; }
div.math mjx-container { display: block; flex-grow: 1; overflow: auto; }</style>
<script>window.MathJax = {startup: {promise: Promise.resolve()}};  // typeset: none</script>
</head><body><article class="bd-article">
<section id="one"><h1>One</h1>
<div class="admonition verdict-holds"><p class="admonition-title">Holds: x</p></div>
<p>LONG_WORD</p>
<div class="cell"><div class="cell_input"><pre>short = 1</pre></div>
<div class="cell_output"><pre>LONG_LINE</pre></div></div>
<div class="math" id="equation-wide"><mjx-container display="true"><span
 style="display: inline-block; width: 2000px">a wide equation</span></mjx-container></div>
<div class="math" id="equation-narrow"><mjx-container display="true">x = 1</mjx-container></div>
<figure id="fig-body"><figcaption><a href="#fig-body">#</a> Referenced.</figcaption></figure>
<figure id="fig-summary"><figcaption><a href="#fig-summary">#</a> Summary only.
</figcaption></figure>
<p>As <a href="#fig-body">Fig. 1</a> shows.</p>
</section>
<section id="summary"><h2>Summary<a class="headerlink" href="#summary">#</a></h2>
<p>See <a href="#fig-summary">Fig. 2</a> and <a href="#fig-body">Fig. 1</a>.</p></section>
</article></body></html>
""".replace("LONG_WORD", "unbreakable_" * 8).replace("LONG_LINE", "wide output " * 12)


def test_layout_checks_find_known_faults(tmp_path):
    """The measurements behind the layout tests, on a page with known faults."""
    if browse.find_chromium() is None:
        pytest.skip("no Chromium here")
    html = tmp_path / "html"
    html.mkdir()
    (html / "faults.html").write_text(_FAULTS_PAGE)
    [page] = browse.browse_book(html, tmp_path / "shots")
    assert not page.mathjax_timeout
    assert page.page_width[WIDE] == WIDE
    assert page.page_width[NARROW] > NARROW
    assert [e["where"] for e in page.overflowing] == ['p in "One"'], page.overflowing
    assert [b["where"] for b in page.scrolling_blocks] == ['cell 1 output in "One"'], (
        page.scrolling_blocks)
    assert [e["label"] for e in page.wide_equations] == ["equation-wide"], page.wide_equations
    assert page.equations == 2
    assert [v["verdict"] for v in page.verdict_boxes] == ["verdict-holds"]
    refs = {f["id"]: (f["body_refs"], f["summary_refs"]) for f in page.figures}
    assert refs == {"fig-body": (1, 1), "fig-summary": (0, 1)}, refs
    for width in (WIDE, NARROW):
        assert _png_size(page.screenshots[width])[0] >= width
