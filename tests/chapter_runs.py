"""Executions of the chapters shared by the book-level tests, each made once a session.

Two executions of every chapter are compared by ``test_reproducible.py``:

* **run A** is nbval's own execution of the chapter in this pytest session
  (``pytest`` collects ``chapters/*.ipynb`` with ``--nbval-lax``). ``NbvalRecorder``
  keeps each cell's outputs as nbval runs it, so run A costs nothing extra. When nbval
  did not run the whole chapter in this session (``pytest tests/...`` alone), run A
  is executed here instead, in the same environment nbval would use.
* **run B** is one more execution, in a kernel started with a different thread count
  for torch/MKL/OpenBLAS, a different ``PYTHONHASHSEED`` and another CPU code path
  (``book.OTHER_CODE_PATH``). It runs after nbval, one chapter at a time; with
  ``ADAMBOOK_RUN_B_BESIDE=1`` it starts in a background process as soon as the
  tests are collected and runs beside nbval's run A instead (faster where cores
  are spare; on 2 cores the memory chapter's peak-RSS checks failed when its two
  executions overlapped).

The browser test builds the HTML book from run B's executed notebooks, so the book it
opens costs a Sphinx build but no third execution of the chapters.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

import book


class NbvalRecorder:
    """A pytest plugin that keeps the outputs of every nbval cell that passes."""

    def __init__(self) -> None:
        self.outputs: dict[Path, dict[int, tuple]] = {}
        self.failed: set[Path] = set()

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


@dataclass
class Run:
    """The code cells of one execution of a chapter with their outputs."""

    cells: list  # [(cell, outputs)] per code cell, in order
    threads: int
    hashseed: str
    how: str


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

    def start_second(self, chapters, out: Path) -> None:
        """Start run B of every chapter in a background process (once)."""
        if self._background is None:
            self._background = book.Background(
                [c.source for c in chapters], out, threads=self.threads_b,
                hashseed=self.hashseed_b, timeout=self.timeout,
                extra_env=book.OTHER_CODE_PATH,
            )

    def stop(self) -> None:
        if self._background is not None:
            self._background.stop()

    def reference(self, chapter: book.Page) -> Run:
        """Run A: nbval's execution of this session when it covered every cell."""
        import nbformat

        path = chapter.source.resolve()
        if path in self._a:
            return self._a[path]
        if path in self.recorder.failed:
            pytest.fail(f"{chapter.docname} failed under nbval in this session; "
                        "see that failure (not executed again here)")
        recorded = self.recorder.outputs.get(path, {})
        cells = book.code_cells(nbformat.read(path, as_version=4))
        complete = recorded and all(
            k in recorded or book.output_is_ignored(c) for k, c in enumerate(cells)
        )
        if complete:
            run = Run([(c, recorded[k][1] if k in recorded else []) for k, c in enumerate(cells)],
                      self.default_threads, self.hashseed_a, "nbval, this session")
        else:
            ex = book.execute_chapter(path, timeout=self.timeout)
            run = Run([(c, c.outputs) for c in book.code_cells(ex.notebook)],
                      ex.threads, ex.hashseed, "executed for this test")
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
