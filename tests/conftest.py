"""Shared fixtures: every device test runs on the CPU, and on CUDA when present."""

import os
import tempfile
from pathlib import Path

import pytest
import torch
import yaml

import book
from chapter_runs import ChapterRuns, NbvalRecorder

ROOT = Path(__file__).resolve().parents[1]
# torch's thread count in a fresh process with this environment: the count nbval's
# kernels run the chapters with (read here, before any test can change it).
DEFAULT_THREADS = torch.get_num_threads()
# The unit tests themselves run on one thread: their tensors are small, so threads
# only cost, and under pytest-xdist one process per core already fills the machine.
# (A chapter's kernel is another process and keeps DEFAULT_THREADS.)
torch.set_num_threads(1)

DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=[
            pytest.mark.cuda,
            pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available"),
        ],
    ),
]


@pytest.fixture(params=DEVICES)
def device(request):
    return torch.device(request.param)


def pytest_configure(config):
    # Keep the outputs of nbval's execution of each chapter (see chapter_runs.py).
    config.pluginmanager.register(NbvalRecorder(DEFAULT_THREADS),
                                  "adambook-nbval-recorder")


def _chapter_runs(config) -> ChapterRuns:
    if not hasattr(config, "_adambook_runs"):
        execute = yaml.safe_load((ROOT / "_config.yml").read_text()).get("execute", {})
        config._adambook_runs = ChapterRuns(
            config.pluginmanager.get_plugin("adambook-nbval-recorder"),
            DEFAULT_THREADS,
            timeout=execute.get("timeout", 600),
        )
    return config._adambook_runs


@pytest.hookimpl(trylast=True)  # after `-m` has deselected what will not run
def pytest_collection_modifyitems(config, items):
    # Tests marked `book` run last, after nbval has executed every chapter.
    items.sort(key=lambda item: item.get_closest_marker("book") is not None)
    if not any(item.get_closest_marker("book") for item in items):
        return
    runs = _chapter_runs(config)
    chapters = book.chapters(ROOT)
    # A session of book-level tests alone, with run A saved by make test's first
    # session: run B starts now, one process per core, beside the book build.
    only_book = all(item.get_closest_marker("book") for item in items)
    if only_book and all(runs.saved(c.source) for c in chapters):
        # One lane per core (measured on 2 cores: one lane plus a second after
        # the browser test, or one-thread kernels, were no faster).
        lanes = max(1, min(len(os.sched_getaffinity(0)), len(chapters)))
        out = Path(tempfile.mkdtemp(prefix="adambook-run-b-"))
        runs.start_second(chapters, out, lanes=lanes)
    # With ADAMBOOK_RUN_B_BESIDE=1 run B starts now beside nbval's run A: faster
    # where cores are spare, but on 2 cores the memory chapter's peak-RSS checks
    # failed when its two executions overlapped, so by default run B runs after
    # nbval, one chapter at a time.
    elif os.environ.get("ADAMBOOK_RUN_B_BESIDE") == "1":
        out = Path(tempfile.mkdtemp(prefix="adambook-run-b-"))
        runs.start_second(chapters, out)


def pytest_unconfigure(config):
    if hasattr(config, "_adambook_runs"):
        config._adambook_runs.stop()


@pytest.fixture(scope="session")
def chapter_runs(pytestconfig):
    """Two executions of each chapter, made once a session (see chapter_runs.py)."""
    return _chapter_runs(pytestconfig)
