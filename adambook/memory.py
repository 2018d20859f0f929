r"""What an optimizer costs: bytes counted on live objects, peak memory, step time.

The chapter "What Adam costs" (``chapters/memory``) measures every number it states
with the helpers here:

* :func:`count_memory` counts the bytes of parameters, gradients and optimizer state
  of a live ``torch.optim.Optimizer`` (``adambook``'s or ``torch.optim``'s);
* :func:`bytes_per_param` and :func:`training_memory_table` do the accounting for
  real model sizes, in fp32 and in ZeRO's mixed precision (16 bytes per parameter);
* :func:`peak_rss` runs training steps in fresh processes, one per measurement, and
  reads each one's peak resident memory from the kernel;
* :func:`zero_state_per_rank` shards Adam's state over two processes with
  ``torch.distributed.optim.ZeroRedundancyOptimizer`` on gloo, over loopback;
* :func:`time_steps` times optimizer steps and a memory copy side by side, and
  :func:`median_ci` gives the distribution-free confidence interval of a median;
* :class:`Lion`, the one-state optimizer of Chen et al. (2023), small and readable.

Bytes are counted as ``numel * element_size`` of every tensor, once per tensor.
Python numbers kept in an optimizer's state (``adambook``'s integer ``step``) are not
tensors and are not counted; ``torch.optim`` keeps ``step`` as a 0-d tensor, which
:func:`count_memory` reports separately as ``scalars``.
"""

from __future__ import annotations

import gc
import importlib
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
import traceback
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
from torch.optim import Optimizer

from .optim import _evaluate, _grads_of, _ValidatedOptimizer

__all__ = [
    "MemoryCount",
    "tensor_bytes",
    "count_memory",
    "make_optimizer",
    "OPTIMIZER_NAMES",
    "mlp",
    "transformer",
    "model_input",
    "train_step",
    "saved_activation_bytes",
    "STATE_SLOTS",
    "bytes_per_param",
    "MODEL_SIZES",
    "training_memory_table",
    "zero_bytes_per_param",
    "eightbit_state_bytes",
    "adafactor_state_numel",
    "peak_rss",
    "peak_rss_supported",
    "peak_bounds",
    "cuda_step_peak",
    "step_temporaries",
    "PAGE_SLACK",
    "run_label",
    "summarize_peaks",
    "MasterWeights",
    "zero_state_per_rank",
    "free_port",
    "time_steps",
    "STEP_WORDS",
    "median_ci",
    "Lion",
]

# ----------------------------------------------------------------------- counting


def tensor_bytes(t: torch.Tensor) -> int:
    """Bytes of the elements of ``t``: ``numel * element_size``.

    >>> tensor_bytes(torch.zeros(10, 3))
    120
    >>> tensor_bytes(torch.zeros(4, dtype=torch.bfloat16))
    8
    """
    return t.numel() * t.element_size()


@dataclass(frozen=True)
class MemoryCount:
    """Bytes held by one optimizer and its parameters, counted on the live objects.

    Attributes:
        params: bytes of the distinct parameters of the optimizer's groups.
        grads: bytes of their ``.grad`` tensors (``None`` counts zero).
        state: bytes of the optimizer's per-parameter state tensors of one or more
            dimensions (momentum buffers, ``exp_avg``, ``exp_avg_sq``, ...).
        scalars: bytes of 0-d state tensors (``torch.optim``'s ``step`` counters).
        numel: number of parameter elements.
        n_tensors: number of parameter tensors.
    """

    params: int
    grads: int
    state: int
    scalars: int
    numel: int
    n_tensors: int

    def ratio(self, numerator: str, denominator: str = "params") -> Fraction:
        """An exact ratio of sums of fields, e.g. ``ratio("params+state")``."""

        def total(expr: str) -> int:
            return sum(getattr(self, name.strip()) for name in expr.split("+"))

        return Fraction(total(numerator), total(denominator))


def _unique(tensors):
    seen, out = set(), []
    for t in tensors:
        if id(t) not in seen:
            seen.add(id(t))
            out.append(t)
    return out


def count_memory(optimizer: Optimizer) -> MemoryCount:
    """Count the bytes of ``optimizer``'s parameters, gradients and state.

    Works for any ``torch.optim.Optimizer``: it walks ``param_groups`` and
    ``optimizer.state``. Each tensor is counted once.

    >>> p = torch.nn.Parameter(torch.zeros(1000))
    >>> opt = torch.optim.Adam([p])
    >>> p.grad = torch.ones(1000)
    >>> opt.step()
    >>> c = count_memory(opt)
    >>> c.params, c.grads, c.state, c.scalars
    (4000, 4000, 8000, 4)
    """
    params = _unique(p for group in optimizer.param_groups for p in group["params"])
    state_tensors = _unique(
        value
        for per_param in optimizer.state.values()
        for value in per_param.values()
        if isinstance(value, torch.Tensor)
    )
    return MemoryCount(
        params=sum(tensor_bytes(p) for p in params),
        grads=sum(tensor_bytes(p.grad) for p in params if p.grad is not None),
        state=sum(tensor_bytes(t) for t in state_tensors if t.dim() > 0),
        scalars=sum(tensor_bytes(t) for t in state_tensors if t.dim() == 0),
        numel=sum(p.numel() for p in params),
        n_tensors=len(params),
    )


#: The optimizers the chapter compares, in the order of their state size.
OPTIMIZER_NAMES = ("sgd", "sgd_momentum", "adam", "adamw")


def make_optimizer(name: str, params, library: str = "torch", lr: float = 1e-3, **kwargs):
    """Build optimizer ``name`` (one of :data:`OPTIMIZER_NAMES`, or ``"lion"``).

    ``library`` is ``"torch"`` (``torch.optim``) or ``"adambook"``; ``kwargs`` pass
    through (e.g. ``foreach=True`` or ``fused=True`` for torch).
    """
    from . import optim as ab

    table = {
        ("sgd", "torch"): lambda: torch.optim.SGD(params, lr=lr, **kwargs),
        ("sgd_momentum", "torch"): lambda: torch.optim.SGD(params, lr=lr, momentum=0.9, **kwargs),
        ("adam", "torch"): lambda: torch.optim.Adam(params, lr=lr, **kwargs),
        ("adamw", "torch"): lambda: torch.optim.AdamW(params, lr=lr, **kwargs),
        ("sgd", "adambook"): lambda: ab.SGD(params, lr=lr, **kwargs),
        ("sgd_momentum", "adambook"): lambda: ab.SGD(params, lr=lr, momentum=0.9, **kwargs),
        ("adam", "adambook"): lambda: ab.Adam(params, lr=lr, **kwargs),
        ("adamw", "adambook"): lambda: ab.AdamW(params, lr=lr, **kwargs),
        ("lion", "adambook"): lambda: Lion(params, lr=lr, **kwargs),
    }
    if (name, library) not in table:
        raise ValueError(f"unknown optimizer {name!r} for library {library!r}")
    return table[(name, library)]()


# ------------------------------------------------------------------------- models


def mlp(width: int = 1024, depth: int = 48, seed: int = 0, dtype=torch.float32, device="cpu"):
    """``depth`` square ``Linear(width, width)`` layers, each followed by a ReLU.

    Parameters: ``depth * (width**2 + width)``; 48 layers of width 1024 make 50.4M.
    Many equal tensors keep every single temporary of a step small next to the whole.
    """
    torch.manual_seed(seed)
    layers = []
    for _ in range(depth):
        layers += [torch.nn.Linear(width, width), torch.nn.ReLU()]
    return torch.nn.Sequential(*layers).to(device=device, dtype=dtype)


def transformer(d_model: int = 256, nhead: int = 4, num_layers: int = 4,
                dim_feedforward: int = 1024, seed: int = 0, device="cpu"):
    """A ``torch.nn.TransformerEncoder`` (batch first, pre-built by torch itself)."""
    torch.manual_seed(seed)
    layer = torch.nn.TransformerEncoderLayer(
        d_model, nhead, dim_feedforward, batch_first=True, device=device
    )
    return torch.nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)


def model_input(model: torch.nn.Module, batch: int, seq_len: int = 64, seed: int = 1):
    """A random input batch for :func:`mlp` or :func:`transformer` models."""
    p = next(model.parameters())
    gen = torch.Generator().manual_seed(seed)
    if isinstance(model, torch.nn.TransformerEncoder):
        d = model.layers[0].self_attn.embed_dim
        x = torch.randn(batch, seq_len, d, generator=gen)
    else:
        x = torch.randn(batch, model[0].in_features, generator=gen)
    return x.to(device=p.device, dtype=p.dtype)


def train_step(model, optimizer, x, set_to_none: bool = True) -> float:
    """One training step on the loss ``mean(model(x)**2)``: forward, backward, step.

    The gradients are cleared *before* the forward pass, so after the call they are
    still there to be counted, as they are at the peak of a real step.
    """
    optimizer.zero_grad(set_to_none=set_to_none)
    loss = model(x).float().square().mean()
    loss.backward()
    optimizer.step()
    return loss.item()


class saved_activation_bytes:
    """Count the bytes autograd saves for the backward pass, excluding parameters.

    A context manager around a forward pass; ``.bytes`` is the total size of the
    distinct storages saved for backward, other than the parameters' own storage,
    and ``.largest`` the largest of them. These are the activations that a training
    step keeps alive until the backward pass frees them.

    >>> net = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU())
    >>> with saved_activation_bytes(net) as acts:
    ...     net(torch.randn(5, 8)).sum().backward()
    >>> acts.bytes  # the Linear's input and the ReLU's output, 5 x 8 floats each
    320
    """

    def __init__(self, model: torch.nn.Module):
        self._param_storages = {p.untyped_storage().data_ptr() for p in model.parameters()}
        self._storages: dict[int, int] = {}
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)

    def _pack(self, t: torch.Tensor):
        storage = t.untyped_storage()
        ptr = storage.data_ptr()
        if ptr not in self._param_storages and ptr != 0:
            self._storages[ptr] = storage.nbytes()
        return t

    @property
    def bytes(self) -> int:
        return sum(self._storages.values())

    @property
    def largest(self) -> int:
        return max(self._storages.values(), default=0)

    @property
    def count(self) -> int:
        return len(self._storages)

    def __enter__(self):
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc):
        return self._hooks.__exit__(*exc)


# ------------------------------------------------------------ accounting at scale

#: Moment buffers per parameter: SGD none, momentum one, Adam and AdamW two (m, v),
#: Lion one (its single moving average).
STATE_SLOTS = {"sgd": 0, "sgd_momentum": 1, "adam": 2, "adamw": 2, "lion": 1}

#: The model sizes of the chapter's table, in parameters.
MODEL_SIZES = {"125M": 125e6, "1.3B": 1.3e9, "7B": 7e9, "70B": 70e9}


def bytes_per_param(optimizer: str, precision: str = "fp32") -> dict[str, float]:
    r"""Bytes per parameter of a training step, by component.

    ``precision="fp32"``: weights, gradients and every state slot in 4 bytes.
    ``precision="mixed"``: ZeRO's accounting (Rajbhandari et al. 2020): fp16/bf16
    weights and gradients (2 + 2 bytes) and an fp32 master copy of the weights (4)
    that the optimizer updates, with its state slots in fp32. For Adam that is
    :math:`2 + 2 + (4 + 4 + 4) = 16`. ``optimizer="adam8bit"`` keeps Adam's two
    slots in one byte each, plus one fp32 scale per block of 2048 (Dettmers et al.
    2022).

    >>> bytes_per_param("adam", "fp32")["total"], bytes_per_param("adam", "mixed")["total"]
    (16, 16)
    >>> bytes_per_param("sgd", "fp32")["total"]
    8
    """
    if precision == "fp32":
        weights, grads, master, slot = 4, 4, 0, 4
    elif precision == "mixed":
        weights, grads, master, slot = 2, 2, 4, 4
    else:
        raise ValueError(f"precision must be 'fp32' or 'mixed', got {precision!r}")
    if optimizer == "adam8bit":
        state = eightbit_state_bytes(2048) / 2048
    elif optimizer in STATE_SLOTS:
        state = STATE_SLOTS[optimizer] * slot
    else:
        raise ValueError(f"unknown optimizer {optimizer!r}")
    parts = {"weights": weights, "grads": grads, "master": master, "state": state}
    parts["total"] = weights + grads + master + state
    return parts


def training_memory_table(sizes: dict[str, float] | None = None):
    """Gigabytes (10^9 bytes) of weights + gradients + optimizer state, per model size.

    Returns a list of dicts, one per model, with columns ``"fp32 SGD"``,
    ``"fp32 SGD+momentum"``, ``"fp32 Adam"``, ``"mixed Adam"`` (ZeRO's 16 bytes per
    parameter) and ``"mixed 8-bit Adam"``. Activations are not included: they
    depend on the batch, not on the optimizer.

    >>> row = training_memory_table({"7B": 7e9})[0]
    >>> row["fp32 SGD"], row["fp32 Adam"], row["mixed Adam"]
    (56.0, 112.0, 112.0)
    """
    columns = {
        "fp32 SGD": ("sgd", "fp32"),
        "fp32 SGD+momentum": ("sgd_momentum", "fp32"),
        "fp32 Adam": ("adam", "fp32"),
        "mixed Adam": ("adam", "mixed"),
        "mixed 8-bit Adam": ("adam8bit", "mixed"),
    }
    rows = []
    for name, n in (sizes or MODEL_SIZES).items():
        row = {"model": name, "params": n}
        for col, (opt, prec) in columns.items():
            row[col] = round(n * bytes_per_param(opt, prec)["total"] / 1e9, 6)
        rows.append(row)
    return rows


def zero_bytes_per_param(stage: int, n_devices: int, k: float = 12.0) -> float:
    r"""Bytes per parameter on each device under ZeRO stage 0–3 (mixed precision).

    ZeRO's model: 2 bytes of fp16 weights, 2 of fp16 gradients and :math:`K` of
    optimizer state (:math:`K = 12` for Adam: fp32 master, m, v). Stage 1 shards the
    state over :math:`N_d` devices, stage 2 also the gradients, stage 3 also the
    weights: :math:`2 + 2 + K/N_d`, :math:`2 + (2 + K)/N_d`, :math:`(4 + K)/N_d`.

    >>> zero_bytes_per_param(0, 8), zero_bytes_per_param(1, 8), zero_bytes_per_param(3, 8)
    (16.0, 5.5, 2.0)
    """
    n = n_devices
    return {0: 4 + k, 1: 4 + k / n, 2: 2 + (2 + k) / n, 3: (4 + k) / n}[stage]


def eightbit_state_bytes(numel: int, block: int = 2048, slots: int = 2) -> int:
    """Bytes of ``slots`` blockwise 8-bit state tensors of ``numel`` elements.

    Each element takes one byte; each block of ``block`` elements adds one fp32 scale.

    >>> eightbit_state_bytes(4096)  # 2 slots x (4096 codes + 2 scales of 4 bytes)
    8208
    """
    return slots * (numel + 4 * math.ceil(numel / block))


def adafactor_state_numel(shape) -> int:
    """Elements of Adafactor's second-moment state for a parameter of ``shape``.

    A tensor of two or more dimensions keeps one row and one column vector over its
    last two dimensions (per leading index); a vector keeps a full second moment.

    >>> adafactor_state_numel((1024, 4096)), adafactor_state_numel((4096,))
    (5120, 4096)
    """
    shape = tuple(shape)
    if len(shape) < 2:
        return math.prod(shape)
    lead = math.prod(shape[:-2])
    return lead * (shape[-2] + shape[-1])


class MasterWeights:
    """Mixed precision as ZeRO counts it: low-precision weights, fp32 master copy.

    The model holds its weights and gradients in ``model``'s dtype (bf16 or fp16);
    the optimizer updates fp32 copies of the weights, and the model's weights are
    then overwritten with the rounded copies. :meth:`count` reports the four parts of
    ZeRO's :math:`2 + 2 + 12` bytes per parameter on the live tensors.

    (The step converts all gradients to fp32 at once, for brevity; a real
    implementation converts them bucket by bucket, so the fp32 gradients are a
    transient and not part of the count.)
    """

    def __init__(self, model: torch.nn.Module, optimizer: str = "adam",
                 library: str = "torch", **kwargs):
        self.model = model
        self.master = [torch.nn.Parameter(p.detach().float().clone()) for p in model.parameters()]
        self.optimizer = make_optimizer(optimizer, self.master, library, **kwargs)

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.model.zero_grad(set_to_none=set_to_none)

    @torch.no_grad()
    def step(self) -> None:
        for p, m in zip(self.model.parameters(), self.master):
            m.grad = p.grad.float()
        self.optimizer.step()
        for p, m in zip(self.model.parameters(), self.master):
            p.copy_(m)
            m.grad = None

    def count(self) -> dict[str, int]:
        """Bytes of ``weights`` and ``grads`` (model dtype), ``master`` and ``state``."""
        params = list(self.model.parameters())
        state = count_memory(self.optimizer)
        return {
            "weights": sum(tensor_bytes(p) for p in params),
            "grads": sum(tensor_bytes(p.grad) for p in params if p.grad is not None),
            "master": sum(tensor_bytes(m) for m in self.master),
            "state": state.state,
            "numel": sum(p.numel() for p in params),
        }


# ------------------------------------------------------------------------- Lion


class Lion(_ValidatedOptimizer):
    r"""Lion (Chen et al. 2023): the sign of an interpolated momentum, one state.

    .. math::

        c_t &= \beta_1 m_{t-1} + (1-\beta_1)\, g_t \\
        \theta_t &= \theta_{t-1} - \eta\,\bigl(\operatorname{sign}(c_t) + \lambda\theta_{t-1}\bigr) \\
        m_t &= \beta_2 m_{t-1} + (1-\beta_2)\, g_t

    State per parameter: ``exp_avg`` (:math:`m`) only, so Lion keeps half of Adam's
    optimizer state. Defaults are the paper's: :math:`\beta = (0.9, 0.99)`.

    >>> p = torch.nn.Parameter(torch.zeros(3))
    >>> opt = Lion([p], lr=0.1)
    >>> p.grad = torch.tensor([1.0, -2.0, 0.0])
    >>> opt.step()
    >>> p.detach()
    tensor([-0.1000,  0.1000,  0.0000])
    >>> list(opt.state[p])
    ['exp_avg']
    """

    def __init__(self, params, lr: float = 1e-4, betas=(0.9, 0.99), weight_decay: float = 0.0):
        super().__init__(params, dict(lr=lr, betas=betas, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        """Perform one optimization step; ``closure`` re-evaluates the loss, as in torch."""
        loss = _evaluate(closure)
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            lr, wd = group["lr"], group["weight_decay"]
            for p, g in zip(*_grads_of(group, type(self).__name__)):
                state = self.state[p]
                if len(state) == 0:
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                m = state["exp_avg"]
                c = m.lerp(g, 1 - beta1)  # c_t = β1 m + (1 − β1) g
                p.mul_(1 - lr * wd)  # θ ← θ − η λ θ
                p.add_(c.sign_(), alpha=-lr)  # θ ← θ − η sign(c_t)
                m.lerp_(g, 1 - beta2)  # m_t = β2 m + (1 − β2) g
        return loss


# ------------------------------------------------ processes: peak RSS and ZeRO

_GIB = 1024**3


def peak_rss_supported() -> bool:
    """Peak-RSS measurement needs Linux: ``fork`` and ``/proc/self/clear_refs``."""
    return hasattr(os, "fork") and Path("/proc/self/clear_refs").exists()


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _hwm_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("VmHWM not found in /proc/self/status")


def _reset_hwm() -> None:
    # Writing 5 to clear_refs resets the peak RSS (VmHWM) to the current RSS (Linux >= 4.0).
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _build_model(model: str, model_kwargs: dict, seed: int, device="cpu"):
    if model == "mlp":
        return mlp(seed=seed, device=device, **model_kwargs)
    if model == "transformer":
        return transformer(seed=seed, device=device, **model_kwargs)
    raise ValueError(f"unknown model {model!r}")


def _warm_up_job(optimizer: str, library: str = "torch", model: str = "mlp",
                 model_kwargs: dict | None = None, batch: int = 8, seed: int = 0,
                 opt_kwargs: dict | None = None, device="cpu", **_) -> None:
    """Two steps on one layer of a job's shapes, with its optimizer and batch.

    This loads the code of every kernel the measured steps run and lets the math
    libraries allocate their workspaces, so that neither lands in the measurement.
    """
    model_kwargs, opt_kwargs = model_kwargs or {}, opt_kwargs or {}
    depth_key = {"mlp": "depth", "transformer": "num_layers"}[model]
    tiny = _build_model(model, dict(model_kwargs, **{depth_key: 1}), seed, device)
    opt = make_optimizer(optimizer, tiny.parameters(), library, **opt_kwargs)
    for _ in range(2):
        train_step(tiny, opt, model_input(tiny, batch))


def _measure_steps(baseline, peak, optimizer: str, library: str = "torch",
                   model: str = "mlp", model_kwargs: dict | None = None, batch: int = 8,
                   steps: int = 2, seed: int = 0, opt_kwargs: dict | None = None,
                   device="cpu", warm_up: bool = True) -> dict:
    """Peak memory of ``steps`` training steps above ``baseline()``, read by ``peak()``.

    With ``warm_up``, first :func:`_warm_up_job` (a parent that forks the
    measurement can do it once for all its children instead).
    """
    t_start = time.perf_counter()
    model_kwargs, opt_kwargs = model_kwargs or {}, opt_kwargs or {}
    if warm_up:
        _warm_up_job(optimizer, library, model, model_kwargs, batch, seed, opt_kwargs, device)
    gc.collect()  # free any reference cycles of the warm-up before the baseline
    base = baseline()

    t0 = time.perf_counter()
    net = _build_model(model, model_kwargs, seed, device)
    opt = make_optimizer(optimizer, net.parameters(), library, **opt_kwargs)
    x = model_input(net, batch)
    for step in range(steps):
        if step == steps - 1:  # the last step, with the optimizer's state already alive
            with saved_activation_bytes(net) as acts:
                train_step(net, opt, x)
        else:
            train_step(net, opt, x)
    top = peak()
    count = count_memory(opt)
    return {
        "optimizer": optimizer,
        "library": library,
        "model": model,
        "opt_kwargs": opt_kwargs,
        "batch": batch,
        "device": str(device),
        "peak_increment": top - base,
        "count": asdict(count),
        "activations": acts.bytes,
        "largest_activation": acts.largest,
        "n_activations": acts.count,
        "largest_param": max(tensor_bytes(p) for p in net.parameters()),
        "seconds": time.perf_counter() - t0,
        "warm_up_seconds": t0 - t_start,
    }


def _peak_rss_job(**kwargs) -> dict:
    """Runs in a fresh child process: peak RSS of two training steps (see :func:`peak_rss`)."""
    torch.set_num_threads(1)

    def baseline():
        _reset_hwm()
        return _rss_bytes()

    return _measure_steps(baseline, _hwm_bytes, **kwargs)


def cuda_step_peak(optimizer: str, device="cuda", **kwargs) -> dict:
    """Peak CUDA memory of two training steps, by ``torch.cuda.max_memory_allocated``.

    The same measurement as one :func:`peak_rss` run, in this process on a CUDA
    device: the caching allocator's count of allocated bytes replaces the RSS, so
    there is no page or interpreter overhead, only its 512-byte rounding. Keyword
    arguments are those of a :func:`peak_rss` job (``model``, ``batch``, ...).
    """
    device = torch.device(device)
    if device.type != "cuda":
        raise ValueError(f"cuda_step_peak needs a CUDA device, got {device}")

    def baseline():
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        return torch.cuda.memory_allocated(device)

    def peak():
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device)

    return _measure_steps(baseline, peak, optimizer, device=device, **kwargs)


#: Bytes a single glibc mmap block can take beyond its request: the 16-byte header
#: and 64-byte alignment push it at most one page over, and the last page is rounded
#: up; two 4 KiB pages bound both.
PAGE_SLACK = 8192


def step_temporaries(run: dict) -> tuple[int, int]:
    """Bytes and blocks of the temporaries one optimizer step holds at once.

    Read off ``torch.optim``'s code: SGD updates in place (nothing). Single-tensor
    Adam and AdamW compute ``exp_avg_sq.sqrt() / c`` for one parameter at a time,
    so two temporaries of at most the largest parameter's size. The foreach path
    computes ``torch._foreach_sqrt`` of *every* ``exp_avg_sq`` at once: one
    temporary per parameter, the size of all of them. The fused kernel updates in
    place (nothing).
    """
    name, kw = run["optimizer"], run.get("opt_kwargs", {})
    if name.startswith("sgd") or kw.get("fused"):
        return 0, 0
    if kw.get("foreach"):
        return run["count"]["params"], run["count"]["n_tensors"]
    return 2 * run["largest_param"], 2


def peak_bounds(run: dict) -> tuple[int, int]:
    r"""Lower and upper bounds on a step's peak memory, from the live counts of ``run``.

    With :math:`P, G, S` the bytes of parameters, gradients and optimizer state and
    :math:`A` the bytes autograd saves for the backward pass:

    * *lower*: :math:`P + S + \max(G, A)`. At the end of the forward pass of the last
      step, :math:`P`, :math:`S` and all of :math:`A` are alive; at the end of its
      backward pass, :math:`P`, :math:`S` and all of :math:`G`.
    * *upper*: :math:`P + G + S + A + T`, where :math:`T` is the step's temporaries
      (:func:`step_temporaries`), three activation-sized gradient buffers of the
      backward pass (the incoming gradient, the outgoing one and one intermediate),
      and :data:`PAGE_SLACK` for every live block.
    """
    c = run["count"]
    P, G, S, A = c["params"], c["grads"], c["state"] + c["scalars"], run["activations"]
    temp_bytes, temp_blocks = step_temporaries(run)
    slots = c["state"] // c["params"]  # state tensors per parameter tensor
    blocks = (2 + slots) * c["n_tensors"] + run["n_activations"] + 3 + temp_blocks
    T = temp_bytes + 3 * run["largest_activation"] + PAGE_SLACK * blocks
    return P + S + max(G, A), P + G + S + A + T


def run_label(run: dict) -> str:
    """A short name for a :func:`peak_rss` run: optimizer, options, model and batch."""
    opts = ",".join(f"{k}={v}" for k, v in sorted(run.get("opt_kwargs", {}).items()))
    return f"{run['optimizer']}{'[' + opts + ']' if opts else ''} {run['model']} B={run['batch']}"


def summarize_peaks(runs: list[dict]) -> dict[str, dict]:
    """Group :func:`peak_rss` runs by :func:`run_label`: median, spread and bounds.

    Returns, per label, ``median``, ``low``, ``high`` (of ``peak_increment``), ``n``,
    ``spread`` (``high - low``), and ``bounds`` (:func:`peak_bounds` of the first
    run; the counts are the same in every repeat) and ``run`` (that first run).
    """
    groups: dict[str, list[dict]] = {}
    for run in runs:
        groups.setdefault(run_label(run), []).append(run)
    out = {}
    for label, rs in groups.items():
        peaks = np.array([r["peak_increment"] for r in rs], dtype=float)
        out[label] = {
            "median": float(np.median(peaks)),
            "low": float(peaks.min()),
            "high": float(peaks.max()),
            "spread": float(peaks.max() - peaks.min()),
            "n": len(rs),
            "bounds": peak_bounds(rs[0]),
            "run": rs[0],
        }
    return out


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _loopback_interface() -> str:
    names = [name for _, name in socket.if_nameindex()]
    for name in names:
        if name == "lo" or name.startswith("lo"):
            return name
    raise RuntimeError(f"no loopback network interface among {names}")


def _zero_rank_job(rank: int, world_size: int, port: int, model: str = "transformer",
                   model_kwargs: dict | None = None, batch: int = 2, seed: int = 0,
                   timeout_s: float = 60.0) -> dict:
    """Runs in a child process: one rank of ZeroRedundancyOptimizer(Adam) on gloo."""
    from datetime import timedelta

    import torch.distributed as dist
    from torch.distributed.optim import ZeroRedundancyOptimizer
    from torch.nn.parallel import DistributedDataParallel

    torch.set_num_threads(1)
    os.environ["GLOO_SOCKET_IFNAME"] = _loopback_interface()
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size,
        timeout=timedelta(seconds=timeout_s),
    )
    try:
        # The same initial weights on every rank.
        model = _build_model(model, model_kwargs or {}, seed)
        ddp = DistributedDataParallel(model)
        opt = ZeroRedundancyOptimizer(
            model.parameters(), optimizer_class=torch.optim.Adam, lr=1e-3
        )
        x = model_input(model, batch, seq_len=16, seed=seed + 1 + rank)  # its own data
        for _ in range(2):
            opt.zero_grad()
            ddp(x).square().mean().backward()  # DDP averages the gradients
            opt.step()  # each rank updates its shard, then broadcasts it
        local = count_memory(opt.optim)  # the rank's own torch.optim.Adam
        # After the step every rank must hold the same parameters.
        flat = torch.cat([p.detach().flatten() for p in model.parameters()])
        spread = flat.clone()
        dist.all_reduce(spread, op=dist.ReduceOp.MAX)
        gap = (spread - flat).abs().max().item()
        return {
            "rank": rank,
            "state": local.state,
            "scalars": local.scalars,
            "local_params": local.params,
            "local_tensors": local.n_tensors,
            "all_params": sum(tensor_bytes(p) for p in model.parameters()),
            "largest_param": max(tensor_bytes(p) for p in model.parameters()),
            "param_gap": gap,
            "backend": dist.get_backend(),
        }
    finally:
        dist.destroy_process_group()


_JOBS = {"peak_rss": _peak_rss_job, "zero_rank": _zero_rank_job}


def _die_with_parent(parent: int | None) -> None:
    """Ask Linux to kill this process when its parent dies (``PR_SET_PDEATHSIG``).

    (Linux sends the signal when the *thread* that forked exits: start the
    measurements from a thread that lives as long as the call, such as the main one.)

    If the parent is already gone (its pid is not ``parent`` any more), exit now.
    Elsewhere this does nothing, and the alarms bound the processes instead.
    """
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if parent is not None and os.getppid() != parent:
        os._exit(1)


def _serve() -> None:
    """The process that :func:`_run_forked` starts: fork one child per job.

    Reads ``{"jobs": [...], "parallel": k, "child_timeout": s}`` as JSON on stdin.
    The parent imports torch once and, with ``"warm_up"``, runs
    :func:`_warm_up_job` once for each distinct peak-RSS job, on one thread: a
    first matrix product, backward pass and optimizer step pay a one-time set-up
    (seconds on a busy machine) that the forked children inherit. Each child still
    warms up itself: fork does not copy the page tables of the libraries' code, so
    a child faults in every code page it runs, and its own warm-up keeps those
    faults (tens of megabytes) out of the measurement. Each job runs in a child
    forked from it, at most ``parallel`` at a time, each with an alarm of
    ``child_timeout`` seconds. Prints the list of results as JSON.
    """
    request = json.load(sys.stdin)
    jobs, parallel = request["jobs"], request["parallel"]
    _die_with_parent(request.get("parent"))
    signal.alarm(math.ceil(request["child_timeout"]) + 5)  # never outlive the caller's timeout
    torch.set_num_threads(1)
    for name in request.get("preload", []):  # imported once here, not in every child
        importlib.import_module(name)
    if request.get("warm_up", True):
        warmed = set()
        for job in jobs:
            key = json.dumps(job["kwargs"], sort_keys=True)
            if job["fn"] == "peak_rss" and key not in warmed:
                _warm_up_job(**job["kwargs"])
                warmed.add(key)
    gc.collect()
    gc.freeze()  # the children's collections then skip everything made so far
    results: list = [None] * len(jobs)
    running: dict[int, tuple[int, int]] = {}  # pid -> (job index, read end of its pipe)
    server = os.getpid()
    pending = list(range(len(jobs)))
    while pending or running:
        while pending and len(running) < parallel:
            i = pending.pop(0)
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:  # the child
                os.close(r)
                code = 0
                _die_with_parent(server)
                try:
                    signal.alarm(max(1, math.ceil(request["child_timeout"])))
                    out = {"ok": True, "result": _JOBS[jobs[i]["fn"]](**jobs[i]["kwargs"])}
                except BaseException:  # report everything to the parent, then exit
                    out = {"ok": False, "error": traceback.format_exc()[-4000:]}
                    code = 1
                data = json.dumps(out).encode()
                while data:
                    data = data[os.write(w, data):]
                os.close(w)
                os._exit(code)
            os.close(w)
            running[pid] = (i, r)
        pid, status = os.wait()
        i, r = running.pop(pid)
        chunks = []
        while chunk := os.read(r, 65536):
            chunks.append(chunk)
        os.close(r)
        try:
            results[i] = json.loads(b"".join(chunks))
        except json.JSONDecodeError:
            results[i] = {"ok": False, "error": f"child exited with status {status}, no result"}
    json.dump(results, sys.stdout)


def _run_forked(jobs: list[dict], parallel: int, timeout_s: float,
                warm_up: bool = True, preload: tuple[str, ...] = ()) -> list[dict]:
    """Run ``jobs`` in children of a fresh Python process; bounded by ``timeout_s``.

    The process runs in its own session: on a timeout, or any error, the whole
    process group (the parent and every child) is killed, so nothing outlives
    the call.
    """
    env = dict(os.environ)
    # glibc's malloc returns every block above 64 KiB to the kernel when it is freed
    # (no dynamic threshold), so the peak RSS is the peak of live tensors plus pages.
    env["MALLOC_MMAP_THRESHOLD_"] = "65536"
    env["OMP_NUM_THREADS"] = "1"
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    request = {"jobs": jobs, "parallel": parallel, "child_timeout": timeout_s,
               "warm_up": warm_up, "parent": os.getpid(), "preload": list(preload)}
    proc = subprocess.Popen(
        [sys.executable, "-c", "from adambook.memory import _serve; _serve()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=env, cwd=root, start_new_session=True,  # cwd: import this very adambook
    )
    try:
        out, err = proc.communicate(json.dumps(request).encode(), timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise TimeoutError(f"measurement processes did not finish in {timeout_s} s") from None
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
    if proc.returncode != 0:
        raise RuntimeError(f"measurement process failed:\n{err.decode()[-4000:]}")
    results = json.loads(out)
    failed = [r["error"] for r in results if not r["ok"]]
    if failed:
        raise RuntimeError("a measurement child failed:\n" + failed[0])
    return [r["result"] for r in results]


def peak_rss(optimizers=OPTIMIZER_NAMES, repeats: int = 3, batch: int = 8,
             model: str = "mlp", model_kwargs: dict | None = None, library: str = "torch",
             extra: list[dict] | None = None, extra_once: list[dict] | None = None,
             parallel: int = 2, timeout_s: float = 300.0) -> list[dict]:
    """Peak resident memory of two training steps, one fresh process per run.

    Each run is a child forked from a Python process that has imported torch and
    done nothing else. The child warms up the kernels on one layer of the same
    shapes, resets the kernel's peak-RSS counter (``/proc/self/clear_refs``),
    builds the model (:func:`mlp` or :func:`transformer`, with ``model_kwargs``),
    and takes two steps with ``optimizer`` on a batch of ``batch``; the second step
    runs with the optimizer's state already alive, as every step of a real training
    run does. It reports ``peak_increment``, the peak RSS above the RSS before the
    model was built, and the live counts (:func:`count_memory`,
    :class:`saved_activation_bytes`); :func:`peak_bounds` turns these into bounds
    on the peak.

    Children of one parent share its address-space layout, which moves the peak by
    up to a megabyte or so; so each of the ``repeats`` rounds runs in a parent of
    its own, and the spread of the repeats sees that noise. A round runs every
    optimizer once, ``parallel`` children at a time; ``extra`` adds job keyword
    dicts (e.g. an optimizer option) to every round, ``extra_once`` to the first. ``timeout_s`` bounds the
    whole call. Linux only. Each run's ``round`` says which parent it came from.
    """
    if not peak_rss_supported():
        raise RuntimeError("peak_rss needs Linux (fork and /proc/self/clear_refs)")
    common = dict(library=library, model=model, model_kwargs=model_kwargs or {}, batch=batch)
    main = [{"fn": "peak_rss", "kwargs": dict(common, optimizer=o)} for o in optimizers]
    more = [{"fn": "peak_rss", "kwargs": dict(common, **kw)} for kw in extra or []]
    once = [{"fn": "peak_rss", "kwargs": dict(common, **kw)} for kw in extra_once or []]
    deadline = time.monotonic() + timeout_s
    runs = []
    for r in range(repeats):
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"peak_rss did not finish in {timeout_s} s")
        out = _run_forked(main + more + (once if r == 0 else []), parallel=parallel,
                          timeout_s=left)
        runs += [dict(run, round=r) for run in out]
    return runs


def zero_state_per_rank(world_size: int = 2, model: str = "transformer",
                        model_kwargs: dict | None = None, timeout_s: float = 120.0) -> list[dict]:
    """Adam state held by each rank of a ``ZeroRedundancyOptimizer`` on gloo.

    ``world_size`` processes (children of one fresh Python process) join a gloo
    process group on 127.0.0.1 at a port picked free at run time, over the loopback
    interface, wrap the same model (:func:`transformer` or :func:`mlp`) in
    ``DistributedDataParallel``, and take two steps with
    ``ZeroRedundancyOptimizer(optimizer_class=torch.optim.Adam)``, each rank on its
    own data. Each returns the bytes of the state its local optimizer holds and the
    largest difference between its parameters and the other ranks' after the steps.
    The process group is destroyed at the end, and :func:`_run_forked` kills every
    process of the call if ``timeout_s`` runs out.
    """
    if not hasattr(os, "fork"):
        raise RuntimeError("zero_state_per_rank needs os.fork (Linux or macOS)")
    port = free_port()
    jobs = [
        {"fn": "zero_rank", "kwargs": dict(rank=r, world_size=world_size, port=port,
                                           model=model, model_kwargs=model_kwargs or {},
                                           timeout_s=timeout_s / 2)}
        for r in range(world_size)
    ]
    preload = ("torch.distributed.optim", "torch.nn.parallel", "torch._dynamo")
    return _run_forked(jobs, parallel=world_size, timeout_s=timeout_s, warm_up=False,
                       preload=preload)


# --------------------------------------------------------------------------- time

#: Words of memory traffic per parameter of one step, at the least: SGD reads θ and
#: g and writes θ; Adam reads θ, g, m, v and writes θ, m, v; a copy reads and writes one.
STEP_WORDS = {"sgd": 3, "adam": 7, "copy": 2}


def _step_makers():
    from . import optim as ab

    return {
        ("adambook", "sgd"): lambda ps: ab.SGD(ps, lr=1e-3),
        ("adambook", "adam"): lambda ps: ab.Adam(ps, lr=1e-3),
        ("single-tensor", "sgd"): lambda ps: torch.optim.SGD(ps, lr=1e-3, foreach=False),
        ("single-tensor", "adam"): lambda ps: torch.optim.Adam(ps, lr=1e-3, foreach=False),
        ("foreach", "sgd"): lambda ps: torch.optim.SGD(ps, lr=1e-3, foreach=True),
        ("foreach", "adam"): lambda ps: torch.optim.Adam(ps, lr=1e-3, foreach=True),
        ("fused", "sgd"): lambda ps: torch.optim.SGD(ps, lr=1e-3, fused=True),
        ("fused", "adam"): lambda ps: torch.optim.Adam(ps, lr=1e-3, fused=True),
    }


def time_steps(numel: int = 12 * 2**20, n_tensors: int = 4, rounds: int = 11,
               device="cpu", seed: int = 0) -> dict:
    """Time one optimizer step of every implementation, and a copy, side by side.

    ``numel`` float32 parameters in ``n_tensors`` equal tensors, with gradients. For
    each implementation of :func:`_step_makers` (adambook's step, ``torch.optim``'s
    single-tensor, foreach and fused ones, for SGD and Adam) a separate copy of the
    parameters and its optimizer are built and stepped twice to create the state.
    Then ``rounds`` rounds run every step once, and a ``copy_`` of ``numel`` floats,
    in one round-robin order, so that each round measures all of them under the
    same conditions.

    On the CPU the clock is the CPU time of the calling thread, with torch held to
    one thread: time in which the operating system runs other processes is not
    counted, which is what makes a measurement on a shared machine repeatable. On
    CUDA it is the wall clock between two synchronisations.

    Returns ``{"names": [...], "times": array (rounds, len(names)), "numel": n,
    "clock": ...}``; the copy is named ``("copy", "copy")``.
    """
    device = torch.device(device)
    cuda = device.type == "cuda"
    gen = torch.Generator().manual_seed(seed)
    size = numel // n_tensors
    base = [torch.randn(size, generator=gen) for _ in range(n_tensors)]
    grads = [torch.randn(size, generator=gen) * 1e-3 for _ in range(n_tensors)]
    threads = torch.get_num_threads()
    if not cuda:
        torch.set_num_threads(1)
    clock = time.perf_counter if cuda else time.thread_time
    sync = (lambda: torch.cuda.synchronize(device)) if cuda else (lambda: None)
    try:
        steps = {}
        for key, make in _step_makers().items():
            params = [torch.nn.Parameter(b.clone().to(device)) for b in base]
            for p, g in zip(params, grads):
                p.grad = g.to(device)
            opt = make(params)
            opt.step()
            opt.step()
            steps[key] = opt.step
        src = torch.cat(base).to(device)
        dst = torch.empty_like(src)
        steps[("copy", "copy")] = lambda: dst.copy_(src)
        steps[("copy", "copy")]()
        names = list(steps)
        times = np.empty((rounds, len(names)))
        for r in range(rounds):
            for j, name in enumerate(names):
                sync()
                t0 = clock()
                steps[name]()
                sync()
                times[r, j] = clock() - t0
    finally:
        torch.set_num_threads(threads)
    return {"names": names, "times": times, "numel": size * n_tensors,
            "clock": "wall" if cuda else "thread CPU time, 1 thread"}


def median_ci(x, alpha: float = 0.01, n_tests: int = 1) -> tuple[float, float, float]:
    r"""The median of ``x`` and a distribution-free confidence interval for it.

    For :math:`n` independent draws, the interval between the :math:`k`-th smallest
    and the :math:`k`-th largest draw misses the true median with probability
    :math:`2\,P(\mathrm{Bin}(n, 1/2) \le k-1)` whatever the distribution (the
    sign-test interval). The largest :math:`k` whose miss probability is at most the
    per-test level is used; with ``n_tests`` intervals in one family that level is
    Šidák's :math:`1-(1-\alpha)^{1/n_{\text{tests}}}`, so that all of them hold
    together with probability at least :math:`1-\alpha`. Returns
    ``(median, low, high)``.

    >>> median_ci([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11], alpha=0.05)
    (6.0, 2.0, 10.0)
    """
    x = np.sort(np.asarray(x, dtype=float))
    n = len(x)
    level = -math.expm1(math.log1p(-alpha) / n_tests)
    k = 0
    while k + 1 <= n // 2:  # is the interval of the (k+1)-th draws still wide enough?
        miss = 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2**n
        if miss > level:
            break
        k += 1
    if k == 0:
        raise ValueError(
            f"{n} draws cannot give a median interval at level {level:.2g}; "
            f"need at least {math.ceil(math.log2(2 / level))}"
        )
    return float(np.median(x)), float(x[k - 1]), float(x[n - k])
