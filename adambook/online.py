r"""Online convex problems on which Adam fails (Reddi, Kale & Kumar 2018).

A learner plays a point :math:`x_t` of the interval :math:`[-1, 1]`, then sees a
linear loss :math:`f_t(x) = g_t x` and takes one optimizer step followed by the
projection back onto the interval. Reddi et al.'s problem, for a constant
:math:`C > 2`, is

.. math::

    f_t(x) = \begin{cases} C x & t \bmod 3 = 1, \\ -x & \text{otherwise,} \end{cases}

whose sum over a period, :math:`(C-2)x`, is smallest at :math:`x^\star = -1`. In the
stochastic variant :math:`f_t(x) = Cx` with probability
:math:`p = (1+\delta)/(C+1)` and :math:`-x` otherwise, so that
:math:`\mathbb E f_t(x) = \delta x`, again smallest at :math:`-1`.

Because the gradients do not depend on :math:`x`, Adam's second moment :math:`v_t`
is the same for every point played, and the questions of where Adam goes reduce to
the sign of an average step. This module holds the problems, the projection, the
game loop that runs any ``torch.optim`` optimizer on a tensor of independent runs,
the regret, and the closed forms the chapter "When Adam fails" derives:

* :func:`periodic_second_moments` and :func:`drift_per_period`: Adam's exact drift
  over one period once its moving average has forgotten its zero start;
* :func:`boundary_beta2`: the :math:`\beta_2` at which that drift changes sign;
* :func:`reddi_step_bounds`, :func:`amsgrad_step_bounds`: bounds on single steps that
  hold from the first step on, with bias correction and :math:`\epsilon`;
* :func:`lindley_mean_bound`: Kingman's bound on how far a walk with a negative
  drift, stopped at a wall, strays from that wall, and :func:`hoeffding_tail`, the
  chance that a finite run has not yet reached it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "LOWER",
    "UPPER",
    "reddi_beta2",
    "project_",
    "ReddiProblem",
    "StochasticReddiProblem",
    "Trajectory",
    "play",
    "hindsight_regret",
    "periodic_second_moments",
    "drift_per_period",
    "boundary_beta2",
    "reddi_step_bounds",
    "amsgrad_step_bounds",
    "lindley_mean_bound",
    "hoeffding_tail",
]

#: The feasible interval of Reddi et al.'s problem.
LOWER, UPPER = -1.0, 1.0


def reddi_beta2(C):
    r"""Reddi et al.'s choice :math:`\beta_2 = 1/(1+C^2)` for a given :math:`C`.

    >>> reddi_beta2(3.0)
    0.1
    """
    return 1.0 / (1.0 + C * C)


def project_(x: Tensor, lower: float = LOWER, upper: float = UPPER) -> Tensor:
    """Project ``x`` onto ``[lower, upper]`` in place (the Euclidean projection of an interval)."""
    return x.clamp_(lower, upper)


class ReddiProblem:
    r"""The deterministic problem: :math:`g_t = C` when :math:`t \bmod 3 = 1`, else :math:`-1`.

    ``C`` is a number or a tensor broadcastable to ``shape``, so that one tensor of
    runs can hold many values of :math:`C` (one per column, say). Steps count from
    :math:`t = 1`.
    """

    period = 3

    def __init__(self, C, shape=(), *, dtype=torch.float64, device=None):
        C = torch.as_tensor(C, dtype=dtype, device=device)
        if not bool((C > 2).all()):
            raise ValueError("Reddi's problem needs C > 2, so that the optimum is x = -1")
        shape = torch.broadcast_shapes(tuple(shape), C.shape)
        self.C = C
        self.shape = shape
        self._big = C.expand(shape).clone()
        self._small = torch.full(shape, -1.0, dtype=dtype, device=device)

    def gradient(self, t: int) -> Tensor:
        """:math:`g_t`; the same tensor is returned every period, so do not modify it."""
        return self._big if t % 3 == 1 else self._small

    @property
    def mean_gradient(self) -> Tensor:
        """Average gradient over a period, :math:`(C-2)/3`."""
        return (self.C - 2) / 3


class StochasticReddiProblem:
    r"""The stochastic problem: :math:`g_t = C` with probability :math:`p = (1+\delta)/(C+1)`, else :math:`-1`.

    Every entry of the run tensor draws its own independent gradients from
    ``generator``. The expected loss is :math:`\delta x`. Asking twice for the same
    step returns the same draw, so two optimizers given one problem object see the
    same gradients (common random numbers).
    """

    def __init__(self, C: float, delta: float, shape, *, generator: torch.Generator,
                 dtype=torch.float64, device=None):
        p = (1 + delta) / (C + 1)
        if not (C > 0 and delta > 0 and p < 1):
            raise ValueError(f"need C > 0, delta > 0 and p = (1+delta)/(C+1) < 1, got p = {p}")
        self.C, self.delta, self.p = float(C), float(delta), p
        self.shape = tuple(shape)
        self.generator = generator
        self.dtype, self.device = dtype, device
        self._t, self._g = None, None
        self._big = torch.tensor(self.C, dtype=dtype, device=device)
        self._small = torch.tensor(-1.0, dtype=dtype, device=device)

    def gradient(self, t: int) -> Tensor:
        if t != self._t:
            u = torch.rand(self.shape, generator=self.generator, dtype=self.dtype,
                           device=self.device)
            self._t, self._g = t, torch.where(u < self.p, self._big, self._small)
        return self._g

    @property
    def mean_gradient(self) -> float:
        r""":math:`pC - (1-p) = \delta`."""
        return self.delta


@dataclass
class Trajectory:
    """What :func:`play` recorded for one tensor of runs.

    Attributes:
        steps: the steps ``t`` at which ``x`` was recorded (0 is the start).
        x: the iterates at those steps, shape ``(len(steps), *run_shape)``; ``x[k]`` is
            the point after ``steps[k]`` updates, which is played at step ``steps[k] + 1``.
        loss_sum: :math:`\\sum_t f_t(x_t)` over the moving steps, per run.
        grad_sum: :math:`\\sum_t g_t` over the same steps, per run.
        x_sum: :math:`\\sum_t x_t` over the same steps (the points played), per run.
        moving_steps: how many steps entered the three sums.
    """

    steps: Tensor
    x: Tensor
    loss_sum: Tensor | None = None
    grad_sum: Tensor | None = None
    x_sum: Tensor | None = None
    moving_steps: int = 0

    @property
    def final(self) -> Tensor:
        return self.x[-1]

    @property
    def regret(self) -> Tensor:
        """Regret against the best fixed point in hindsight, :func:`hindsight_regret`."""
        return hindsight_regret(self.loss_sum, self.grad_sum)


def hindsight_regret(loss_sum: Tensor, grad_sum: Tensor) -> Tensor:
    r""":math:`R_T = \sum_t f_t(x_t) - \min_{x\in[-1,1]} \sum_t f_t(x)` for linear losses.

    With :math:`G = \sum_t g_t` the minimum of :math:`Gx` over the interval is
    :math:`-\lvert G\rvert`, so :math:`R_T = \sum_t g_t x_t + \lvert G\rvert`.
    """
    return loss_sum + grad_sum.abs()


def play(
    optimizer: torch.optim.Optimizer,
    games: Sequence[tuple[Tensor, object]],
    steps: int,
    *,
    lr: Callable[[int], float] | None = None,
    warmup: int = 0,
    record_every: int | None = None,
    track_regret: bool = True,
) -> list[Trajectory]:
    r"""Play ``steps`` rounds of the online game with a real optimizer.

    ``games`` pairs each parameter of ``optimizer`` (a tensor of independent runs)
    with its problem. At step :math:`t` every parameter plays its current value,
    receives ``problem.gradient(t)`` as ``.grad``, the optimizer steps, and the
    parameter is projected onto :math:`[-1, 1]`:

    .. math:: x_{t+1} = \Pi_{[-1,1]}\bigl(x_t - \eta_t\, \hat m_t / (\sqrt{\hat v_t}+\epsilon)\bigr).

    ``lr(t)``, if given, sets every group's learning rate before step ``t`` (for
    Reddi's :math:`\alpha/\sqrt t`). The first ``warmup`` steps use learning rate 0:
    the optimizer's moving averages fill up while the points stay where they are;
    these steps do not enter the regret sums. ``record_every`` keeps the iterates
    every so many steps (always the first and the last).
    """
    groups_of = {}
    for group in optimizer.param_groups:
        for p in group["params"]:
            groups_of[id(p)] = group
    for p, _ in games:
        if id(p) not in groups_of:
            raise ValueError("every game's tensor must be a parameter of the optimizer")
    base_lr = {id(g): g["lr"] for g in optimizer.param_groups}

    keep = []
    if record_every is not None:
        keep = [[p.detach().clone()] for p, _ in games]
    recorded = [0]
    sums = None
    if track_regret:
        sums = [[torch.zeros_like(p), torch.zeros_like(p), torch.zeros_like(p)] for p, _ in games]
    try:
        with torch.no_grad():
            for t in range(1, steps + 1):
                for g in optimizer.param_groups:
                    if t <= warmup:
                        g["lr"] = 0.0
                    else:
                        g["lr"] = lr(t) if lr is not None else base_lr[id(g)]
                for k, (p, problem) in enumerate(games):
                    grad = problem.gradient(t)
                    if sums is not None and t > warmup:
                        loss, gsum, xsum = sums[k]
                        loss.addcmul_(grad, p)  # f_t(x_t) = g_t x_t
                        gsum.add_(grad)
                        xsum.add_(p)
                    p.grad = grad
                optimizer.step()
                for p, _ in games:
                    project_(p)
                if record_every is not None and (t % record_every == 0 or t == steps):
                    recorded.append(t)
                    for k, (p, _) in enumerate(games):
                        keep[k].append(p.detach().clone())
    finally:
        for g in optimizer.param_groups:
            g["lr"] = base_lr[id(g)]
        for p, _ in games:
            p.grad = None

    out = []
    for k, (p, _) in enumerate(games):
        xs = torch.stack(keep[k]) if keep else p.detach().clone().unsqueeze(0)
        ts = torch.tensor(recorded if keep else [steps])
        s = sums[k] if sums is not None else (None, None, None)
        out.append(Trajectory(ts, xs, *s, moving_steps=max(steps - warmup, 0)))
    return out


# --------------------------------------------------------------- closed forms


def periodic_second_moments(beta2, C):
    r"""Adam's :math:`v` in the periodic steady state of the deterministic problem.

    Returns :math:`(v_A, v_B, v_C)`, the values just after the :math:`C` step and
    after the first and second :math:`-1` step. They solve
    :math:`v_A = \beta_2 v_C + (1-\beta_2)C^2`, :math:`v_B = \beta_2 v_A + (1-\beta_2)`,
    :math:`v_C = \beta_2 v_B + (1-\beta_2)`:

    .. math:: v_A = \frac{C^2 + \beta_2 + \beta_2^2}{1 + \beta_2 + \beta_2^2}.

    Works elementwise on numbers and NumPy arrays.

    >>> [round(float(v), 6) for v in periodic_second_moments(0.0, 3.0)]
    [9.0, 1.0, 1.0]
    """
    b = np.asarray(beta2, dtype=float)
    C = np.asarray(C, dtype=float)
    vA = (C * C + b + b * b) / (1 + b + b * b)
    vB = b * vA + (1 - b)
    vC = b * vB + (1 - b)
    return vA, vB, vC


def drift_per_period(beta2, C, eps: float = 0.0):
    r"""Adam's displacement over one period in the steady state, per unit learning rate.

    With :math:`\beta_1 = 0` the step is :math:`-\eta g_t/(\sqrt{v_t}+\epsilon)`, so over
    a period

    .. math:: \Delta(\beta_2, C) = -\frac{C}{\sqrt{v_A}+\epsilon}
              + \frac{1}{\sqrt{v_B}+\epsilon} + \frac{1}{\sqrt{v_C}+\epsilon}.

    :math:`\Delta > 0`: Adam drifts towards :math:`+1`; :math:`\Delta < 0`: towards the
    optimum :math:`-1`.

    >>> round(float(drift_per_period(0.0, 3.0)), 6)  # beta2 = 0 is sign descent
    1.0
    """
    vA, vB, vC = periodic_second_moments(beta2, C)
    return -C / (np.sqrt(vA) + eps) + 1 / (np.sqrt(vB) + eps) + 1 / (np.sqrt(vC) + eps)


def boundary_beta2(C, eps: float = 0.0, iters: int = 80):
    r"""The :math:`\beta_2` where :func:`drift_per_period` changes sign, by bisection.

    :math:`\Delta(0, C) = 1 > 0` (sign descent) and :math:`\Delta \to (2-C)/\sqrt{\bar v} < 0`
    as :math:`\beta_2 \to 1` (all three :math:`v` equal), so a sign change lies between.
    The bisection keeps the interval that brackets it; ``tests/test_online.py`` checks
    that :math:`\Delta` decreases in :math:`\beta_2`, so the root is unique.
    """
    C = np.asarray(C, dtype=float)
    lo = np.zeros_like(C)
    hi = np.full_like(C, 1.0 - 1e-12)
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        pos = drift_per_period(mid, C, eps) > 0
        lo = np.where(pos, mid, lo)
        hi = np.where(pos, hi, mid)
    return 0.5 * (lo + hi)


def reddi_step_bounds(C, eps: float = 0.0):
    r"""Bounds on Adam's single steps for :math:`\beta_1 = 0`, :math:`\beta_2 = 1/(1+C^2)`.

    Per unit learning rate, at every step :math:`t \ge 1`, with bias correction:

    * a :math:`C` step moves :math:`x` down by at most :math:`\sqrt{1+C^2}/C`, because
      :math:`\hat v_t \ge v_t \ge (1-\beta_2)C^2`;
    * a :math:`-1` step moves :math:`x` up by at least :math:`1/(\sqrt2+\epsilon)`,
      because :math:`v_{t-1} \le (1-\beta_2^{t-1})C^2` gives
      :math:`\hat v_t \le (\beta_2 C^2 + 1 - \beta_2)/(1-\beta_2) = 2`.

    Returns ``(down_at_most, up_at_least)``. They hold for the deterministic and the
    stochastic problem alike, since they use only :math:`g_t^2 \le C^2`.
    """
    C = np.asarray(C, dtype=float)
    return np.sqrt(1 + C * C) / C, 1 / (math.sqrt(2) + eps)


def amsgrad_step_bounds(C, eps: float = 0.0):
    r"""Bounds on AMSGrad's single steps for :math:`\beta_1 = 0`, :math:`\beta_2 = 1/(1+C^2)`.

    AMSGrad (in ``torch.optim``'s form) divides by
    :math:`\sqrt{\max_{s\le t} v_s/(1-\beta_2^t)}`. That maximum is at most :math:`C^2`
    (each :math:`v_s \le (1-\beta_2^s)C^2`) and, from the first :math:`C` step on, at
    least :math:`(1-\beta_2)C^2`. Per unit learning rate:

    * a :math:`C` step moves :math:`x` down by at least :math:`C/(C+\epsilon)`;
    * a :math:`-1` step after the first :math:`C` step moves :math:`x` up by at most
      :math:`1/(C\sqrt{1-\beta_2}) = \sqrt{1+C^2}/C^2`.

    Returns ``(down_at_least, up_at_most)``.
    """
    C = np.asarray(C, dtype=float)
    return C / (C + eps), np.sqrt(1 + C * C) / (C * C)


def lindley_mean_bound(up: float, down: float, p_up: float) -> float:
    r"""Kingman's bound on the mean of a walk pushed against a wall.

    Let :math:`W_{n+1} = \max(0, W_n + Y_n)` with i.i.d. :math:`Y = +u` (probability
    :math:`q`) or :math:`-d` (probability :math:`1-q`) and :math:`\mathbb E Y < 0`.
    In the stationary state :math:`\mathbb E W \le \operatorname{Var}(Y)/(2\lvert\mathbb E Y\rvert)`
    (square :math:`W + Y = W' - I` with :math:`W' I = 0`, take expectations, and use
    :math:`\mathbb E I^2 \ge (\mathbb E I)^2 = (\mathbb E Y)^2`).

    >>> round(lindley_mean_bound(1.0, 1.0, 0.25), 6)  # Var = 0.75, E Y = -0.5
    0.75
    """
    mean = p_up * up - (1 - p_up) * down
    if not mean < 0:
        raise ValueError(f"the walk must drift towards the wall (E Y = {mean} >= 0)")
    var = p_up * (1 - p_up) * (up + down) ** 2
    return var / (2 * -mean)


def hoeffding_tail(start: float, up: float, down: float, p_up: float, n: int) -> float:
    r"""Hoeffding's bound on :math:`P(w_0 + S_n > 0)` for the walk of :func:`lindley_mean_bound`.

    :math:`S_n` is a sum of :math:`n` i.i.d. steps in :math:`[-d, u]` with mean
    :math:`\mu < 0`; when :math:`n\lvert\mu\rvert > w_0`,
    :math:`P(S_n \ge -w_0) \le \exp\bigl(-2(n\lvert\mu\rvert - w_0)^2/(n(u+d)^2)\bigr)`.
    This is the chance that a run of ``n`` steps has not yet shed its start
    :math:`w_0`; the bound decreases in ``n`` once :math:`n\lvert\mu\rvert > w_0`.
    Returns 1 where Hoeffding says nothing.

    >>> hoeffding_tail(1.0, 1.0, 1.0, 0.25, 2)  # n|mu| = 1 does not exceed w0
    1.0
    """
    mean = p_up * up - (1 - p_up) * down
    if n <= 0 or n * -mean <= start:
        return 1.0
    return math.exp(-2 * (n * -mean - start) ** 2 / (n * (up + down) ** 2))
