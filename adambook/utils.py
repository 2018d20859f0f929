"""Small helpers every chapter needs: the device and the seeds."""

from __future__ import annotations

import os
import random
from contextlib import contextmanager

import numpy as np
import torch


def pick_device(prefer: str | None = None) -> torch.device:
    """The device a chapter runs on: CUDA when present, else the CPU.

    ``ADAMBOOK_DEVICE`` (``cpu`` or ``cuda``) overrides the choice, and
    ``prefer`` both. CUDA where there is none is an error, not a fallback.

    >>> pick_device("cpu")
    device(type='cpu')
    """
    name = prefer or os.environ.get("ADAMBOOK_DEVICE") or (
        "cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} was asked for, but CUDA is not "
                           "available here")
    return device


def seed_everything(seed: int) -> np.random.Generator:
    """Seed Python's, NumPy's and torch's generators (all CUDA devices too);
    return a fresh ``numpy.random.Generator`` seeded with ``seed``."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device
    return np.random.default_rng(seed)


@contextmanager
def torch_threads(n: int = 1):
    """Run torch's CPU kernels on ``n`` threads inside the block, then restore.

    Works as a decorator too. Small kernels gain little from threads, and on
    a busy machine a thread waiting for its partner can cost more than the
    work; results do not depend on the thread count.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
