"""The built book as a reader meets it: every page opened in headless Chromium, offline.

The book is built once a session, from the chapters executed for the
reproducibility test (run B, see chapter_runs.py) with the flags of `make book`, and
served on 127.0.0.1. Set ADAMBOOK_HTML_DIR to check a book built elsewhere instead,
e.g. `ADAMBOOK_HTML_DIR=_build/html pytest tests/test_browser.py` after `make book`.

Every page gets a full-page screenshot in artifacts/browser/ (with report.json, all
that was recorded, and build.log), so that a person can look at what the test saw.
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
    executed = {c.source: runs.second(c).notebook for c in book.chapters(ROOT)}
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
    records = browse.browse_book(book_html, artifacts)
    browse.write_report(records, artifacts / "report.json")
    return records


def _failures(pages, check):
    lines = [f"{p.path}: {msg}" for p in pages for msg in check(p)]
    return "\n".join(lines)


def test_every_page_opened_and_photographed(pages, book_html):
    opened = {p.path for p in pages}
    missing = [pg.html for pg in book.toc_pages(ROOT) if pg.html not in opened]
    assert not missing, f"pages of _toc.yml missing from the build: {missing}"
    for p in pages:
        assert p.screenshot and Path(p.screenshot).stat().st_size > 0, p.path


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
    problems = []
    for tr in rows:
        cells = tr.find_all("td")
        verdict = cells[2].get_text(" ", strip=True)
        measured = _plain(cells[4].get_text(" ", strip=True))
        link = cells[3].find("a", href=True)
        if not (verdict and measured and link):
            problems.append(f"row {cells[0].get_text()}: empty cell or no link")
            continue
        page = (book_html / "chapters" / link["href"].split("#")[0]).resolve()
        text = _plain(BeautifulSoup(page.read_text(), "html.parser")
                      .get_text(" ", strip=True))
        for what in (verdict, measured):
            if what not in text:
                problems.append(f"row {cells[0].get_text()}: {what!r} not on {page.name}")
    assert not problems, "\n".join(problems)
