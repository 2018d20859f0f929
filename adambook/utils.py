"""Small helpers every chapter needs: the device and the seeds."""

from __future__ import annotations

import os
import random
from contextlib import contextmanager

import numpy as np
import torch

__all__ = ["pick_device", "seed_everything", "torch_threads"]


def pick_device(prefer: str | None = None) -> torch.device:
    """The device a chapter runs on: CUDA when present, else the CPU.

    The environment variable ``ADAMBOOK_DEVICE`` (``cpu`` or ``cuda``) overrides the
    choice, so a reader with a GPU can still reproduce the CPU numbers. ``prefer``
    overrides both. Asking for CUDA where there is none is an error, not a silent
    fallback.

    >>> pick_device("cpu")
    device(type='cpu')
    """
    name = prefer or os.environ.get("ADAMBOOK_DEVICE") or (
        "cuda" if torch.cuda.is_available() else "cpu"
    )
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} was asked for, but CUDA is not available here")
    return device


def seed_everything(seed: int) -> np.random.Generator:
    """Seed Python's, NumPy's and torch's generators (all CUDA devices too).

    Returns a fresh ``numpy.random.Generator`` seeded with ``seed``, which is what new
    code should draw from.
    """
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device
    return np.random.default_rng(seed)


@contextmanager
def torch_threads(n: int = 1):
    """Run torch's CPU kernels on ``n`` threads inside the block, then restore.

    Works as a context manager and as a decorator (``@torch_threads(1)``).

    The book's Monte Carlo loops issue thousands of operations on tensors of 10^5
    entries or fewer. Splitting each over threads gains little, and on a busy
    machine a thread that waits for its partner can cost far more than the work
    (gathers of 64k elements went from 0.2 ms to 20 ms with two threads on a loaded
    2-core CPU). Results do not depend on the thread count: the reproducibility
    test executes every chapter under two different counts.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
