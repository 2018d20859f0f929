"""Open every page of a built book in headless Chromium and record what a reader meets.

Used by ``tests/test_browser.py``. The book is served by a static file server on
127.0.0.1; Debian's Chromium (``/usr/bin/chromium``) is driven by Playwright, which is
only the driver here: no browser of Playwright's own is ever downloaded or used.
Every request that leaves 127.0.0.1 is recorded and aborted, so the page sees an
offline machine even if the machine is not.
"""

from __future__ import annotations

import functools
import http.server
import json
import re
import shutil
import tempfile
import threading
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

CHROMIUM = Path("/usr/bin/chromium")
#: Where else a Chromium may be: other distributions' names and Google Chrome.
OTHER_CHROMIUMS = ("/usr/bin/chromium-browser", "/usr/bin/google-chrome",
                   "/Applications/Chromium.app/Contents/MacOS/Chromium",
                   "/Applications/Google Chrome.app/Contents/MacOS/Google Chrome")


def find_chromium() -> Path | None:
    """The Chromium to drive: ``$ADAMBOOK_CHROMIUM``, Debian's, another installed
    one, or Playwright's own (after ``playwright install chromium``); None if none.
    """
    import os

    given = os.environ.get("ADAMBOOK_CHROMIUM")
    if given:
        return Path(given) if Path(given).exists() else None
    for path in (CHROMIUM, *map(Path, OTHER_CHROMIUMS)):
        if path.exists():
            return path
    try:
        from playwright.sync_api import sync_playwright

        with sync_playwright() as pw:
            own = Path(pw.chromium.executable_path)
        return own if own.exists() else None
    except Exception:
        return None
#: The project's flags for headless Chromium; launch_persistent_context adds a fresh
#: --user-data-dir (a new temporary profile each session).
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
VIEWPORT = {"width": 1280, "height": 900}
#: A phone held upright (an iPhone 12-15 is 390 CSS px wide). Each page is laid out
#: and photographed at this width too, after the checks at VIEWPORT's.
NARROW = {"width": 390, "height": 844}
#: Folders of the HTML build that hold assets, not pages.
ASSET_DIRS = ("_static", "_sources", "_images", "_downloads")
#: sphinx-thebe 0.3.1 puts ``const THEBE_JS_URL`` into two scripts of every page, and
#: the second declaration throws. It is harmless (launch buttons are off) and it is the
#: only error the test allows: by exact name and message, once per page.
KNOWN_PAGE_ERROR = ("SyntaxError", "Identifier 'THEBE_JS_URL' has already been declared")

# Runs in the page once it has loaded and MathJax has finished.
_INSPECT = r"""
async () => {
  // Images: make lazy ones load, then wait until each has been decoded (or failed).
  const imgs = [...document.images];
  imgs.forEach(i => { i.loading = 'eager'; });
  await Promise.race([
    Promise.all(imgs.map(i => i.decode().catch(() => null))),
    new Promise(r => setTimeout(r, 15000)),
  ]);
  const maths = [...document.querySelectorAll('.math')];
  // The prose a reader reads: the page without code, scripts and typeset math.
  const prose = document.body.cloneNode(true);
  prose.querySelectorAll('pre, code, script, style, textarea, mjx-container, .highlight')
       .forEach(e => e.remove());
  const ids = [...document.querySelectorAll('[id]')].map(e => e.id)
      .concat([...document.querySelectorAll('a[name]')].map(a => a.name));
  return {
    title: document.title,
    math_nodes: maths.length,
    math_untypeset: maths.filter(m => !m.querySelector('mjx-container'))
                         .map(m => m.textContent.trim().slice(0, 80)),
    mjx_containers: document.querySelectorAll('mjx-container').length,
    // TeX errors: MathJax shows a parse error as merror, and an undefined macro (its
    // noundefined extension) as the macro's name in red text.
    mjx_errors: [...document.querySelectorAll('mjx-merror')]
                    .map(e => (e.getAttribute('data-mjx-error') || e.textContent).slice(0, 80))
        .concat([...document.querySelectorAll('mjx-assistive-mml mtext')]
                    .filter(t => /^\\[A-Za-z]+/.test(t.textContent.trim()))
                    .map(t => 'undefined macro ' + t.textContent.trim().slice(0, 80))),
    prose: prose.textContent,
    images: imgs.map(i => ({src: i.currentSrc || i.src, complete: i.complete,
                            width: i.naturalWidth, height: i.naturalHeight})),
    links: [...document.querySelectorAll('a[href], link[href]')].map(a => a.href),
    ids: ids,
  };
}
"""

# Runs in the page after _INSPECT, once at each width: the page's layout as measured.
# Widths are CSS px; an element "scrolls sideways" when its scrollWidth exceeds its
# clientWidth by more than a pixel (rounding), whether it then scrolls or spills out.
_LAYOUT = r"""
async () => {
  // Let a resize reach layout and paint before measuring.
  await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
  const vw = document.documentElement.clientWidth;
  const article = document.querySelector('article.bd-article, main') || document.body;
  const clip = e => { const s = getComputedStyle(e);
                      return s.overflowX !== 'visible' || s.display === 'none'; };
  const wide = e => e.scrollWidth > e.clientWidth + 1;
  const short = t => (t || '').replace(/\s+/g, ' ').trim().slice(0, 70);
  const name = e => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') +
      [...e.classList].slice(0, 2).map(c => '.' + c).join('');
  // Where an element sits: "cell 7 input" / "cell 7 output" (cells counted from the
  // top of the page) or the nearest block, then the heading of its section.
  const cells = [...document.querySelectorAll('div.cell')];
  const heading = e => {
    const sec = e.closest('section');
    const h = sec && sec.querySelector(':scope > h1, :scope > h2, :scope > h3, :scope > h4');
    return h ? ` in "${short(h.textContent.replace(/#$/, ''))}"` : '';
  };
  const where = e => {
    const cell = e.closest('div.cell');
    if (cell) {
      const part = e.closest('div.cell_output, div.output') ? 'output' : 'input';
      return `cell ${cells.indexOf(cell) + 1} ${part}` + heading(e);
    }
    const inner = e.querySelector && e.querySelector(':scope > table');
    const block = (inner || e).closest('table, figure, div.math, div.admonition, ' +
                                       'li, dd, p, h1, h2, h3, h4, h5, h6');
    return (block ? name(block) : name(e)) + heading(e);
  };
  // The longest line of a block's text: in a code block, the one that is too long.
  const longest = e => (e.innerText || e.textContent || '').split('\n')
      .reduce((a, b) => (b.length > a.length ? b : a), '');
  // Only the innermost of nested offenders: the block that actually overflows.
  const innermost = els => {
    const set = new Set(els), outer = new Set();
    for (const e of els)
      for (let a = e.parentElement; a; a = a.parentElement)
        if (set.has(a)) outer.add(a);
    return els.filter(e => !outer.has(e));
  };

  // Blocks (code, outputs, tables) that scroll sideways or spill out of their box,
  // folded ones (hide-input, hide-output) included: they are unfolded to measure.
  const folded = [...article.querySelectorAll('details:not([open])')];
  folded.forEach(d => { d.open = true; });
  const blocks = innermost([...article.querySelectorAll(
      'pre, div.highlight, div.cell_output, div.output, table, ' +
      '.pst-scrollable-table-container, div.table-wrapper')]
    .filter(e => !e.closest('div.math') && e.clientWidth > 0 && wide(e)))
    .map(e => ({where: where(e) +
                       (folded.some(d => d.contains(e)) ? ' (folded)' : ''),
                element: name(e), scroll_width: e.scrollWidth,
                box_width: e.clientWidth,
                text: short(e.matches('table, .pst-scrollable-table-container')
                            ? (e.querySelector('tr') || e).innerText : longest(e))}));
  folded.forEach(d => { d.open = false; });

  // Display equations wider than the box they sit in.
  const mathItems = c => {
    try { return MathJax.startup.document.getMathItemsWithin(c); } catch (err) { return []; }
  };
  const equations = [...article.querySelectorAll('mjx-container[display="true"]')];
  const wide_math = equations
    .filter(c => wide(c) || (c.parentElement && c.parentElement.matches('div.math') &&
                             wide(c.parentElement)))
    .map(c => { const items = mathItems(c);
                const box = c.closest('div.math');
                return {label: box && box.id ? box.id : where(c),
                        width: c.scrollWidth, box_width: c.clientWidth,
                        tex: short(items.length ? items[0].math : c.textContent)}; });

  // Page wider than the viewport: the innermost elements that reach past its right
  // edge (their box, or text spilling out of it) with no ancestor that clips or
  // scrolls them: what to fix. One per block, the one reaching furthest.
  const page_width = document.documentElement.scrollWidth;
  const overflowing = [];
  if (page_width > vw) {
    const reach = e => { const r = e.getBoundingClientRect();
                         return Math.max(r.right, r.left + (clip(e) ? 0 : e.scrollWidth)); };
    const past = [...document.body.querySelectorAll('*')].filter(e => {
      if (e.getClientRects().length === 0 || reach(e) <= vw + 1) return false;
      for (let a = e.parentElement; a && a !== document.body; a = a.parentElement)
        if (clip(a)) return false;
      return getComputedStyle(e).position !== 'fixed';
    });
    const byBlock = new Map();
    for (const e of innermost(past)) {
      const w = where(e), right = Math.round(reach(e));
      if (!byBlock.has(w) || byBlock.get(w).right < right)
        byBlock.set(w, {where: w, element: name(e), right,
                        text: short(e.innerText || e.textContent)});
    }
    overflowing.push(...byBlock.values());
  }

  // Verdict boxes, with how far down the page each starts.
  const verdict_boxes = [...article.querySelectorAll(
      'div.admonition.verdict-holds, div.admonition.verdict-qualified, ' +
      'div.admonition.verdict-fails')]
    .map(b => ({verdict: [...b.classList].find(c => c.startsWith('verdict-')),
                title: short((b.querySelector('.admonition-title') || b).textContent),
                top: Math.round(b.getBoundingClientRect().top + window.scrollY)}));

  // Figures and the links in the body that refer to them. A link counts when it
  // points at the figure on this page and sits outside the figure itself and outside
  // the Summary section (a section whose heading reads "Summary").
  const inSummary = a => {
    for (let s = a.closest('section'); s; s = s.parentElement.closest('section')) {
      const h = s.querySelector(':scope > h1, :scope > h2, :scope > h3, :scope > h4');
      if (h && /^\s*[\d.]*\s*summary\b/i.test(h.textContent)) return true;
    }
    return false;
  };
  const here = location.origin + location.pathname;
  const links = [...article.querySelectorAll('a[href]')]
    .filter(a => a.href.split('#')[0] === here && a.hash.length > 1);
  const figures = [...article.querySelectorAll('figure[id], div.figure[id]')]
    .map(f => { const to = links.filter(a => decodeURIComponent(a.hash.slice(1)) === f.id &&
                                             !f.contains(a));
                return {id: f.id,
                        caption: short((f.querySelector('figcaption, .caption') || f).textContent),
                        body_refs: to.filter(a => !inSummary(a)).length,
                        summary_refs: to.filter(inSummary).length}; });

  return {viewport: vw, page_width, overflowing, blocks, wide_math,
          equations: equations.length, verdict_boxes, figures};
}
"""

# Raw TeX that a reader would see if MathJax had not typeset it (outside code).
RAW_TEX = [
    (re.compile(r"\\[()\[\]]"), r"a \( \) \[ \] delimiter"),
    (re.compile(r"\$\$"), "a $$ delimiter"),
    (re.compile(r"\$[^$\n]*[\\^_{}][^$\n]*\$"), "a $...$ span holding TeX"),
    (re.compile(r"\\(begin|end)\{"), r"a \begin/\end environment"),
    (re.compile(r"\\[A-Za-z]{2,}"), r"a TeX command such as \frac"),
]


@dataclass
class PageRecord:
    """What one page did in the browser."""

    path: str  # relative to the HTML root
    final_url: str = ""
    redirect_to: str | None = None
    screenshots: dict = field(default_factory=dict)  # viewport width -> PNG path
    title: str = ""
    math_nodes: int = 0
    mjx_containers: int = 0
    math_untypeset: list = field(default_factory=list)
    mjx_errors: list = field(default_factory=list)
    mathjax_timeout: bool = False
    raw_tex: list = field(default_factory=list)
    images: list = field(default_factory=list)
    links: list = field(default_factory=list)
    ids: list = field(default_factory=list)
    console_errors: list = field(default_factory=list)
    page_errors: list = field(default_factory=list)
    allowed_errors: list = field(default_factory=list)
    failed_requests: list = field(default_factory=list)
    server_errors: list = field(default_factory=list)
    requests: list = field(default_factory=list)
    external_requests: list = field(default_factory=list)
    # Layout (see _LAYOUT), measured on the one visit of the page.
    page_width: dict = field(default_factory=dict)  # viewport width -> scrollWidth
    overflowing: list = field(default_factory=list)  # at NARROW: past the right edge
    scrolling_blocks: list = field(default_factory=list)  # at VIEWPORT
    wide_equations: list = field(default_factory=list)  # at VIEWPORT
    equations: int = 0  # display equations
    verdict_boxes: list = field(default_factory=list)
    figures: list = field(default_factory=list)  # with the links that refer to each


def html_pages(html_dir: Path) -> list[str]:
    """Every HTML page of the build (relative paths), assets folders excluded."""
    pages = []
    for path in sorted(html_dir.rglob("*.html")):
        rel = path.relative_to(html_dir)
        if rel.parts[0] not in ASSET_DIRS:
            pages.append(rel.as_posix())
    return pages


def redirect_target(html_file: Path) -> str | None:
    """The target of a ``<meta http-equiv="refresh">`` stub page, or None."""
    m = re.search(r'<meta[^>]+http-equiv="refresh"[^>]+content="[^"]*url=([^"]+)"',
                  html_file.read_text(errors="replace"), re.I)
    return m.group(1).strip() if m else None


@contextmanager
def serve(html_dir: Path):
    """Serve ``html_dir`` on 127.0.0.1 (a free port); yield (base URL, error log)."""
    errors: list[tuple[str, int]] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):  # quiet
            pass

        def send_error(self, code, message=None, explain=None):
            errors.append((self.path, code))
            super().send_error(code, message, explain)

        def do_GET(self):
            # Browsers ask every site for /favicon.ico unless a page names an icon. The
            # book names none; a real static host would answer 404 for a request the
            # book never made. Answer "no content" so that this one request, which no
            # page asks for, does not show up as a console error. Any other missing
            # file is a 404, recorded and reported by the test.
            if self.path == "/favicon.ico" and not (html_dir / "favicon.ico").exists():
                self.send_response(204)
                self.end_headers()
                return
            try:
                super().do_GET()
            except (BrokenPipeError, ConnectionResetError):
                pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Handler, directory=str(html_dir))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/", errors
    finally:
        server.shutdown()
        server.server_close()


def _is_local(url: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme in ("data", "blob", "about"):
        return True  # never touches the network
    return parts.hostname == "127.0.0.1"


def find_raw_tex(text: str) -> list[str]:
    """Raw TeX left in the prose of a page, as short excerpts."""
    found = []
    for pattern, what in RAW_TEX:
        for m in pattern.finditer(text):
            lo, hi = max(0, m.start() - 30), min(len(text), m.end() + 30)
            found.append(f"{what}: ...{' '.join(text[lo:hi].split())}...")
            break
    return found


def browse_book(html_dir: Path, screenshots: Path, *, timeout_ms: int = 60_000,
                full_page: tuple[int, ...] | None = None) -> list[PageRecord]:
    """Open every page of ``html_dir`` in Chromium; return one record per page.

    Each page is loaded once, at VIEWPORT's width: inspected, measured (_LAYOUT) and
    photographed; then the same page is laid out at NARROW's width (the viewport
    resized, no reload), measured and photographed again. Screenshots go to
    ``screenshots/<page path>-<width>.png``: the full page at the widths in
    ``full_page`` (default: both), the first screen at the others.
    """
    if full_page is None:
        full_page = (VIEWPORT["width"], NARROW["width"])
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    chromium = find_chromium()
    if chromium is None:
        raise RuntimeError(
            "no Chromium found: install Debian's chromium package, run "
            "`.venv/bin/playwright install chromium`, or set ADAMBOOK_CHROMIUM"
        )
    html_dir = Path(html_dir)
    records: list[PageRecord] = []
    current: list[PageRecord] = []  # the page being visited, for the event handlers
    profile = Path(tempfile.mkdtemp(prefix="adambook-chromium-"))

    with serve(html_dir) as (base, server_errors), sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile), executable_path=str(chromium), headless=True,
            args=CHROMIUM_FLAGS, viewport=VIEWPORT, service_workers="block",
        )

        def route(r):
            if _is_local(r.request.url):
                r.continue_()
            else:
                r.abort("blockedbyclient")

        context.route("**/*", route)
        context.on("request", lambda req: current[-1].requests.append(req.url))
        context.on(
            "requestfailed",
            lambda req: current[-1].failed_requests.append(f"{req.url} ({req.failure})"),
        )
        page = context.pages[0] if context.pages else context.new_page()

        def on_console(msg):
            if msg.type in ("error", "assert"):
                current[-1].console_errors.append(f"{msg.text} [{msg.location.get('url', '')}]")

        def on_page_error(err):
            name = getattr(err, "name", "") or ""
            if (name, err.message) == KNOWN_PAGE_ERROR and not current[-1].allowed_errors:
                current[-1].allowed_errors.append(f"{name}: {err.message}")
            else:
                current[-1].page_errors.append(f"{name}: {err.message}")

        page.on("console", on_console)
        page.on("pageerror", on_page_error)
        page.on("websocket", lambda ws: current[-1].requests.append(ws.url))

        for rel in html_pages(html_dir):
            record = PageRecord(path=rel)
            if page.viewport_size != VIEWPORT:
                page.set_viewport_size(VIEWPORT)
            current.append(record)
            records.append(record)
            n_server_errors = len(server_errors)
            url = base + rel
            target = redirect_target(html_dir / rel)
            page.goto(url, wait_until="load", timeout=timeout_ms)
            if target:  # a stub that sends the reader on (index.html): follow it
                record.redirect_to = urljoin(url, target)
                page.wait_for_url(record.redirect_to, wait_until="load", timeout=timeout_ms)
            record.final_url = page.url
            # MathJax loads only on pages with math; wait for its first typeset.
            try:
                page.wait_for_function(
                    "() => !document.querySelector('.math') || "
                    "(window.MathJax && MathJax.startup && MathJax.startup.promise)",
                    timeout=30_000,
                )
                page.evaluate(
                    "async () => { if (window.MathJax && MathJax.startup) "
                    "await MathJax.startup.promise; }"
                )
            except PlaywrightError:
                record.mathjax_timeout = True
            info = page.evaluate(_INSPECT)
            for key in ("title", "math_nodes", "mjx_containers", "math_untypeset",
                        "mjx_errors", "images", "links", "ids"):
                setattr(record, key, info[key])
            record.raw_tex = find_raw_tex(info["prose"])
            for viewport in (VIEWPORT, NARROW):
                width = viewport["width"]
                if page.viewport_size != viewport:
                    page.set_viewport_size(viewport)
                layout = page.evaluate(_LAYOUT)
                record.page_width[width] = layout["page_width"]
                if viewport is VIEWPORT:
                    record.scrolling_blocks = layout["blocks"]
                    record.wide_equations = layout["wide_math"]
                    record.equations = layout["equations"]
                    record.verdict_boxes = layout["verdict_boxes"]
                    record.figures = layout["figures"]
                else:
                    record.overflowing = layout["overflowing"]
                shot = screenshots / f"{rel.removesuffix('.html')}-{width}.png"
                shot.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(shot), full_page=width in full_page,
                                timeout=timeout_ms)
                record.screenshots[width] = str(shot)
            page.goto("about:blank")  # let late requests of this page land here
            record.server_errors = server_errors[n_server_errors:]
            record.external_requests = [u for u in record.requests if not _is_local(u)]
        context.close()
    shutil.rmtree(profile, ignore_errors=True)
    return records


def resolve_link(href: str, base: str, html_dir: Path, ids: dict[str, set]) -> str | None:
    """Why an internal link is broken, or None if it resolves (or is not internal).

    Internal means served from ``base``. The file must exist in the build, and a
    ``#fragment`` must name an element id (or ``<a name>``) on the target page.
    """
    parts = urlsplit(href)
    if parts.scheme in ("mailto", "javascript", "tel", "data"):
        return None
    if parts.scheme == "file":
        return "a file:// link points into the machine that built the book"
    if not href.startswith(base):
        return None  # external: not followed, and never requested by the test
    rel = unquote(parts.path)[len(urlsplit(base).path):]
    if rel == "" or rel.endswith("/"):
        rel += "index.html"
    target = html_dir / rel
    if not target.is_file():
        return f"no file {rel!r} in the build"
    if parts.fragment and rel in ids and unquote(parts.fragment) not in ids[rel]:
        return f"no element with id {unquote(parts.fragment)!r} on {rel}"
    return None


def write_report(records: list[PageRecord], path: Path) -> None:
    """Everything recorded, as JSON next to the screenshots (the prose is left out)."""
    path.write_text(json.dumps([asdict(r) for r in records], indent=1))
