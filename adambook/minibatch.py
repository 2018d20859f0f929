r"""Minibatch gradients: their exact noise, and the jitter it gives SGD.

For a dataset of :math:`N` examples with per-example gradients :math:`g_i`
(at a fixed :math:`\theta`), a minibatch :math:`B` of :math:`b` distinct
examples drawn uniformly *without* replacement gives the unbiased estimate
:math:`g_B = \frac1b\sum_{i\in B} g_i`, and each coordinate has

.. math::

    \operatorname{Var}(g_B) = \sigma^2\,\frac{N-b}{(N-1)\,b},
    \qquad \sigma^2 = \frac1N\sum_{i=1}^N (g_i - \bar g)^2 ,

which tends to :math:`\sigma^2/b` as :math:`N\to\infty` and is exactly zero
for the full batch :math:`b = N` (:func:`finite_population_factor`). For SGD
on least squares the same factor sets the spread of the iterates around the
minimiser: :func:`sgd_second_moment` gives :math:`\mathbb
E[(\theta_t-\theta^\star)(\theta_t-\theta^\star)^\top]` exactly. The chapter
"SGD and its two problems" (``chapters/sgd``, section "Problem one: gradient
noise") derives both and measures them with these tools.

Batches are drawn from a CPU ``torch.Generator``, so they do not depend on
the device.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from .problems import LeastSquares
from .stats import linear_fit

__all__ = [
    "finite_population_factor",
    "per_example_gradients",
    "sample_batches",
    "minibatch_gradient_samples",
    "loglog_slope",
    "gradient_noise_covariance",
    "sgd_second_moment",
    "small_lr_spread",
    "mean_square_stability_limit",
]


def finite_population_factor(n: int, batch_size):
    r"""The factor :math:`c_b = \frac{N-b}{(N-1)\,b}` of a batch's variance.

    ``batch_size`` may be an int or an array of ints in :math:`[1, N]`. The
    factor is 1 for :math:`b = 1`, 0 for :math:`b = N`, and :math:`\approx 1/b`
    when :math:`b \ll N`.

    >>> finite_population_factor(1000, 1), finite_population_factor(1000, 1000)
    (1.0, 0.0)
    >>> round(finite_population_factor(1000, 10) * 10, 4)  # (N-b)/(N-1)
    0.991
    """
    if n < 2:
        raise ValueError(
            f"need a dataset of at least 2 examples, got N = {n}")
    b = np.asarray(batch_size)
    if np.any(b < 1) or np.any(b > n):
        raise ValueError(
            f"batch sizes must lie in [1, N] = [1, {n}], got {batch_size}")
    out = (n - b) / ((n - 1) * b.astype(float))
    return float(out) if out.ndim == 0 else out


def per_example_gradients(problem: LeastSquares, theta: Tensor) -> Tensor:
    r"""Per-example gradients :math:`g_i = x_i(x_i^\top\theta - y_i)`.

    Shape ``(N, d)``; their mean is ``problem.grad(theta)``.
    """
    r = problem.X @ theta - problem.y
    return problem.X * r.unsqueeze(-1)


def _partial_shuffle(perm: Tensor, k: int, generator) -> None:
    r"""Fisher–Yates on the first ``k`` slots of every column of ``perm``.

    In place. ``perm`` has shape ``(n, rows)``: one permutation of ``range(n)``
    per column (this layout keeps slot ``i`` of all columns contiguous).
    Afterwards the first ``k`` entries of each column are a uniformly random
    ``k``-subset, in random order, whatever order the column was in before. The
    random numbers come from the CPU ``generator`` and are moved to
    ``perm.device``.
    """
    n = perm.shape[0]
    for i in range(k):
        # j uniform on {i, ..., n-1}: slot i takes an entry not yet drawn
        j = torch.randint(i, n, (1, perm.shape[1]), generator=generator)
        j = j.to(perm.device)
        picked = perm.gather(0, j)
        perm.scatter_(0, j, perm[i : i + 1].clone())
        perm[i] = picked[0]


def sample_batches(
    n_rows: int,
    n: int,
    batch_size: int,
    generator: torch.Generator | None = None,
    device=None,
    perm: Tensor | None = None,
) -> Tensor:
    r"""``n_rows`` independent batches of ``batch_size`` distinct indices.

    Each row is a uniformly random subset of ``range(n)``, drawn by a partial
    Fisher–Yates shuffle: :math:`k = \min(b, N-b)` swaps, all rows at once,
    so the cost is :math:`k` vectorised operations rather than a sort of
    :math:`N` keys per row. (For :math:`b > N/2` the shuffle picks the
    :math:`N-b` examples left out, and the batch is the rest.)

    ``perm`` (shape ``(n, n_rows)``, a permutation of ``range(n)`` in each
    column, on ``device``) is shuffled in place and may be passed again on the
    next call: whatever order it is in, fresh random swaps make the next batch
    uniform and independent of the previous ones. ``generator`` is a CPU
    generator.

    Returns a ``(n_rows, batch_size)`` tensor of indices on ``perm``'s device.
    """
    if not 1 <= batch_size <= n:
        raise ValueError(f"batch_size must lie in [1, {n}], got {batch_size}")
    if perm is None:
        perm = torch.arange(n, device=device).unsqueeze(1)
        perm = perm.expand(n, n_rows).clone()
    k = min(batch_size, n - batch_size)
    _partial_shuffle(perm, k, generator)
    rows = perm[:batch_size] if batch_size <= n - batch_size else perm[k:]
    return rows.T.contiguous()


def minibatch_gradient_samples(
    per_example: Tensor,
    batch_size: int,
    n_draws: int,
    generator: torch.Generator | None = None,
    chunk: int = 5000,
) -> Tensor:
    r"""``n_draws`` independent minibatch means :math:`g_B`, ``(n_draws, d)``.

    Each draw is an independent batch of ``batch_size`` distinct rows of
    ``per_example``, from the CPU ``generator``. Only :math:`k = \min(b, N-b)`
    rows are drawn: for a batch larger than half the data the draw picks the
    :math:`N-b` rows left out, and :math:`g_B = (\sum_{i} g_i -
    \sum_{i\notin B} g_i)/b`. Draws are made ``chunk`` at a time to bound
    memory.
    """
    n = per_example.shape[0]
    k = min(batch_size, n - batch_size)
    total = per_example.sum(0)
    out = []
    for start in range(0, n_draws, chunk):
        rows = min(chunk, n_draws - start)
        perm = torch.arange(n, device=per_example.device).unsqueeze(1)
        perm = perm.expand(n, rows).clone()
        _partial_shuffle(perm, k, generator)
        picked = per_example[perm[:k].T].sum(1)  # (rows, d): the k drawn
        out.append((picked if k == batch_size else total - picked)
                   / batch_size)
    return torch.cat(out)


def loglog_slope(x, y, y_se):
    r"""Slope of :math:`\ln y` against :math:`\ln x`, with two standard errors.

    The slope is the least-squares fit of :func:`adambook.stats.linear_fit`.
    Returns ``(slope, intercept, se_fit, se_propagated)``: ``se_fit`` is the
    usual one from the scatter of the residuals; ``se_propagated`` carries each
    point's own standard error through the fit,
    :math:`\sqrt{\sum_k w_k^2 (\mathrm{se}_k/y_k)^2}` with the least-squares
    weights :math:`w_k = (u_k-\bar u)/\sum_j (u_j-\bar u)^2`,
    :math:`u = \ln x`, which is right when the points are independent and the
    model is exact (the delta method gives
    :math:`\mathrm{se}(\ln y_k) \approx \mathrm{se}_k/y_k`).
    """
    u = np.log(np.asarray(x, dtype=float))
    y = np.asarray(y, dtype=float)
    slope, intercept, se_fit = linear_fit(u, np.log(y))
    w = (u - u.mean()) / ((u - u.mean()) ** 2).sum()
    rel_se = np.asarray(y_se, dtype=float) / y
    se_prop = math.sqrt(float(((w * rel_se) ** 2).sum()))
    return slope, intercept, se_fit, se_prop


# ---------------------------------------------------------------- SGD's jitter


def gradient_noise_covariance(problem: LeastSquares, theta: Tensor) -> Tensor:
    r""":math:`\Sigma = \frac1N\sum_i (g_i-\bar g)(g_i-\bar g)^\top`."""
    g = per_example_gradients(problem, theta)
    d = g - g.mean(0)
    return d.T @ d / g.shape[0]


def _step_operator(problem: LeastSquares, lr: float, batch_size: int):
    r""":math:`\mathbb E[K_B\otimes K_B]`, :math:`K_B = I - \eta H_B`.

    A ``(d², d²)`` matrix. :math:`K_B` is the minibatch mean of
    :math:`K_i = I - \eta x_i x_i^\top`, so by the same finite-population
    argument as for the gradient,
    :math:`\mathbb E[K_B\otimes K_B] = \bar K\otimes\bar K + c_b\,\frac1N\sum_i
    (K_i-\bar K)\otimes(K_i-\bar K)` with :math:`c_b = (N-b)/((N-1)b)`.
    """
    X = problem.X
    n, d = X.shape
    outer = X.unsqueeze(2) * X.unsqueeze(1)  # x_i x_i^T, (N, d, d)
    eye = torch.eye(d, dtype=X.dtype, device=X.device)
    K = eye - lr * outer
    Kbar = K.mean(0)
    D = K - Kbar
    cov = torch.einsum("nij,nkl->ikjl", D, D).reshape(d * d, d * d) / n
    c = finite_population_factor(n, batch_size)
    return torch.kron(Kbar, Kbar) + c * cov


def _spectral_radius(M: Tensor) -> float:
    return torch.linalg.eigvals(M).abs().max().item()


def sgd_second_moment(
    problem: LeastSquares, lr: float, batch_size: int, steps: int | None = None
) -> Tensor:
    r"""Exact :math:`P_t = \mathbb E[\delta_t\delta_t^\top]`, :math:`\delta_t =
    \theta_t-\theta^\star`.

    SGD with fresh minibatches of ``batch_size`` examples drawn without
    replacement at every step, started at the least-squares solution
    :math:`\theta^\star` (:math:`\delta_0 = 0`). With :math:`g_B(\theta) =
    H_B\delta + \xi_B` and :math:`\xi_B = g_B(\theta^\star)`, the batch at step
    :math:`t` is independent of :math:`\delta_{t-1}`, and :math:`\mathbb
    E\,\delta_{t-1} = 0`, so

    .. math::

        P_t = \mathbb E[K_B P_{t-1} K_B] + \eta^2 c_b\,\Sigma^\star ,
        \qquad K_B = I - \eta H_B ,

    with :math:`\Sigma^\star` the per-example gradient covariance at
    :math:`\theta^\star`. ``steps=None`` returns the stationary
    :math:`P_\infty` (the fixed point), which exists when the spectral radius
    of :math:`\mathbb E[K_B\otimes K_B]` is below one; a ``ValueError`` says
    when not.
    """
    X = problem.X
    n, d = X.shape
    M = _step_operator(problem, lr, batch_size)
    sigma = gradient_noise_covariance(problem, problem.lstsq_solution())
    c = finite_population_factor(n, batch_size)
    drive = lr**2 * c * sigma.reshape(-1)
    if steps is None:
        radius = _spectral_radius(M)
        if radius >= 1:
            raise ValueError("no stationary spread: E[K_B⊗K_B] has spectral "
                             f"radius {radius:.4f}")
        eye = torch.eye(d * d, dtype=X.dtype, device=X.device)
        return torch.linalg.solve(eye - M, drive).reshape(d, d)
    p = torch.zeros(d * d, dtype=X.dtype, device=X.device)
    for _ in range(steps):
        p = M @ p + drive
    return p.reshape(d, d)


def small_lr_spread(problem: LeastSquares, lr: float, batch_size: int):
    r"""Small-:math:`\eta` limit of :math:`\mathbb E\lVert\delta\rVert^2`.

    .. math::

        \mathbb E\lVert\delta\rVert^2 \approx
        \frac{\eta c_b}{2}\operatorname{tr}(H^{-1}\Sigma^\star)

    at stationarity. :math:`P` is :math:`O(\eta)`, so dropping the terms of
    order :math:`\eta^3` in the recursion of :func:`sgd_second_moment` leaves
    the Lyapunov equation :math:`HP + PH = \eta c_b\Sigma^\star`; multiplying
    by :math:`H^{-1}` and taking the trace gives :math:`2\operatorname{tr}P =
    \eta c_b \operatorname{tr}(H^{-1}\Sigma^\star)`. Returns a float.
    """
    sigma = gradient_noise_covariance(problem, problem.lstsq_solution())
    t = torch.linalg.solve(problem.hessian, sigma).trace().item()
    return 0.5 * lr * finite_population_factor(problem.n, batch_size) * t


def mean_square_stability_limit(
    problem: LeastSquares, batch_size: int, tol: float = 1e-10
) -> float:
    r"""The largest :math:`\eta` for which SGD's second moment stays bounded.

    :math:`P_t` of :func:`sgd_second_moment` stays bounded iff the spectral
    radius of :math:`\mathbb E[K_B\otimes K_B]` is below one. For the full
    batch this is gradient descent's :math:`\eta < 2/L`; the minibatch's random
    curvature :math:`H_B` lowers it. Found by bisection on :math:`(0, 2/L]` to
    a relative ``tol``.
    """
    L = torch.linalg.eigvalsh(problem.hessian).max().item()

    def radius(lr):
        return _spectral_radius(_step_operator(problem, lr, batch_size))

    lo, hi = 0.0, 2.0 / L
    if radius(hi * (1 - tol)) < 1:
        return hi
    while hi - lo > tol * hi:
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if radius(mid) < 1 else (lo, mid)
    return lo
