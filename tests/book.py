"""The book as a whole: its pages, executing a chapter, what a chapter printed.

Tooling for the tests that read the book as a reader meets it
(``tests/test_browser.py``, ``tests/test_reproducible.py``) and for
``benchmarks/run.py``. No chapter imports this module.

Everything is discovered, nothing is named: the pages are the entries of
``_toc.yml``, the chapters are those pages that are notebooks.

>>> root = find_root()
>>> all(p.source.is_file() for p in toc_pages(root))
True
>>> all(p.source.suffix == ".ipynb" for p in chapters(root))
True
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "Page",
    "Execution",
    "find_root",
    "toc_pages",
    "chapters",
    "execute_chapter",
    "code_cells",
    "printed_results",
    "compare_results",
    "build_html",
    "jupyter_book_command",
]

#: What ``make book`` passes to ``jupyter-book build``; the tests build the same way.
BUILD_FLAGS = ["--all", "-W", "-n", "--keep-going"]

#: Folders and files never copied into a build tree (local environments and outputs).
_NOT_SOURCES = (".git", ".venv", "_build", "artifacts", "__pycache__", ".pytest_cache",
                "*.egg-info", ".ipynb_checkpoints")


@dataclass(frozen=True)
class Page:
    """One entry of ``_toc.yml``: its Sphinx docname and its source file."""

    docname: str
    source: Path

    @property
    def html(self) -> str:
        """Path of the page in the built HTML, relative to ``_build/html``."""
        return self.docname + ".html"

    @property
    def name(self) -> str:
        return self.docname.rsplit("/", 1)[-1]


def find_root(start: Path | None = None) -> Path:
    """The book's root: the nearest folder upwards holding ``_toc.yml`` and ``_config.yml``."""
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "_toc.yml").is_file() and (folder / "_config.yml").is_file():
            return folder
    # Fall back to the checkout this file belongs to.
    pkg = Path(__file__).resolve().parents[1]
    if (pkg / "_toc.yml").is_file():
        return pkg
    raise FileNotFoundError(f"no _toc.yml above {here}")


def _resolve(root: Path, entry: str) -> Path:
    base = root / entry
    for suffix in ("", ".ipynb", ".md", ".rst"):
        candidate = base.with_name(base.name + suffix)
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"_toc.yml names {entry!r}, which is not a file under {root}")


def toc_pages(root: Path) -> list[Page]:
    """Every page that ``_toc.yml`` lists, in its order (``file``, ``root`` and ``glob``)."""
    import yaml

    root = Path(root)
    toc = yaml.safe_load((root / "_toc.yml").read_text())
    found: list[Page] = []

    def add(source: Path) -> None:
        docname = source.relative_to(root).with_suffix("").as_posix()
        if docname not in {p.docname for p in found}:
            found.append(Page(docname, source))

    def walk(node) -> None:
        if isinstance(node, list):
            for item in node:
                walk(item)
        elif isinstance(node, dict):
            if "root" in node:
                add(_resolve(root, node["root"]))
            if "file" in node:
                add(_resolve(root, node["file"]))
            if "glob" in node:
                for path in sorted(root.glob(node["glob"])):
                    if path.suffix in (".ipynb", ".md", ".rst"):
                        add(path)
            for key in ("parts", "chapters", "sections"):
                if key in node:
                    walk(node[key])

    walk(toc)
    return found


def chapters(root: Path) -> list[Page]:
    """The pages of ``_toc.yml`` that are notebooks: the chapters that execute."""
    return [p for p in toc_pages(root) if p.source.suffix == ".ipynb"]


# ------------------------------------------------------------------------ execution

#: Variables that set the size of the thread pools of torch (OpenMP), MKL and OpenBLAS.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")

_PROBE = (
    "print(__import__('torch').get_num_threads(), "
    "__import__('os').environ.get('PYTHONHASHSEED', ''))"
)


@dataclass
class Execution:
    """A chapter executed in a fresh kernel, and what the kernel reported afterwards."""

    notebook: object  # nbformat.NotebookNode, with outputs
    threads: int  # torch.get_num_threads() in the kernel after the last cell
    hashseed: str  # PYTHONHASHSEED in the kernel ('' if unset, i.e. random)
    startup_seconds: float  # starting the kernel
    seconds: float  # executing the chapter's cells, kernel start excluded
    cell_seconds: list[float] = field(default_factory=list)


def execute_chapter(
    path: Path,
    *,
    threads: int | None = None,
    hashseed: str | None = None,
    timeout: int | None = 600,
    extra_env: dict[str, str] | None = None,
) -> Execution:
    """Execute the notebook at ``path`` in a fresh kernel, the way the book build does.

    The kernel runs in the notebook's folder. ``threads`` sets the thread pools of
    torch, MKL and OpenBLAS through the environment before the kernel starts, and
    ``hashseed`` sets ``PYTHONHASHSEED`` (the order of iterating over a set of
    strings), and ``extra_env`` sets any other variables (e.g. the CPU code path). After the last cell a probe asks the kernel which thread count torch
    really used. A failing cell raises ``nbclient.exceptions.CellExecutionError``.
    """
    import nbformat
    from nbclient import NotebookClient

    path = Path(path).resolve()
    nb = nbformat.read(path, as_version=4)
    env = dict(os.environ)
    if threads is not None:
        env.update({name: str(threads) for name in THREAD_VARIABLES})
    if hashseed is not None:
        env["PYTHONHASHSEED"] = str(hashseed)
    env.update(extra_env or {})
    kernel = nb.metadata.get("kernelspec", {}).get("name", "python3")
    client = NotebookClient(
        nb, timeout=timeout, kernel_name=kernel,
        resources={"metadata": {"path": str(path.parent)}},
    )
    t0 = time.perf_counter()
    cell_seconds = []
    with client.setup_kernel(env=env):
        t1 = time.perf_counter()
        # As NotebookClient.execute does: record the kernel's language_info (the
        # build picks the code lexer from it), then run every cell in order.
        reply = client.wait_for_reply(client.kc.kernel_info())
        nb.metadata["language_info"] = reply["content"]["language_info"]
        for index, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            t = time.perf_counter()
            client.execute_cell(cell, index, execution_count=client.code_cells_executed + 1)
            cell_seconds.append(time.perf_counter() - t)
        client.set_widgets_metadata()
        t2 = time.perf_counter()
        probe = nbformat.v4.new_code_cell(_PROBE)
        nb.cells.append(probe)
        try:
            client.execute_cell(probe, len(nb.cells) - 1, store_history=False)
        finally:
            nb.cells.pop()
    reported = "".join(o.get("text", "") for o in probe.outputs).split()
    return Execution(
        notebook=nb,
        threads=int(reported[0]),
        hashseed=reported[1] if len(reported) > 1 else "",
        startup_seconds=t1 - t0,
        seconds=t2 - t1,
        cell_seconds=cell_seconds,
    )


# ------------------------------------------------------------------ printed results

_IGNORE_TAGS = {"nbval-ignore-output", "nbval-skip"}
_IGNORE_COMMENT = re.compile(r"^\s*#\s*(NBVAL_IGNORE_OUTPUT|NBVAL_SKIP)\s*$", re.M)
#: The default repr of a Python object ends with its memory address.
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+>")


def code_cells(notebook) -> list:
    """The code cells of a notebook, in order (their index is nbval's cell number)."""
    return [c for c in notebook.cells if c.cell_type == "code"]


def output_is_ignored(cell) -> bool:
    """True for a cell marked, in nbval's words, as having output that may vary.

    A chapter marks such a cell (one that prints a wall-clock time, say) with the tag
    ``nbval-ignore-output`` or the comment ``# NBVAL_IGNORE_OUTPUT``; the
    reproducibility test then leaves that cell's output out of the comparison.
    """
    tags = set(cell.get("metadata", {}).get("tags", []))
    return bool(tags & _IGNORE_TAGS) or bool(_IGNORE_COMMENT.search(cell.source))


def _normalise(mime: str, value) -> str:
    if not isinstance(value, str):
        import json

        value = json.dumps(value, sort_keys=True)
    if mime == "text/plain":
        value = _ADDRESS.sub(" at 0x…>", value)
    return value


def printed_results(cells_and_outputs) -> tuple[dict[str, str], list[int]]:
    """Everything a chapter shows a reader, keyed so that two runs can be compared.

    ``cells_and_outputs`` is a list of ``(cell, outputs)`` pairs, one per code cell in
    order. Returns ``(results, ignored)``: ``results`` maps

    * ``"cell K stdout"`` / ``"cell K stderr"`` to the text the K-th code cell printed,
    * ``"glue NAME MIME"`` to a value glued for the prose (myst-nb ``glue``),
    * ``"cell K output J MIME"`` to every other displayed value (figures included),

    after one normalisation that removes what legitimately changes between runs and
    nothing else: the memory address in an object's default repr. ``ignored`` lists the code cells left out because they are
    marked as varying (see :func:`output_is_ignored`).

    >>> from nbformat.v4 import new_code_cell, new_output
    >>> cell = new_code_cell("print(1)")
    >>> out = new_output("stream", name="stdout", text="1\\n")
    >>> printed_results([(cell, [out])])
    ({'cell 0 stdout': '1\\n'}, [])
    """
    results: dict[str, str] = {}
    ignored: list[int] = []
    for k, (cell, outputs) in enumerate(cells_and_outputs):
        if output_is_ignored(cell):
            ignored.append(k)
            continue
        j = 0
        for out in outputs:
            kind = out.get("output_type")
            if kind == "stream":
                key = f"cell {k} {out['name']}"
                results[key] = results.get(key, "") + out["text"]
            elif kind in ("display_data", "execute_result"):
                glued = out.get("metadata", {}).get("scrapbook", {}).get("name")
                # glue(display=False) prefixes each MIME type with the prefix it
                # records in the metadata; key and normalise by the type underneath.
                prefix = out.get("metadata", {}).get("scrapbook", {}).get("mime_prefix", "")
                for mime, value in sorted(out.get("data", {}).items()):
                    mime = mime.removeprefix(prefix) if prefix else mime
                    key = f"glue {glued} {mime}" if glued else f"cell {k} output {j} {mime}"
                    results[key] = _normalise(mime, value)
                j += 0 if glued else 1
            elif kind == "error":
                results[f"cell {k} error"] = f"{out.get('ename')}: {out.get('evalue')}"
    return results, ignored


#: A number as a chapter prints it: sign, digits, optional fraction and exponent.
_NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")


def _last_digit_unit(token: str) -> float:
    """The value of one unit in the last printed digit of ``token`` ("1.25e-3" -> 1e-5)."""
    mantissa, _, exponent = token.lower().partition("e")
    decimals = len(mantissa.partition(".")[2])
    return 10.0 ** (int(exponent or 0) - decimals)


def _numbers_agree(a: str, b: str) -> bool:
    """Two printed numbers differ by at most one unit in the last digit either shows.

    Why this tolerance: run A and run B compute the same values up to the order of
    floating-point reductions over threads, a relative difference of a few units of
    rounding (about 1e-16 in float64, 1e-7 in float32). A chapter prints far fewer
    digits than that, so the two values lie within half a printed unit of each other,
    and after rounding to the printed precision they differ by at most one unit.
    """
    unit = max(_last_digit_unit(a), _last_digit_unit(b))
    return abs(float(a) - float(b)) <= unit * (1 + 1e-9)


def compare_text(a: str, b: str) -> str | None:
    """None when two printed texts agree, else where they first differ.

    The texts must be the same once their numbers are set aside, and each pair of
    numbers must agree to one unit of the last printed digit (:func:`_numbers_agree`).

    >>> compare_text("slope -1.005 ± 0.003", "slope -1.004 ± 0.003") is None
    True
    >>> compare_text("slope -1.005", "slope -1.007")
    "number 1: '-1.005' against '-1.007', more than one unit in the last digit apart"
    >>> compare_text("holds", "does not hold")
    "the words differ: 'holds' against 'does not hold'"
    """
    words_a, words_b = _NUMBER.split(a), _NUMBER.split(b)
    if words_a != words_b:
        diff = next((i for i, (x, y) in enumerate(zip(words_a, words_b)) if x != y),
                    min(len(words_a), len(words_b)))
        x = words_a[diff] if diff < len(words_a) else ""
        y = words_b[diff] if diff < len(words_b) else ""
        return f"the words differ: {x[:80]!r} against {y[:80]!r}"
    for k, (x, y) in enumerate(zip(_NUMBER.findall(a), _NUMBER.findall(b)), 1):
        if x != y and not _numbers_agree(x, y):
            return (f"number {k}: {x!r} against {y!r}, more than one unit in the last "
                    "digit apart")
    return None


#: Rendered figures are drawings of computed values, not values: their bytes depend
#: on the platform's floating point in ways no tolerance on the data describes (an
#: SVG path of 10^5 points can change length when one point rounds differently). The
#: values behind a figure are compared where the chapter prints or glues them.
_DRAWINGS = ("image/svg+xml", "image/png", "image/jpeg", "application/pdf")


def compare_results(a: dict[str, str], b: dict[str, str]) -> list[str]:
    """One line per difference between two :func:`printed_results`; empty if equal.

    Text (printed, glued, displayed) is compared with :func:`compare_text`; figures
    are not compared (:data:`_DRAWINGS`).

    >>> compare_results({"cell 0 stdout": "1.0"}, {"cell 0 stdout": "1.2"})
    ["cell 0 stdout: number 1: '1.0' against '1.2', more than one unit in the last digit apart"]
    """
    problems = []
    for key in sorted(set(a) | set(b)):
        if key.endswith(_DRAWINGS):
            continue
        if key not in b:
            problems.append(f"{key}: only in run A")
        elif key not in a:
            problems.append(f"{key}: only in run B")
        else:
            why = compare_text(a[key], b[key])
            if why:
                problems.append(f"{key}: {why}")
    return problems


# ---------------------------------------------------------------------------- build


def jupyter_book_command() -> list[str]:
    """``jupyter-book`` of the running environment."""
    exe = Path(sys.executable).parent / "jupyter-book"
    return [str(exe)] if exe.exists() else [shutil.which("jupyter-book") or "jupyter-book"]


def copy_sources(root: Path, dest: Path) -> Path:
    """Copy the book's sources (not .venv, _build, .git, artifacts) to ``dest``."""
    shutil.copytree(root, dest, ignore=shutil.ignore_patterns(*_NOT_SOURCES))
    return dest


def build_html(root: Path, dest: Path, executed: dict | None = None,
               log: Path | None = None) -> tuple[Path, float]:
    """Build the HTML book from a fresh copy of the sources at ``dest``.

    With ``executed`` (source path -> executed notebook) the chapters are written with
    their outputs and the build is told not to execute (``execute_notebooks: off``):
    the Sphinx half of ``make book`` on outputs computed elsewhere. Without it the
    build executes every chapter, exactly as ``make book`` does, from scratch (the copy
    has no ``_build`` and so no cache). Flags as in ``make book`` (:data:`BUILD_FLAGS`).
    Returns the HTML folder and the build's wall time; raises ``RuntimeError`` with
    the end of the log when the build fails.
    """
    import nbformat
    import yaml

    root, dest = Path(root).resolve(), Path(dest)
    src = copy_sources(root, dest)
    if executed is not None:
        config_path = src / "_config.yml"
        config = yaml.safe_load(config_path.read_text())
        config.setdefault("execute", {})["execute_notebooks"] = "off"
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        for path, nb in executed.items():
            nbformat.write(nb, src / Path(path).resolve().relative_to(root))
    t0 = time.perf_counter()
    proc = subprocess.run(
        [*jupyter_book_command(), "build", str(src), *BUILD_FLAGS],
        cwd=src, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    seconds = time.perf_counter() - t0
    if log is not None:
        Path(log).write_text(proc.stdout)
    if proc.returncode != 0:
        raise RuntimeError(f"jupyter-book build failed ({proc.returncode}):\n{proc.stdout[-6000:]}")
    return src / "_build" / "html", seconds


# ----------------------------------------------------------- executions in the background

#: Run B's CPU code path: torch's vectorised kernels and MKL limited to AVX2. Where
#: the machine has AVX-512 (the AMD EPYC and Intel Xeon machines CI runs on), run B
#: then reduces in other block sizes than run A, as another vendor's CPU would.
OTHER_CODE_PATH = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}


def execute_all(paths: list[Path], out: Path, *, threads: int, hashseed: str,
                timeout: int, extra_env: dict[str, str]) -> None:
    """Execute the notebooks, writing ``<k>.ipynb`` and ``<k>.json`` to ``out``.

    ``<k>.json`` holds what :class:`Execution` reports, or ``{"error": ...}`` when the
    chapter failed. Several processes may run this on the same ``out`` (the lanes of
    :class:`Background`): each takes the next chapter that no other has claimed
    (``<k>.claim``, created atomically), so every chapter executes exactly once.
    """
    import json
    import traceback

    import nbformat

    out = Path(out)
    for k, path in enumerate(paths):
        try:
            os.close(os.open(out / f"{k}.claim", os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            continue  # another lane has it
        try:
            ex = execute_chapter(path, threads=threads, hashseed=hashseed,
                                 timeout=timeout, extra_env=extra_env)
        except Exception:
            report = {"error": traceback.format_exc()[-4000:]}
        else:
            nbformat.write(ex.notebook, out / f"{k}.ipynb")
            report = {"threads": ex.threads, "hashseed": ex.hashseed,
                      "startup_seconds": ex.startup_seconds, "seconds": ex.seconds}
        tmp = out / f"{k}.json.tmp"
        tmp.write_text(json.dumps(report))
        tmp.rename(out / f"{k}.json")  # appears whole, after its notebook


class Background:
    """Chapters being executed by :func:`execute_all` in ``lanes`` other processes.

    The book-level tests start run B this way, so that it runs beside the book
    build and the browser test (and, with several lanes, on several cores).
    """

    def __init__(self, paths, out: Path, lanes: int = 1, **options) -> None:
        import json

        self.paths = [Path(p).resolve() for p in paths]
        self.out = Path(out).resolve()  # the lanes run in another folder
        self.out.mkdir(parents=True, exist_ok=True)
        self.spec = json.dumps({"paths": [str(p) for p in self.paths],
                                "out": str(self.out), **options})
        self.processes = []
        for _ in range(max(1, lanes)):
            self.add_lane()

    def add_lane(self) -> None:
        """One more process taking the chapters no lane has claimed yet."""
        lane = len(self.processes)
        self.processes.append(subprocess.Popen(
            [sys.executable, __file__, self.spec], cwd=Path(__file__).parent,
            stdout=subprocess.DEVNULL,
            stderr=(self.out / f"stderr-{lane}.txt").open("w"),
        ))

    def result(self, path: Path, timeout: float) -> Execution:
        """Wait for the chapter at ``path`` and return its execution."""
        import json

        import nbformat

        k = self.paths.index(Path(path).resolve())
        report_path = self.out / f"{k}.json"
        deadline = time.monotonic() + timeout
        while not report_path.exists():
            stopped = all(p.poll() is not None for p in self.processes)
            if stopped and not report_path.exists():
                err = "".join(f.read_text()[-2000:]
                              for f in sorted(self.out.glob("stderr-*.txt")))
                raise RuntimeError(f"the background executions stopped early:\n{err}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{path} not executed within {timeout:.0f} s")
            time.sleep(0.2)
        report = json.loads(report_path.read_text())
        if "error" in report:
            raise RuntimeError(f"{path} failed in the background run:\n{report['error']}")
        nb = nbformat.read(self.out / f"{k}.ipynb", as_version=4)
        return Execution(notebook=nb, threads=report["threads"],
                         hashseed=report["hashseed"],
                         startup_seconds=report["startup_seconds"],
                         seconds=report["seconds"])

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
                process.wait()


if __name__ == "__main__":  # the process of Background
    import json

    _spec = json.loads(sys.argv[1])
    execute_all([Path(p) for p in _spec.pop("paths")], Path(_spec.pop("out")), **_spec)
