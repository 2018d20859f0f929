"""Executions of the chapters shared by the book-level tests, each made once.

Two executions of every chapter are compared by ``test_reproducible.py``:

* **run A** is nbval's own execution of the chapter (``pytest`` collects
  ``chapters/*.ipynb`` with ``--nbval-lax``). ``NbvalRecorder`` keeps each cell's
  outputs as nbval runs it, so run A costs nothing extra. ``make test`` runs nbval
  and the unit tests in one pytest session spread over the cores (pytest-xdist),
  and the book-level tests in a second session: the recorder then writes each
  chapter that passed, with its outputs, to ``$ADAMBOOK_RUN_A`` (with the source
  it ran, so that a changed chapter is never taken for its old run), and the second
  session reads it from there. When neither has run A (``pytest tests/...``
  alone), run A is executed here instead, in the environment nbval would use.
  The HTML book of the browser test is built from run A: the chapters execute
  once for nbval and the book.
* **run B** is one more execution, in a kernel started with a different thread
  count for torch/MKL/OpenBLAS, a different ``PYTHONHASHSEED`` and another CPU code
  path (``book.OTHER_CODE_PATH``). In a session that only checks the book (run A
  read from ``$ADAMBOOK_RUN_A``) it starts in the background as soon as the tests
  are collected, in one process per core, beside the book build and the browser
  test. In a single session that also runs nbval it runs after nbval, one
  chapter at a time (``ADAMBOOK_RUN_B_BESIDE=1`` starts it beside nbval instead;
  on 2 cores the memory chapter's peak-RSS checks once failed that way).
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import book

#: Where ``make test``'s first session leaves run A for its second (see above).
RUN_A_DIR = os.environ.get("ADAMBOOK_RUN_A")

#: What run A's kernel reports as its language (the build picks the lexer from it).
_LANGUAGE_INFO = {"name": "python", "pygments_lexer": "ipython3",
                  "codemirror_mode": {"name": "ipython", "version": 3},
                  "file_extension": ".py", "mimetype": "text/x-python",
                  "nbconvert_exporter": "python",
                  "version": sys.version.split()[0]}


def _source_text(path: Path) -> str:
    """The chapter's cells as stored: run A is valid only for this text."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    return json.dumps([(c.cell_type, c.source) for c in nb.cells])


def _complete(path: Path, recorded: dict) -> list | None:
    """[(cell, outputs)] per code cell when nbval ran every cell, else None."""
    import nbformat

    cells = book.code_cells(nbformat.read(path, as_version=4))
    if recorded and all(k in recorded or book.output_is_ignored(c)
                        for k, c in enumerate(cells)):
        return [(c, recorded[k][1] if k in recorded else [])
                for k, c in enumerate(cells)]
    return None


class NbvalRecorder:
    """A pytest plugin that keeps the outputs of every nbval cell that passes."""

    def __init__(self, threads: int) -> None:
        self.outputs: dict[Path, dict[int, tuple]] = {}
        self.failed: set[Path] = set()
        self.threads = threads

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        outcome = yield
        report = outcome.get_result()
        if not (hasattr(item, "cell_num") and hasattr(item, "test_outputs")):
            return  # not an nbval cell
        path = Path(item.path).resolve()
        if report.failed:
            self.failed.add(path)
        elif call.when == "call" and report.passed and item.test_outputs is not None:
            self.outputs.setdefault(path, {})[item.cell_num] = (item.cell, list(item.test_outputs))

    def pytest_sessionfinish(self, session):
        """Write each chapter nbval ran in full to ``$ADAMBOOK_RUN_A``."""
        if not RUN_A_DIR:
            return
        import nbformat

        out = Path(RUN_A_DIR)
        out.mkdir(parents=True, exist_ok=True)
        for path, recorded in self.outputs.items():
            cells = None if path in self.failed else _complete(path, recorded)
            if cells is None:
                continue
            nb = nbformat.read(path, as_version=4)
            for cell, (_, outputs) in zip(book.code_cells(nb), cells):
                cell.outputs = [nbformat.from_dict(o) for o in outputs]
            nb.metadata["language_info"] = _LANGUAGE_INFO
            nbformat.write(nb, out / f"{path.stem}.ipynb")
            (out / f"{path.stem}.json").write_text(json.dumps({
                "source": _source_text(path), "threads": self.threads,
                "hashseed": os.environ.get("PYTHONHASHSEED", "")}))


@dataclass
class Run:
    """The code cells of one execution of a chapter with their outputs."""

    cells: list  # [(cell, outputs)] per code cell, in order
    threads: int
    hashseed: str
    how: str
    notebook: object = None  # the executed notebook (for the book build)


def _other_hashseed(seed: str | None) -> str:
    if seed and seed.isdigit():
        return str((int(seed) + 1) % 2**32)
    return "1"  # run A's is unset (random per process) or "random"


class ChapterRuns:
    """Run A and run B of each chapter, computed on first use and kept for the session."""

    def __init__(self, recorder: NbvalRecorder, default_threads: int, timeout: int) -> None:
        self.recorder = recorder
        self.default_threads = default_threads  # run A's: torch's default here
        self.threads_b = 1 if default_threads > 1 else 2
        self.hashseed_a = os.environ.get("PYTHONHASHSEED", "")
        self.hashseed_b = _other_hashseed(self.hashseed_a)
        self.timeout = timeout
        self._a: dict[Path, Run] = {}
        self._b: dict[Path, book.Execution] = {}
        self._background: book.Background | None = None

    def start_second(self, chapters, out: Path, lanes: int = 1) -> None:
        """Start run B of every chapter in ``lanes`` background processes (once)."""
        if self._background is None:
            self._background = book.Background(
                [c.source for c in chapters], out, lanes=lanes,
                threads=self.threads_b, hashseed=self.hashseed_b,
                timeout=self.timeout,
                # Lanes of two-thread kernels may outnumber the cores: idle
                # OpenMP threads then sleep instead of spinning (scheduling
                # only; the arithmetic is the same).
                extra_env={**book.OTHER_CODE_PATH, "OMP_WAIT_POLICY": "PASSIVE"},
            )

    def stop(self) -> None:
        if self._background is not None:
            self._background.stop()

    @staticmethod
    def saved(path: Path) -> Run | None:
        """Run A of this chapter as the first session of ``make test`` saved it."""
        import nbformat

        if not RUN_A_DIR:
            return None
        nb_path = Path(RUN_A_DIR) / f"{path.stem}.ipynb"
        meta_path = nb_path.with_suffix(".json")
        if not (nb_path.is_file() and meta_path.is_file()):
            return None
        meta = json.loads(meta_path.read_text())
        if meta["source"] != _source_text(path):
            return None  # the chapter changed since: not its run
        nb = nbformat.read(nb_path, as_version=4)
        return Run([(c, c.outputs) for c in book.code_cells(nb)], meta["threads"],
                   meta["hashseed"], "nbval, saved by make test's first session",
                   nb)

    def reference(self, chapter: book.Page) -> Run:
        """Run A: nbval's execution of this session (or the saved one)."""
        import nbformat

        path = chapter.source.resolve()
        if path in self._a:
            return self._a[path]
        if path in self.recorder.failed:
            pytest.fail(f"{chapter.docname} failed under nbval in this session; "
                        "see that failure (not executed again here)")
        cells = _complete(path, self.recorder.outputs.get(path, {}))
        run = self.saved(path)
        if cells is not None:
            nb = nbformat.read(path, as_version=4)
            for cell, (_, outputs) in zip(book.code_cells(nb), cells):
                cell.outputs = [nbformat.from_dict(o) for o in outputs]
            nb.metadata["language_info"] = _LANGUAGE_INFO
            run = Run(cells, self.default_threads, self.hashseed_a,
                      "nbval, this session", nb)
        elif run is None:
            ex = book.execute_chapter(path, timeout=self.timeout)
            run = Run([(c, c.outputs) for c in book.code_cells(ex.notebook)],
                      ex.threads, ex.hashseed, "executed for this test", ex.notebook)
        self._a[path] = run
        return run

    def second(self, chapter: book.Page) -> book.Execution:
        """Run B: executed once more with other thread counts and hash seed."""
        path = chapter.source.resolve()
        if path not in self._b:
            if self._background is not None:
                wait = self.timeout * len(self._background.paths)
                self._b[path] = self._background.result(path, timeout=wait)
            else:
                self._b[path] = book.execute_chapter(
                    path, threads=self.threads_b, hashseed=self.hashseed_b,
                    timeout=self.timeout, extra_env=book.OTHER_CODE_PATH,
                )
        return self._b[path]

    @staticmethod
    def cells(execution: book.Execution) -> list:
        return [(c, c.outputs) for c in book.code_cells(execution.notebook)]
