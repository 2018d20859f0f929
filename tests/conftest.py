"""Shared fixtures: every device test runs on the CPU, and on CUDA when present."""

from pathlib import Path

import pytest
import torch
import yaml

from chapter_runs import ChapterRuns, NbvalRecorder

ROOT = Path(__file__).resolve().parents[1]
# torch's thread count in a fresh process with this environment: the count nbval's
# kernels run the chapters with (read here, before any test can change it).
DEFAULT_THREADS = torch.get_num_threads()

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
    config.pluginmanager.register(NbvalRecorder(), "adambook-nbval-recorder")


def pytest_collection_modifyitems(config, items):
    # Tests marked `book` run last, after nbval has executed every chapter.
    items.sort(key=lambda item: item.get_closest_marker("book") is not None)


@pytest.fixture(scope="session")
def chapter_runs(pytestconfig):
    """Two executions of each chapter, made once a session (see chapter_runs.py)."""
    execute = yaml.safe_load((ROOT / "_config.yml").read_text()).get("execute", {})
    return ChapterRuns(
        pytestconfig.pluginmanager.get_plugin("adambook-nbval-recorder"),
        DEFAULT_THREADS,
        timeout=execute.get("timeout", 600),
    )
