r"""Minibatch gradients: their exact noise, and the jitter it gives SGD.

For a dataset of :math:`N` examples with per-example gradients :math:`g_i`
(at a fixed :math:`\theta`), a minibatch :math:`B` of :math:`b` distinct
examples drawn uniformly *without* replacement gives the unbiased estimate
:math:`g_B = \frac1b\sum_{i\in B} g_i`, and each coordinate has

.. math::

    \operatorname{Var}(g_B) = \sigma^2\,\frac{N-b}{(N-1)\,b},
    \qquad \sigma^2 = \frac1N\sum_{i=1}^N (g_i - \bar g)^2 ,

zero for the full batch (:func:`finite_population_factor`). For SGD on
least squares the same factor sets the iterates' spread around the
minimiser (:func:`sgd_second_moment`, exact). Derived and measured in
``chapters/sgd``. Batches come from a CPU ``torch.Generator``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from .problems import LeastSquares
from .stats import linear_fit


def finite_population_factor(n: int, batch_size):
    r"""The factor :math:`c_b = \frac{N-b}{(N-1)\,b}` of a batch's variance.

    ``batch_size``: an int or an array of ints in :math:`[1, N]`.

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
    r"""Fisher–Yates, in place, on the first ``k`` slots of every column
    of ``perm`` ``(n, rows)``, one permutation of ``range(n)`` a column:
    they become a uniformly random ``k``-subset, whatever the order before.
    """
    n = perm.shape[0]
    for i in range(k):
        # j uniform on {i, ..., n-1}: slot i takes an entry not yet drawn
        j = torch.randint(i, n, (1, perm.shape[1]), generator=generator)
        j = j.to(perm.device)
        picked = perm.gather(0, j)
        perm.scatter_(0, j, perm[i : i + 1].clone())
        perm[i] = picked[0]


def sample_batches(n_rows: int, n: int, batch_size: int,
                   generator: torch.Generator | None = None, device=None,
                   perm: Tensor | None = None) -> Tensor:
    r"""``n_rows`` independent batches of ``batch_size`` distinct indices.

    Each row, a uniformly random subset of ``range(n)``, takes
    :math:`k = \min(b, N-b)` Fisher–Yates swaps, all rows at once (for
    :math:`b > N/2` the swaps pick the examples left out). ``perm``
    ``(n, n_rows)``, shuffled in place, may be passed to the next call.
    Returns ``(n_rows, batch_size)`` indices on ``perm``'s device.
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


def minibatch_gradient_samples(per_example: Tensor, batch_size: int,
                               n_draws: int,
                               generator: torch.Generator | None = None,
                               chunk: int = 5000) -> Tensor:
    r"""``n_draws`` independent minibatch means :math:`g_B`, ``(n_draws, d)``.

    Batches of ``batch_size`` distinct rows of ``per_example``, ``chunk``
    at a time; past half the data the draw picks the rows left out.
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

    Returns ``(slope, intercept, se_fit, se_propagated)``: ``se_fit`` from
    the residuals (:func:`adambook.stats.linear_fit`); ``se_propagated``
    :math:`= \sqrt{\sum_k w_k^2 (\mathrm{se}_k/y_k)^2}`, the points' own
    SEs through the least-squares weights
    :math:`w_k = (u_k-\bar u)/\sum_j (u_j-\bar u)^2`, :math:`u = \ln x`.
    """
    u = np.log(np.asarray(x, dtype=float))
    y = np.asarray(y, dtype=float)
    slope, intercept, se_fit = linear_fit(u, np.log(y))
    w = (u - u.mean()) / ((u - u.mean()) ** 2).sum()
    rel_se = np.asarray(y_se, dtype=float) / y
    se_prop = math.sqrt(float(((w * rel_se) ** 2).sum()))
    return slope, intercept, se_fit, se_prop


def gradient_noise_covariance(problem: LeastSquares, theta: Tensor) -> Tensor:
    r""":math:`\Sigma = \frac1N\sum_i (g_i-\bar g)(g_i-\bar g)^\top`."""
    g = per_example_gradients(problem, theta)
    d = g - g.mean(0)
    return d.T @ d / g.shape[0]


def _step_operator(problem: LeastSquares, lr: float, batch_size: int):
    r""":math:`\mathbb E[K_B\otimes K_B] = \bar K\otimes\bar K + c_b\,\frac1N
    \sum_i (K_i-\bar K)\otimes(K_i-\bar K)`, a ``(d², d²)`` matrix, with
    :math:`K_B = I - \eta H_B`, :math:`K_i = I - \eta x_i x_i^\top`."""
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

    SGD with fresh batches of ``batch_size`` drawn without replacement,
    from :math:`\delta_0 = 0`:

    .. math::

        P_t = \mathbb E[K_B P_{t-1} K_B] + \eta^2 c_b\,\Sigma^\star ,
        \qquad K_B = I - \eta H_B ,

    :math:`\Sigma^\star` the per-example gradient covariance at
    :math:`\theta^\star`. ``steps=None``: the fixed point :math:`P_\infty`
    (``ValueError`` if :math:`\mathbb E[K_B\otimes K_B]` has spectral radius
    :math:`\ge 1`).
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
    r"""Small-:math:`\eta` limit of the stationary
    :math:`\mathbb E\lVert\delta\rVert^2 \approx
    \frac{\eta c_b}{2}\operatorname{tr}(H^{-1}\Sigma^\star)`, from
    :math:`HP + PH = \eta c_b\Sigma^\star` (:func:`sgd_second_moment` to
    first order in :math:`\eta`). Returns a float.
    """
    sigma = gradient_noise_covariance(problem, problem.lstsq_solution())
    t = torch.linalg.solve(problem.hessian, sigma).trace().item()
    return 0.5 * lr * finite_population_factor(problem.n, batch_size) * t


def mean_square_stability_limit(
    problem: LeastSquares, batch_size: int, tol: float = 1e-10
) -> float:
    r"""The largest :math:`\eta` for which SGD's second moment stays bounded.

    The spectral radius of :math:`\mathbb E[K_B\otimes K_B]` below one:
    :math:`\eta < 2/L` for the full batch, lower for minibatches. Bisection
    on :math:`(0, 2/L]` to a relative ``tol``.
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
