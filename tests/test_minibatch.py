"""adambook.minibatch: the exact minibatch variance, the sampler, SGD's exact jitter.

Tolerances: exact enumerations are compared to float rounding (a few ulps times the
number of terms summed); Monte Carlo comparisons use a standard error and a Šidák
z-bound at a family-wise alpha of 1e-6, so that a correct implementation fails a run
of this file about once in a million.
"""

import itertools
import math
from statistics import NormalDist

import numpy as np
import pytest
import torch

from adambook import minibatch as mb
from test_verdicts_sgd import jitter_msd
from adambook.problems import LeastSquares, scaled_regression
from adambook.stats import mean_se, variance_se, z_bound
from adambook.utils import torch_threads

U64 = torch.finfo(torch.float64).eps


def tiny_problem(n=7, d=2, seed=0, device="cpu"):
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=gen, dtype=torch.float64)
    y = torch.randn(n, generator=gen, dtype=torch.float64)
    return LeastSquares(X.to(device), y.to(device))


# ---------------------------------------------------------------- the exact factor


def test_factor_limits():
    assert mb.finite_population_factor(50, 1) == 1.0
    assert mb.finite_population_factor(50, 50) == 0.0
    f = mb.finite_population_factor(10**9, np.array([1, 10, 100]))
    np.testing.assert_allclose(f * np.array([1, 10, 100]), 1.0, rtol=1e-6)  # 1/b for N → ∞


@pytest.mark.parametrize("bad", [0, 8, -1])
def test_factor_rejects_batch_outside_dataset(bad):
    with pytest.raises(ValueError, match="batch sizes must lie in"):
        mb.finite_population_factor(7, bad)


def test_factor_rejects_tiny_dataset():
    with pytest.raises(ValueError, match="at least 2 examples"):
        mb.finite_population_factor(1, 1)


@pytest.mark.parametrize("b", range(1, 8))
def test_factor_is_exact_by_enumerating_every_batch(b):
    """Average over all C(N, b) batches: mean = full gradient, variance = σ² c_b.

    Sums of at most 35 terms of size O(1): rounding below 1e-13 absolute.
    """
    prob = tiny_problem()
    theta = torch.tensor([0.3, -0.7], dtype=torch.float64)
    g = mb.per_example_gradients(prob, theta)
    n = g.shape[0]
    batches = torch.tensor(list(itertools.combinations(range(n), b)))
    gb = g[batches].mean(1)
    full = prob.grad(theta)
    torch.testing.assert_close(g.mean(0), full, rtol=0, atol=1e-14)
    torch.testing.assert_close(gb.mean(0), full, rtol=0, atol=1e-13)
    var = ((gb - full) ** 2).mean(0)
    sigma2 = ((g - full) ** 2).mean(0)
    torch.testing.assert_close(var, sigma2 * mb.finite_population_factor(n, b), rtol=0, atol=1e-13)


def test_covariance_matrix_scales_by_the_same_factor():
    prob = tiny_problem(n=6)
    theta = torch.zeros(2, dtype=torch.float64)
    g = mb.per_example_gradients(prob, theta)
    sigma = mb.gradient_noise_covariance(prob, theta)
    for b in (2, 3):
        gb = g[torch.tensor(list(itertools.combinations(range(6), b)))].mean(1)
        d = gb - g.mean(0)
        torch.testing.assert_close(d.T @ d / len(gb), sigma * mb.finite_population_factor(6, b),
                                   rtol=0, atol=1e-13)


# ------------------------------------------------------------------------ the sampler


@pytest.mark.parametrize("b", [1, 3, 5, 9, 10])
def test_batches_are_distinct_indices(device, b):
    gen = torch.Generator().manual_seed(0)  # CPU generator, any device
    idx = mb.sample_batches(500, 10, b, gen, device=device)
    assert idx.shape == (500, b) and idx.device.type == device.type
    s = idx.sort(1).values
    assert (s[:, 1:] != s[:, :-1]).all() and s.min() >= 0 and s.max() < 10


def test_batches_are_uniform_over_subsets():
    """N = 5, b = 2: each of the 10 subsets has probability 1/10 (chi-square, 9 dof).

    The bound is the chi-square(9) quantile at 1 - 1e-6 by the Wilson–Hilferty
    approximation (accurate to about 1% there), about 46.
    """
    gen = torch.Generator().manual_seed(1)
    R = 20_000
    idx = mb.sample_batches(R, 5, 2, gen).sort(1).values
    code = idx[:, 0] * 5 + idx[:, 1]
    counts = torch.bincount(code, minlength=25).double()
    observed = counts[counts > 0]
    assert len(observed) == 10
    chi2 = ((observed - R / 10) ** 2 / (R / 10)).sum().item()
    z = NormalDist().inv_cdf(1 - 1e-6)
    assert chi2 < 9 * (1 - 2 / 81 + z * math.sqrt(2 / 81)) ** 3


def test_reused_permutation_gives_fresh_independent_batches():
    """With ``perm`` passed back in, consecutive batches share an example with the
    probability of independent draws: 1 - C(N-b, b)/C(N, b)."""
    gen = torch.Generator().manual_seed(2)
    n, b, R = 20, 3, 40_000
    perm = torch.arange(n).unsqueeze(1).expand(n, R).clone()
    first = mb.sample_batches(R, n, b, gen, perm=perm)
    second = mb.sample_batches(R, n, b, gen, perm=perm)
    shared = (first.unsqueeze(2) == second.unsqueeze(1)).any(2).any(1).double().numpy()
    p = 1 - math.comb(n - b, b) / math.comb(n, b)
    m, se = mean_se(shared)
    assert abs(m - p) <= z_bound(1e-6) * math.sqrt(p * (1 - p) / R)


def test_large_batches_use_the_complement():
    """b > N/2 draws the N - b left out; the mean over b must still be right."""
    prob = tiny_problem(n=9)
    g = mb.per_example_gradients(prob, torch.zeros(2, dtype=torch.float64))
    gen = torch.Generator().manual_seed(3)
    x = mb.minibatch_gradient_samples(g, 8, 5, gen)
    # every batch of 8 of 9 is the full sum minus one example
    candidates = (g.sum(0) - g) / 8
    for row in x:
        assert torch.isclose(candidates, row, rtol=0, atol=1e-14).all(1).any()


@pytest.mark.parametrize("b", [1, 4, 40, 98])
def test_monte_carlo_variance_matches_the_factor(device, b):
    prob = scaled_regression(n=100, scales=(1.0, 3.0), seed=4, device=device)
    g = mb.per_example_gradients(prob, torch.zeros(2, dtype=torch.float64, device=device))
    gen = torch.Generator().manual_seed(5)
    x = mb.minibatch_gradient_samples(g, b, 20_000, gen).cpu().numpy()
    full = g.mean(0).cpu().numpy()
    sigma2 = ((g - g.mean(0)) ** 2).mean(0).cpu().numpy()
    z = z_bound(1e-6, n_tests=4)
    m, m_se = mean_se(x)
    v, v_se = variance_se(x)
    assert np.all(np.abs(v - sigma2 * mb.finite_population_factor(100, b)) <= z * v_se)
    assert np.all(np.abs(m - full) <= z * m_se)


def test_batches_do_not_depend_on_the_device(device):
    g = mb.per_example_gradients(tiny_problem(n=30, device=device),
                                 torch.ones(2, dtype=torch.float64, device=device))
    draws = [mb.minibatch_gradient_samples(g, 7, 50, torch.Generator().manual_seed(8))
             for _ in range(2)]
    cpu = mb.minibatch_gradient_samples(g.cpu(), 7, 50, torch.Generator().manual_seed(8))
    torch.testing.assert_close(draws[0], draws[1], rtol=0, atol=0)
    torch.testing.assert_close(draws[0].cpu(), cpu, rtol=1e-14, atol=1e-14)


def test_loglog_slope_of_an_exact_power_law():
    x = np.array([1.0, 2.0, 4.0, 8.0])
    slope, icpt, se_fit, se_prop = mb.loglog_slope(x, 3.0 / x, 0.01 * 3.0 / x)
    assert abs(slope + 1) < 1e-12 and abs(icpt - math.log(3.0)) < 1e-12 and se_fit < 1e-12
    u = np.log(x)
    w = (u - u.mean()) / ((u - u.mean()) ** 2).sum()
    assert abs(se_prop - 0.01 * math.sqrt((w**2).sum())) < 1e-15


# -------------------------------------------------------------------- SGD's jitter


def test_second_moment_recursion_against_brute_force():
    """P_1 and P_2 from eq-sgd-pt equal the averages over every batch sequence.

    N = 5, b = 2: 10 batches per step, 100 sequences for two steps; sums of O(1)
    terms, rounding below 1e-14.
    """
    prob = tiny_problem(n=5)
    lr, b = 0.3, 2
    theta_star = prob.lstsq_solution()
    batches = [list(c) for c in itertools.combinations(range(5), b)]

    def step(theta, batch):
        return theta - lr * prob.grad(theta, torch.tensor(batch))

    p1 = sum(torch.outer(d, d) for d in (step(theta_star, B) - theta_star for B in batches))
    p2 = sum(
        torch.outer(d, d)
        for d in (step(step(theta_star, B1), B2) - theta_star for B1 in batches for B2 in batches)
    )
    for steps, brute in ((1, p1 / 10), (2, p2 / 100)):
        got = mb.sgd_second_moment(prob, lr, b, steps=steps)
        torch.testing.assert_close(got, brute, rtol=0, atol=1e-14)


def test_stationary_moment_is_the_limit_of_the_recursion():
    prob = tiny_problem(n=30, seed=5)
    h_max = torch.linalg.eigvalsh(prob.hessian).max().item()
    lr = 0.2 / h_max
    p_inf = mb.sgd_second_moment(prob, lr, 3)
    p_t = mb.sgd_second_moment(prob, lr, 3, steps=20_000)
    torch.testing.assert_close(p_t, p_inf, rtol=1e-10, atol=0)


def test_small_lr_limit():
    """tr P_∞ / (η c_b tr(H⁻¹Σ*)/2) → 1 as η → 0, with an O(η) gap."""
    prob = tiny_problem(n=40, seed=6)
    gaps = []
    for lr in (1e-2, 1e-3, 1e-4):
        exact = mb.sgd_second_moment(prob, lr, 4).trace().item()
        gaps.append(abs(exact / mb.small_lr_spread(prob, lr, 4) - 1))
    assert gaps[2] < gaps[1] < gaps[0] and gaps[2] < 1e-2
    assert 5 < gaps[1] / gaps[2] < 20  # first order in η: a tenth of η, about a tenth of the gap


def test_no_stationary_spread_beyond_the_limit():
    prob = tiny_problem(n=30, seed=7)
    limit = mb.mean_square_stability_limit(prob, 1)
    assert limit < 2 / torch.linalg.eigvalsh(prob.hessian).max().item()
    mb.sgd_second_moment(prob, 0.99 * limit, 1)
    with pytest.raises(ValueError, match="no stationary spread"):
        mb.sgd_second_moment(prob, 1.01 * limit, 1)


def test_full_batch_limit_is_gradient_descents():
    prob = tiny_problem(n=30, seed=8)
    limit = mb.mean_square_stability_limit(prob, 30)
    assert limit == 2 / torch.linalg.eigvalsh(prob.hessian).max().item()


def test_jitter_matches_the_exact_second_moment(device):
    """The chapter's SGD loop (rows = chains) against eq-sgd-pt."""
    prob = scaled_regression(n=50, scales=(1.0, 2.0), noise=1.0, seed=9, device=device)
    gen = torch.Generator().manual_seed(10)
    z = z_bound(1e-6, n_tests=2)
    for lr, b, steps in [(0.1, 1, 30), (0.05, 8, 30)]:
        msd, msd_se = jitter_msd(prob, lr, b, steps, 3000, gen)
        exact = mb.sgd_second_moment(prob, lr, b, steps).trace().item()
        assert abs(msd - exact) <= z * msd_se


def test_torch_threads_restores_the_setting():
    before = torch.get_num_threads()
    other = 2 if before == 1 else 1  # a count that differs from the current one
    with torch_threads(other):
        assert torch.get_num_threads() == other
    assert torch.get_num_threads() == before
