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
    screenshot: str | None = None
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


def browse_book(html_dir: Path, screenshots: Path, *, timeout_ms: int = 60_000) -> list[PageRecord]:
    """Open every page of ``html_dir`` in Chromium; return one record per page.

    Full-page screenshots go to ``screenshots/<page path>.png``.
    """
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
            shot = screenshots / (rel.removesuffix(".html") + ".png")
            shot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(shot), full_page=True, timeout=timeout_ms)
            record.screenshot = str(shot)
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
