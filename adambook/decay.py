r"""The weight-decay chapters' setting: the post's design (columns of scale
1 and 1000, :math:`\theta_{\text{true}} = (1, 10^{-3})`, noise 0.1,
:math:`n = 200`), schedules, and Adam with weight decay in three places.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from . import regularization as reg
from .problems import LeastSquares, scaled_regression

#: The column scales of the post's design.
SCALES = (1.0, 1000.0)
#: The ridge strength of the post's example.
LAMBDA = 0.1
#: A decay strength whose ball, radius 1/λ = 0.5, cuts off least squares.
LAMBDA_ACTIVE = 2.0
BETA1, BETA2, EPS = 0.9, 0.999, 1e-8
#: Adam's three places for weight decay, by adambook.functional's names.
ADAM_MODES = {"adam_l2": "l2", "adam_post": "l2_after_moments",
              "adamw": "decoupled"}


def post_problem(device=None, dtype=torch.float64, seed=0, n=200
                 ) -> LeastSquares:
    """The post's ridge example: :func:`scaled_regression`, :data:`SCALES`."""
    return scaled_regression(n=n, scales=SCALES, seed=seed, dtype=dtype,
                             device=device)


def start_point(problem: LeastSquares) -> torch.Tensor:
    r"""Twice the true coefficients, :math:`2/s_i`: decay has work to do."""
    return 2.0 / torch.tensor(SCALES, dtype=problem.X.dtype,
                              device=problem.X.device)


def relative_accuracy(problem: LeastSquares, weight_decay) -> float:
    r""":math:`2\kappa(A)u`, :math:`A = H + \operatorname{diag}(\lambda)`:
    rounding :math:`A` and :math:`b` (relative :math:`u` each) moves the
    solution of :math:`A\theta = b` by up to this, relatively."""
    X = problem.X
    lam = torch.as_tensor(weight_decay, dtype=X.dtype).to(X.device)
    eig = torch.linalg.eigvalsh(
        problem.hessian + torch.diag(lam.expand(X.shape[1])))
    return 2 * (eig.max() / eig.min()).item() * torch.finfo(X.dtype).eps / 2


def hold_then_decay(lr0=1e-2, lr_end=1e-9, hold=10_000, total=50_000):
    r"""``lr(t)``, ``t = 1..total``: :math:`\eta_0` for ``hold`` steps, then
    geometric decay to ``lr_end`` by ``rate`` per step (keep it above
    :math:`\sqrt{\beta_2}`, the fastest fall of :math:`\sqrt{\hat v}`)."""
    rate = (lr_end / lr0) ** (1.0 / (total - hold))

    def lr(t: int) -> float:
        return lr0 if t <= hold else lr0 * rate ** (t - hold)

    lr.total, lr.rate, lr.hold = total, rate, hold
    return lr


def constant(lr0, total: int):
    """``lr0`` (a number, or a column of per-run rates) for ``total`` steps,
    as a schedule."""

    def lr(t: int):
        return lr0

    lr.total, lr.rate = total, 1.0
    return lr


def adam_step(theta, g, m, v, t, lr, l2, post, decoupled, beta1, beta2,
              eps):
    r"""One Adam step in place on every row of ``theta``, with each row's
    :math:`\lambda` in three places (numbers or columns, 0 where unused);
    returns :math:`\sqrt{\hat v_t}+\epsilon`.

    .. math::

        g \leftarrow g + \lambda_{\text{l2}}\theta,\
        \theta \leftarrow (1-\eta\lambda_{\text{dec}})\theta,\
        \theta \leftarrow \theta - \eta\,\frac{\hat m
        + \lambda_{\text{post}}\theta}{\sqrt{\hat v}+\epsilon}

    :func:`adambook.functional.adam`'s arithmetic, in its three modes.
    """
    l2, post = (torch.as_tensor(x, dtype=theta.dtype, device=theta.device)
                for x in (l2, post))
    g = torch.addcmul(g, l2, theta)            # torch's Adam + L2
    theta.mul_(1 - lr * decoupled)             # AdamW
    m.lerp_(g, 1 - beta1)
    v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
    denom = v.sqrt().div_(math.sqrt(1 - beta2**t)).add_(eps)
    num = torch.addcmul(m / (1 - beta1**t), post, theta)  # the post's L2
    if isinstance(lr, float):
        theta.addcdiv_(num, denom, value=-lr)
    else:
        theta.sub_(lr * num / denom)
    return denom


def run_adam(problem, kind, weight_decay, schedule, theta0=None, eps=EPS,
             record_every=0, measure_decay=False, beta1=BETA1, beta2=BETA2):
    r"""Full-batch Adam (:func:`adam_step`), decay in the place ``kind``
    (a key of :data:`ADAM_MODES`; a list runs one row each), for
    ``schedule.total`` steps at ``schedule(t)``.

    Returns ``theta``, ``sqrt_vhat``, ``mhat``; with ``record_every`` (an
    interval, or ``"log"``: ~400 log-spaced steps) ``path``, ``steps`` and
    ``denom``; with ``measure_decay``, each recorded step retaken without
    decay gives ``decay`` :math:`= (\theta^{\lambda=0}_t-\theta_t)/(\eta
    \theta_{t-1})` and ``decay_rounding``, its relative rounding bound where
    the moments do not see :math:`\lambda` (post's form, AdamW): the shrunk
    :math:`\theta` and each :math:`\eta\hat m/(\sqrt{\hat v}+\epsilon)`
    round :math:`\le 4` times, each result once: :math:`[\gamma_4(2|
    \theta_{t-1}|+|\Delta^{0}_t|+|\Delta_t|)+u(|\theta^{\lambda=0}_t|
    +|\theta_t|)]/|\theta^{\lambda=0}_t-\theta_t|+\gamma_4`,
    :math:`\Delta`: the steps.
    """
    kinds = [kind] if isinstance(kind, str) else list(kind)
    X, T = problem.X, schedule.total
    lam = np.broadcast_to(np.asarray(weight_decay, float), (len(kinds),))
    l2, post, dec = (torch.tensor([[w * (k == name)] for k, w in
                                   zip(kinds, lam)], dtype=X.dtype
                                  ).to(X.device) for name in ADAM_MODES)
    if record_every == "log":
        marks = set(np.unique(np.logspace(0, math.log10(T), 400).astype(int))
                    .tolist())
    else:
        marks = set(range(record_every, T + 1, record_every)
                    if record_every else ())
    theta = torch.zeros(len(kinds), X.shape[1], dtype=X.dtype,
                        device=X.device)
    theta += 0 if theta0 is None else theta0
    m, v = torch.zeros_like(theta), torch.zeros_like(theta)
    rec = {"path": [theta.clone()], "denom": [], "decay": [],
           "decay_rounding": []}
    u, steps = torch.finfo(X.dtype).eps / 2, [0]
    g4 = reg.gamma(4, u)
    for t in range(1, T + 1):
        g, lr = problem.grad(theta), schedule(t)
        if measure_decay and t in marks:
            before, free = theta.clone(), theta.clone()
            adam_step(free, g, m.clone(), v.clone(), t, lr, 0.0, 0.0, 0.0,
                      beta1, beta2, eps)
        denom = adam_step(theta, g, m, v, t, lr, l2, post, dec, beta1,
                          beta2, eps)
        if t in marks:
            rec["path"].append(theta.clone())
            rec["denom"].append(denom)
            steps.append(t)
            if measure_decay:
                gap = free - theta
                rec["decay"].append(gap / (lr * before))
                rec["decay_rounding"].append((g4 * (
                    2 * before.abs() + (before - free).abs()
                    + (before - theta).abs()) + u * (free.abs()
                    + theta.abs())) / gap.abs() + g4)
    out = {"theta": theta, "sqrt_vhat": (v / (1 - beta2**T)).sqrt(),
           "mhat": m / (1 - beta1**T)}
    if marks:
        out.update({k: torch.stack(x) for k, x in rec.items() if x})
    if isinstance(kind, str):
        out = {k: x[..., 0, :] for k, x in out.items()}
    if marks:
        out["steps"] = np.array(steps)
    out["kind"] = kind
    return out


def nearest(point, candidates: dict, certified: float = 0.0
            ) -> tuple[str, bool]:
    """The candidate nearest ``point``, and whether that is certain: its
    distance plus ``certified`` (the error of ``point``) below half the
    distance to the next candidate."""
    dist = {k: (point - c).norm().item() for k, c in candidates.items()}
    best = min(dist, key=dist.get)
    gap = min(((candidates[best] - c).norm().item()
               for k, c in candidates.items() if k != best),
              default=math.inf)
    return best, dist[best] + certified < gap / 2
