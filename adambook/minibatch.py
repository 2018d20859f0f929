r"""Minibatch gradients: their exact noise, and the jitter it gives SGD's iterates.

For a dataset of :math:`N` examples with per-example gradients :math:`g_i` (at a
fixed :math:`\theta`), a minibatch :math:`B` of :math:`b` distinct examples drawn
uniformly *without* replacement gives the gradient estimate
:math:`g_B = \frac1b\sum_{i\in B} g_i`. It is unbiased, and each coordinate has

.. math::

    \operatorname{Var}(g_B) = \sigma^2\,\frac{N-b}{(N-1)\,b},
    \qquad \sigma^2 = \frac1N\sum_{i=1}^N (g_i - \bar g)^2 ,

which tends to :math:`\sigma^2/b` as :math:`N\to\infty` and is exactly zero for the
full batch :math:`b = N` (:func:`finite_population_factor`). The chapter "SGD and its
two problems" (``chapters/sgd``) derives it and checks it with
:func:`gradient_noise_experiment`.

For SGD on least squares the same factor sets the spread of the iterates around the
minimiser: :func:`sgd_second_moment` gives :math:`\mathbb E[(\theta_t-\theta^\star)
(\theta_t-\theta^\star)^\top]` exactly, and :func:`sgd_jitter_experiment` measures it
with many independent SGD runs of :class:`adambook.SGD`.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from .optim import SGD
from .problems import LeastSquares
from .stats import linear_fit, mean_se, variance_se
from .utils import torch_threads

__all__ = [
    "finite_population_factor",
    "per_example_gradients",
    "sample_batches",
    "minibatch_gradient_samples",
    "gradient_noise_experiment",
    "loglog_slope",
    "gradient_noise_covariance",
    "sgd_second_moment",
    "small_lr_spread",
    "sgd_jitter_experiment",
    "mean_square_stability_limit",
]


def finite_population_factor(n: int, batch_size):
    r"""The factor :math:`\frac{N-b}{(N-1)\,b}` by which a minibatch mean divides variance.

    ``batch_size`` may be an int or an array of ints in :math:`[1, N]`. The factor is
    1 for :math:`b = 1`, 0 for :math:`b = N`, and :math:`\approx 1/b` when
    :math:`b \ll N`.

    >>> finite_population_factor(1000, 1), finite_population_factor(1000, 1000)
    (1.0, 0.0)
    >>> round(finite_population_factor(1000, 10) * 10, 4)  # 1/b, corrected by (N-b)/(N-1)
    0.991
    """
    if n < 2:
        raise ValueError(f"need a dataset of at least 2 examples, got N = {n}")
    b = np.asarray(batch_size)
    if np.any(b < 1) or np.any(b > n):
        raise ValueError(f"batch sizes must lie in [1, N] = [1, {n}], got {batch_size}")
    out = (n - b) / ((n - 1) * b.astype(float))
    return float(out) if out.ndim == 0 else out


def per_example_gradients(problem: LeastSquares, theta: Tensor) -> Tensor:
    r"""Per-example gradients :math:`g_i = x_i(x_i^\top\theta - y_i)`, shape ``(N, d)``.

    Their mean is ``problem.grad(theta)``.
    """
    r = problem.X @ theta - problem.y
    return problem.X * r.unsqueeze(-1)


def _partial_shuffle(perm: Tensor, k: int, generator) -> None:
    r"""Fisher–Yates on the first ``k`` slots of every column of ``perm``, in place.

    ``perm`` has shape ``(n, rows)``: one permutation of ``range(n)`` per column (this
    layout keeps slot ``i`` of all columns contiguous). Afterwards the first ``k``
    entries of each column are a uniformly random ``k``-subset, in random order,
    whatever order the column was in before.
    """
    n = perm.shape[0]
    for i in range(k):
        # j uniform on {i, ..., n-1}: slot i takes one of the entries not yet drawn
        j = torch.randint(i, n, (1, perm.shape[1]), generator=generator, device=perm.device)
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
    r"""``n_rows`` independent minibatches of ``batch_size`` distinct indices of ``range(n)``.

    Each row is a uniformly random subset, drawn by a partial Fisher–Yates shuffle:
    :math:`k = \min(b, N-b)` swaps, all rows at once, so the cost is :math:`k`
    vectorised operations rather than a sort of :math:`N` keys per row. (For
    :math:`b > N/2` the shuffle picks the :math:`N-b` examples left out, and the batch
    is the rest.)

    ``perm`` (shape ``(n, n_rows)``, a permutation of ``range(n)`` in each column) is
    shuffled in place and may be passed again on the next call: whatever order it is
    in, fresh random swaps make the next batch uniform and independent of the
    previous ones.

    Returns a ``(n_rows, batch_size)`` tensor of indices.
    """
    if not 1 <= batch_size <= n:
        raise ValueError(f"batch_size must lie in [1, {n}], got {batch_size}")
    if perm is None:
        perm = torch.arange(n, device=device).unsqueeze(1).expand(n, n_rows).clone()
    k = min(batch_size, n - batch_size)
    _partial_shuffle(perm, k, generator)
    return (perm[:batch_size] if batch_size <= n - batch_size else perm[k:]).T.contiguous()


def minibatch_gradient_samples(
    per_example: Tensor,
    batch_size: int,
    n_draws: int,
    generator: torch.Generator | None = None,
    chunk: int = 5000,
) -> Tensor:
    r"""``n_draws`` independent minibatch means :math:`g_B`, shape ``(n_draws, d)``.

    Each draw is an independent batch of ``batch_size`` distinct rows of
    ``per_example``. Only :math:`k = \min(b, N-b)` rows are drawn: for a batch larger
    than half the data the draw picks the :math:`N-b` rows left out, and
    :math:`g_B = (\sum_{i} g_i - \sum_{i\notin B} g_i)/b`. Draws are made ``chunk``
    at a time to bound memory.
    """
    n = per_example.shape[0]
    k = min(batch_size, n - batch_size)
    total = per_example.sum(0)
    out = []
    for start in range(0, n_draws, chunk):
        rows = min(chunk, n_draws - start)
        perm = torch.arange(n, device=per_example.device).unsqueeze(1).expand(n, rows).clone()
        _partial_shuffle(perm, k, generator)
        picked = per_example[perm[:k].T].sum(1)  # (rows, d): sum over the k drawn rows
        out.append((picked if k == batch_size else total - picked) / batch_size)
    return torch.cat(out)


def gradient_noise_experiment(
    problem: LeastSquares,
    theta: Tensor,
    batch_sizes,
    n_draws: int,
    seed: int = 0,
) -> dict:
    r"""Monte Carlo of the minibatch gradient at ``theta`` for each batch size.

    For every :math:`b` it draws ``n_draws`` independent batches (fresh draws for every
    :math:`b`, so that the estimates for different sizes are independent) and returns,
    per batch size and coordinate, as numpy arrays of shape ``(len(batch_sizes), d)``:

    * ``mean``, ``mean_se``: the sample mean of :math:`g_B` and its standard error;
    * ``var``, ``var_se``: the unbiased sample variance and its standard error
      (:func:`adambook.stats.variance_se`, valid for any distribution with four
      moments);
    * ``excess_kurtosis``: the sample excess kurtosis (0 for a normal distribution),
      a measure of how heavy the tails of :math:`g_B` are;
    * ``predicted_var``: :math:`\sigma^2\,(N-b)/((N-1)b)`;

    and ``full_grad`` (:math:`\nabla f(\theta)`), ``sigma2`` (the population variance
    :math:`\sigma^2` of the per-example gradients), ``factor``, ``batch_sizes``, ``n``
    and ``n_draws``.
    """
    g = per_example_gradients(problem, theta)
    n = g.shape[0]
    sizes = np.asarray(batch_sizes, dtype=int)
    factor = finite_population_factor(n, sizes)
    gen = torch.Generator(device=g.device).manual_seed(seed)
    full = g.mean(0)
    sigma2 = ((g - full) ** 2).mean(0)
    stats = {k: [] for k in ("mean", "mean_se", "var", "var_se", "excess_kurtosis")}
    for b in sizes.tolist():
        with torch_threads(1):
            x = minibatch_gradient_samples(g, b, n_draws, gen).cpu().numpy()
        m, m_se = mean_se(x)
        v, v_se = variance_se(x)
        d = x - x.mean(0)
        kurt = (d**4).mean(0) / (d**2).mean(0) ** 2 - 3.0
        for key, val in zip(stats, (m, m_se, v, v_se, kurt)):
            stats[key].append(val)
    out = {k: np.asarray(v) for k, v in stats.items()}
    sigma2_np = sigma2.cpu().numpy()
    out.update(
        batch_sizes=sizes,
        factor=factor,
        full_grad=full.cpu().numpy(),
        sigma2=sigma2_np,
        predicted_var=np.outer(factor, sigma2_np),
        n=n,
        n_draws=n_draws,
    )
    return out


def loglog_slope(x, y, y_se):
    r"""Slope of :math:`\ln y` against :math:`\ln x`, with two standard errors.

    The slope is the least-squares fit of :func:`adambook.stats.linear_fit`. Returns
    ``(slope, intercept, se_fit, se_propagated)``: ``se_fit`` is the usual one from
    the scatter of the residuals; ``se_propagated`` carries each point's own standard
    error through the fit, :math:`\sqrt{\sum_k w_k^2 (\mathrm{se}_k/y_k)^2}` with the
    least-squares weights :math:`w_k = (u_k-\bar u)/\sum_j (u_j-\bar u)^2`,
    :math:`u = \ln x`, which is right when the points are independent and the model
    is exact (the delta method gives :math:`\mathrm{se}(\ln y_k) \approx \mathrm{se}_k/y_k`).
    """
    u = np.log(np.asarray(x, dtype=float))
    y = np.asarray(y, dtype=float)
    slope, intercept, se_fit = linear_fit(u, np.log(y))
    w = (u - u.mean()) / ((u - u.mean()) ** 2).sum()
    se_prop = math.sqrt(float(((w * np.asarray(y_se, dtype=float) / y) ** 2).sum()))
    return slope, intercept, se_fit, se_prop


# ------------------------------------------------------------------ SGD's jitter


def gradient_noise_covariance(problem: LeastSquares, theta: Tensor) -> Tensor:
    r"""Population covariance :math:`\Sigma = \frac1N\sum_i (g_i-\bar g)(g_i-\bar g)^\top`."""
    g = per_example_gradients(problem, theta)
    d = g - g.mean(0)
    return d.T @ d / g.shape[0]


def _step_operator(problem: LeastSquares, lr: float, batch_size: int) -> Tensor:
    r""":math:`\mathbb E[K_B\otimes K_B]`, :math:`K_B = I - \eta H_B`, as a ``(d², d²)`` matrix.

    :math:`K_B` is the minibatch mean of :math:`K_i = I - \eta x_i x_i^\top`, so by the
    same finite-population argument as for the gradient,
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


def sgd_second_moment(
    problem: LeastSquares, lr: float, batch_size: int, steps: int | None = None
) -> Tensor:
    r"""Exact :math:`P_t = \mathbb E[\delta_t\delta_t^\top]` with :math:`\delta_t = \theta_t-\theta^\star`.

    SGD with fresh minibatches of ``batch_size`` examples drawn without replacement
    at every step, started at the least-squares solution :math:`\theta^\star`
    (:math:`\delta_0 = 0`). With :math:`g_B(\theta) = H_B\delta + \xi_B` and
    :math:`\xi_B = g_B(\theta^\star)`, the batch at step :math:`t` is independent of
    :math:`\delta_{t-1}`, and :math:`\mathbb E\,\delta_{t-1} = 0`, so

    .. math::

        P_t = \mathbb E[K_B P_{t-1} K_B] + \eta^2 c_b\,\Sigma^\star ,
        \qquad K_B = I - \eta H_B ,

    with :math:`\Sigma^\star` the per-example gradient covariance at
    :math:`\theta^\star`. ``steps=None`` returns the stationary :math:`P_\infty`
    (the fixed point), which exists when the spectral radius of
    :math:`\mathbb E[K_B\otimes K_B]` is below one; a ``ValueError`` says when not.
    """
    X = problem.X
    d = X.shape[1]
    n = X.shape[0]
    M = _step_operator(problem, lr, batch_size)
    sigma = gradient_noise_covariance(problem, problem.lstsq_solution())
    drive = lr**2 * finite_population_factor(n, batch_size) * sigma.reshape(-1)
    if steps is None:
        radius = torch.linalg.eigvals(M).abs().max().item()
        if radius >= 1:
            raise ValueError(f"no stationary spread: E[K_B⊗K_B] has spectral radius {radius:.4f}")
        eye = torch.eye(d * d, dtype=X.dtype, device=X.device)
        return torch.linalg.solve(eye - M, drive).reshape(d, d)
    p = torch.zeros(d * d, dtype=X.dtype, device=X.device)
    for _ in range(steps):
        p = M @ p + drive
    return p.reshape(d, d)


def small_lr_spread(problem: LeastSquares, lr: float, batch_size: int) -> float:
    r"""The small-:math:`\eta` limit of :math:`\mathbb E\lVert\delta\rVert^2` at stationarity.

    .. math::

        \mathbb E\lVert\delta\rVert^2 \approx
        \frac{\eta c_b}{2}\operatorname{tr}(H^{-1}\Sigma^\star)

    :math:`P` is :math:`O(\eta)`, so dropping the terms of order :math:`\eta^3` in
    the recursion of :func:`sgd_second_moment` leaves the Lyapunov equation :math:`HP + PH = \eta c_b\Sigma^\star`; multiplying
    by :math:`H^{-1}` and taking the trace gives :math:`2\operatorname{tr}P =
    \eta c_b \operatorname{tr}(H^{-1}\Sigma^\star)`.
    """
    n = problem.n
    sigma = gradient_noise_covariance(problem, problem.lstsq_solution())
    t = torch.linalg.solve(problem.hessian, sigma).trace().item()
    return 0.5 * lr * finite_population_factor(n, batch_size) * t


def sgd_jitter_experiment(
    problem: LeastSquares,
    configs,
    n_chains: int,
    seed: int = 0,
    trace_chains: int = 0,
) -> list[dict]:
    r"""Run ``n_chains`` independent SGD chains for each ``(lr, batch_size, steps)``.

    Every chain starts at :math:`\theta^\star` and takes ``steps`` steps of
    :class:`adambook.SGD` on fresh minibatches drawn without replacement. The chains
    of one configuration are the rows of one parameter tensor; every row draws its
    own batches (:func:`sample_batches`), so the rows are independent.

    Returns one dict per configuration: ``lr``, ``batch_size``, ``steps``,
    ``sq_dist`` (:math:`\lVert\theta_T-\theta^\star\rVert^2` of every chain, numpy),
    its mean and standard error ``msd`` and ``msd_se``, ``final`` (the deviations
    :math:`\theta_T-\theta^\star`, numpy, ``(n_chains, d)``) and, if
    ``trace_chains > 0``, ``trace``: the whole path of the first ``trace_chains``
    chains, ``(steps + 1, trace_chains, d)``.
    """
    X, y = problem.X, problem.y
    n, d = X.shape
    theta_star = problem.lstsq_solution()
    gen = torch.Generator(device=X.device).manual_seed(seed)
    results = []
    for lr, batch_size, steps in configs:
        p = torch.nn.Parameter(theta_star.expand(n_chains, d).clone())
        opt = SGD([p], lr=lr)
        perm = torch.arange(n, device=X.device).unsqueeze(1).expand(n, n_chains).clone()
        trace = [p.detach()[:trace_chains].clone()] if trace_chains else None
        with torch_threads(1):
            for _ in range(steps):
                idx = sample_batches(n_chains, n, batch_size, gen, perm=perm)
                xb, yb = X[idx], y[idx]  # (chains, b, d), (chains, b)
                resid = torch.einsum("cbd,cd->cb", xb, p.detach()) - yb
                # g_B = (1/b) Σ_{i∈B} x_i (x_i^T θ - y_i), one row per chain
                p.grad = torch.einsum("cbd,cb->cd", xb, resid) / batch_size
                opt.step()
                if trace_chains:
                    trace.append(p.detach()[:trace_chains].clone())
        dev = (p.detach() - theta_star).cpu().numpy()
        sq = (dev**2).sum(1)
        msd, msd_se = mean_se(sq)
        res = dict(lr=lr, batch_size=batch_size, steps=steps, sq_dist=sq, msd=float(msd),
                   msd_se=float(msd_se), final=dev)
        if trace_chains:
            res["trace"] = (torch.stack(trace) - theta_star).cpu().numpy()
        results.append(res)
    return results


def mean_square_stability_limit(
    problem: LeastSquares, batch_size: int, tol: float = 1e-10
) -> float:
    r"""The largest :math:`\eta` for which SGD's second moment stays bounded.

    :math:`P_t` of :func:`sgd_second_moment` stays bounded iff the spectral radius of
    :math:`\mathbb E[K_B\otimes K_B]` is below one. For the full batch this is gradient
    descent's :math:`\eta < 2/L`; the minibatch's random curvature :math:`H_B`
    lowers it. Found by bisection on :math:`(0, 2/L]` to a relative ``tol``.
    """
    L = torch.linalg.eigvalsh(problem.hessian).max().item()

    def radius(lr):
        return torch.linalg.eigvals(_step_operator(problem, lr, batch_size)).abs().max().item()

    lo, hi = 0.0, 2.0 / L
    if radius(hi * (1 - tol)) < 1:
        return hi
    while hi - lo > tol * hi:
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if radius(mid) < 1 else (lo, mid)
    return lo
