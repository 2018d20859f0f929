r"""Online convex problems on which Adam fails (Reddi, Kale & Kumar 2018).

A learner plays :math:`x_t \in [-1, 1]`, sees the linear loss
:math:`f_t(x) = g_t x`, takes one optimizer step and is projected back onto
the interval. Reddi et al.'s problem, for a constant :math:`C > 2`, has
:math:`g_t = C` when :math:`t \bmod 3 = 1` and :math:`g_t = -1` otherwise; its
stochastic form has :math:`g_t = C` with probability
:math:`p = (1+\delta)/(C+1)`, so :math:`\mathbb E f_t(x) = \delta x`. Both are
smallest at :math:`x^\star = -1`.

Here are the problems, the game loop :func:`play` and the closed forms of the
chapter "When Adam fails" (``chapters/failures.ipynb``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor


def reddi_beta2(C):
    r"""Reddi et al.'s :math:`\beta_2 = 1/(1+C^2)`.

    >>> reddi_beta2(3.0)
    0.1
    """
    return 1.0 / (1.0 + C * C)


class ReddiProblem:
    r""":math:`g_t = C` when :math:`t \bmod 3 = 1`, else :math:`-1` (t from 1).

    ``C``: a number, or a tensor broadcastable to ``shape`` (one per run).
    """

    def __init__(self, C, shape=(), *, dtype=torch.float64, device=None):
        C = torch.as_tensor(C, dtype=dtype, device=device)
        if not bool((C > 2).all()):
            raise ValueError("Reddi's problem needs C > 2 (optimum at -1)")
        shape = torch.broadcast_shapes(tuple(shape), C.shape)
        self._big = C.expand(shape).clone()
        self._small = torch.full(shape, -1.0, dtype=dtype, device=device)

    def gradient(self, t: int) -> Tensor:
        """:math:`g_t` (a shared tensor: do not modify it)."""
        return self._big if t % 3 == 1 else self._small


class StochasticReddiProblem:
    r""":math:`g_t = C` with probability :math:`p = (1+\delta)/(C+1)`, else -1.

    Drawn from the CPU ``generator``; asking twice for one step returns
    the same draw, so two optimizers share gradients."""

    def __init__(self, C: float, delta: float, shape, *,
                 generator: torch.Generator, dtype=torch.float64, device=None):
        p = (1 + delta) / (C + 1)
        if not (C > 0 and delta > 0 and p < 1):
            raise ValueError("need C > 0, delta > 0 and p = (1+delta)/(C+1) "
                             f"< 1, got p = {p}")
        self.C, self.delta, self.p = float(C), float(delta), p
        self.shape, self.generator = tuple(shape), generator
        self.dtype, self.device = dtype, device
        self._t, self._g = None, None

    def gradient(self, t: int) -> Tensor:
        if t != self._t:
            u = torch.rand(self.shape, generator=self.generator,
                           dtype=self.dtype)
            g = torch.full_like(u, -1.0).masked_fill_(u < self.p, self.C)
            self._t, self._g = t, g.to(self.device)
        return self._g


@dataclass
class Trajectory:
    r"""What :func:`play` kept: ``x[k]``, the points after ``steps[k]``
    steps; :math:`\sum_t g_t x_t`, :math:`\sum_t g_t` after the warm-up."""

    steps: Tensor
    x: Tensor
    loss_sum: Tensor | None = None
    grad_sum: Tensor | None = None

    @property
    def regret(self) -> Tensor:
        r""":math:`R_T = \sum_t g_t x_t - \min_{|x|\le1} \sum_t g_t x`."""
        return self.loss_sum + self.grad_sum.abs()


def play(optimizer: torch.optim.Optimizer,
         games: Sequence[tuple[Tensor, object]], steps: int, *,
         lr: Callable[[int], float] | None, warmup: int,
         record_every: int, track_regret: bool) -> list[Trajectory]:
    r"""Play ``steps`` rounds of the online game with a real optimizer.

    ``games`` pairs each parameter (a tensor of runs) with its problem; each
    step sets ``.grad = problem.gradient(t)``, steps and projects:
    :math:`x_{t+1} = \Pi_{[-1,1]}(x_t - \eta_t\hat m_t/(\sqrt{\hat v_t}
    +\epsilon))`. ``lr(t)`` (unless ``None``) sets every group's rate; the
    first ``warmup`` steps use rate 0 and enter no regret sum. Points are
    kept every ``record_every`` steps, at the start and at the end.
    """
    owned = {id(p) for g in optimizer.param_groups for p in g["params"]}
    if any(id(p) not in owned for p, _ in games):
        raise ValueError("a game's tensor is not a parameter of the optimizer")
    base_lr = [g["lr"] for g in optimizer.param_groups]
    keep = [[p.detach().clone()] for p, _ in games]
    recorded = [0]
    sums = [[torch.zeros_like(p), torch.zeros_like(p)] for p, _ in games]
    try:
        with torch.no_grad():
            for t in range(1, steps + 1):
                for g, lr0 in zip(optimizer.param_groups, base_lr):
                    g["lr"] = (0.0 if t <= warmup
                               else lr(t) if lr is not None else lr0)
                for (p, problem), (loss, gsum) in zip(games, sums):
                    p.grad = problem.gradient(t)
                    if track_regret and t > warmup:
                        loss.addcmul_(p.grad, p)  # f_t(x_t) = g_t x_t
                        gsum.add_(p.grad)
                optimizer.step()
                for p, _ in games:
                    p.clamp_(-1.0, 1.0)  # the projection onto [-1, 1]
                if t % record_every == 0 or t == steps:
                    recorded.append(t)
                    for k, (p, _) in enumerate(games):
                        keep[k].append(p.detach().clone())
    finally:
        for g, lr0 in zip(optimizer.param_groups, base_lr):
            g["lr"] = lr0
        for p, _ in games:
            p.grad = None
    ts = torch.tensor(recorded)
    return [Trajectory(ts, torch.stack(xs), *(s if track_regret else ()))
            for xs, s in zip(keep, sums)]


def _first_from_which(mask) -> int:
    """Smallest k with mask[k:] all True (len(mask) if none)."""
    bad = np.flatnonzero(~np.asarray(mask))
    return int(bad[-1]) + 1 if len(bad) else 0


def schedule_bounds(C: float, alpha: float, steps: int, eps: float) -> dict:
    r"""Bounds on the deterministic runs, :math:`\alpha_t = \alpha/\sqrt t`.

    Period :math:`k` (from 0): steps :math:`3k+1` (gradient :math:`C`),
    :math:`3k+2`, :math:`3k+3` (-1). ``adam_lb[k]`` :math:`=
    (\alpha_{3k+2}+\alpha_{3k+3})/(\sqrt2+\epsilon)
    - \alpha_{3k+1}\sqrt{1+C^2}/C` bounds Adam's gain over period k: from
    ``adam_reach`` on it ends every period at +1. ``ams_ub[k]`` bounds
    AMSGrad's displacement: from ``ams_reach`` on it ends every period
    within ``ams_band[k]`` above -1. ``None``: ``steps`` too few to prove.
    """
    a = alpha / np.sqrt(np.arange(1, steps + 1, dtype=float))
    aA, aB, aC = a[0::3], a[1::3], a[2::3]
    down_most, up_least = reddi_step_bounds(C, eps)
    adam_lb = (aB + aC) * up_least - aA * down_most
    k1 = _first_from_which(adam_lb > 0)
    hit = np.flatnonzero(-1 + np.cumsum(adam_lb[k1:]) >= 1)
    ams_down, ams_up = amsgrad_step_bounds(C, eps)
    ams_ub = -aA * ams_down + (aB + aC) * ams_up
    # The C step outlasts the two -1 steps before it:
    clamps = np.zeros(len(aA), dtype=bool)
    clamps[1:] = aA[1:] * ams_down >= (aB[:-1] + aC[:-1]) * ams_up
    kc = max(_first_from_which(clamps), 1)
    hit_m = np.flatnonzero(1 + np.cumsum(ams_ub[kc:]) < -1)
    return {"alpha_t": a, "adam_lb": adam_lb, "ams_ub": ams_ub,
            "ams_band": (aB + aC) * ams_up, "adam_s_A_max": aA * down_most,
            "ams_up": ams_up,
            "adam_reach": k1 + int(hit[0]) if len(hit) else None,
            "ams_reach": kc + int(hit_m[0]) if len(hit_m) else None}


def periodic_second_moments(beta2, C):
    r"""Adam's :math:`v` just after the C step and the two -1 steps, steady.

    .. math:: v_A = \frac{C^2 + \beta_2 + \beta_2^2}{1 + \beta_2 + \beta_2^2},
              v_B = \beta_2 v_A + 1-\beta_2, v_C = \beta_2 v_B + 1-\beta_2.

    >>> [round(float(v), 6) for v in periodic_second_moments(0.0, 3.0)]
    [9.0, 1.0, 1.0]
    """
    b = np.asarray(beta2, dtype=float)
    C = np.asarray(C, dtype=float)
    vA = (C * C + b + b * b) / (1 + b + b * b)
    vB = b * vA + (1 - b)
    return vA, vB, b * vB + (1 - b)


def drift_per_period(beta2, C, eps: float = 0.0):
    r"""Adam's steady displacement over a period per unit learning rate.

    .. math:: \Delta(\beta_2, C) = -\frac{C}{\sqrt{v_A}+\epsilon}
              + \frac{1}{\sqrt{v_B}+\epsilon} + \frac{1}{\sqrt{v_C}+\epsilon}

    (:math:`\beta_1 = 0`). :math:`\Delta > 0`: towards +1; :math:`< 0`: -1.

    >>> round(float(drift_per_period(0.0, 3.0)), 6)  # sign descent
    1.0
    """
    vA, vB, vC = periodic_second_moments(beta2, C)
    return (-C / (np.sqrt(vA) + eps) + 1 / (np.sqrt(vB) + eps)
            + 1 / (np.sqrt(vC) + eps))


def boundary_beta2(C, eps: float = 0.0, iters: int = 80):
    r"""The :math:`\beta_2` where :func:`drift_per_period` changes sign.

    Bisection on :math:`[0, 1)`: :math:`\Delta(0, C) = 1 > 0`,
    :math:`\Delta \to (2-C)/\sqrt{\bar v} < 0` as :math:`\beta_2 \to 1`."""
    C = np.asarray(C, dtype=float)
    lo, hi = np.zeros_like(C), np.full_like(C, 1.0 - 1e-12)
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        pos = drift_per_period(mid, C, eps) > 0
        lo, hi = np.where(pos, mid, lo), np.where(pos, hi, mid)
    return 0.5 * (lo + hi)


def reddi_step_bounds(C, eps: float = 0.0):
    r"""Adam's steps for :math:`\beta_1 = 0`, :math:`\beta_2 = 1/(1+C^2)`.

    Per unit rate: a C step moves down at most :math:`\sqrt{1+C^2}/C`, a
    -1 step up at least :math:`1/(\sqrt2+\epsilon)`. Returns
    ``(down_at_most, up_at_least)``."""
    C = np.asarray(C, dtype=float)
    return np.sqrt(1 + C * C) / C, 1 / (math.sqrt(2) + eps)


def amsgrad_step_bounds(C, eps: float = 0.0):
    r"""AMSGrad's steps, :math:`\beta_1 = 0`, :math:`\beta_2 = 1/(1+C^2)`.

    Per unit rate: a C step moves down at least :math:`C/(C+\epsilon)`, a
    later -1 step up at most :math:`\sqrt{1+C^2}/C^2`. Returns
    ``(down_at_least, up_at_most)``."""
    C = np.asarray(C, dtype=float)
    return C / (C + eps), np.sqrt(1 + C * C) / (C * C)


def lindley_mean_bound(up: float, down: float, p_up: float) -> float:
    r"""Kingman: :math:`W' = \max(0, W + Y)`, :math:`Y = u` (probability
    ``p_up``) or :math:`-d`, :math:`\mathbb E Y < 0`, has stationary
    :math:`\mathbb E W \le \operatorname{Var} Y/(2\lvert\mathbb E Y\rvert)`.

    >>> round(lindley_mean_bound(1.0, 1.0, 0.25), 6)  # Var 0.75, E Y = -0.5
    0.75
    """
    mean = p_up * up - (1 - p_up) * down
    if not mean < 0:
        raise ValueError(f"the walk must drift towards the wall "
                         f"(E Y = {mean} >= 0)")
    return p_up * (1 - p_up) * (up + down) ** 2 / (2 * -mean)


def hoeffding_tail(start: float, up: float, down: float, p_up: float,
                   n: int) -> float:
    r"""Hoeffding's bound on :math:`P(w_0 + S_n > 0)` for that walk.

    :math:`S_n` sums n i.i.d. steps in :math:`[-d, u]` of mean
    :math:`\mu < 0`; if :math:`n\lvert\mu\rvert > w_0` the chance is at most
    :math:`\exp(-2(n\lvert\mu\rvert - w_0)^2/(n(u+d)^2))`, else 1.

    >>> hoeffding_tail(1.0, 1.0, 1.0, 0.25, 2)  # n|mu| = 1 = w0
    1.0
    """
    mean = p_up * up - (1 - p_up) * down
    if n <= 0 or n * -mean <= start:
        return 1.0
    return math.exp(-2 * (n * -mean - start) ** 2 / (n * (up + down) ** 2))
