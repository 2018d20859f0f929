"""adambook.moments: closed forms against brute force, the Monte Carlo, step sizes, ε forms.

Tolerances: closed forms against explicit sums are float rounding (a few units of
2^-52 per term, 1e-12 relative); Monte Carlo comparisons use a Šidák z-bound at a
family-wise alpha of 1e-3; steps compared with adambook's optimizer are rounding of
the handful of operations in one step (8 units of 2^-52, relative).
"""

import math

import numpy as np
import pytest
import torch

import adambook
from adambook import functional as F
from adambook import moments as M
from adambook.stats import z_bound

U64 = torch.finfo(torch.float64).eps
BETAS = [0.0, 0.5, 0.9, 0.999]


def explicit_weights(t, beta):
    """The weights (1-β)β^{t-i}, i = 1..t, of a zero-started EMA, summed term by term."""
    return np.array([(1 - beta) * beta ** (t - i) for i in range(1, t + 1)])


@pytest.mark.parametrize("beta", BETAS)
@pytest.mark.parametrize("t", [1, 2, 7, 50, 400])
def test_geometric_sums(beta, t):
    w = explicit_weights(t, beta)
    assert M.ema_mass(t, beta) == pytest.approx(w.sum(), rel=1e-12)
    assert M.ema_mean(t, beta, 0.7) == pytest.approx(0.7 * w.sum(), rel=1e-12)
    assert M.ema_variance(t, beta, 2.5) == pytest.approx(2.5 * (w**2).sum(), rel=1e-12)
    assert M.corrected_variance(t, beta, 2.5) == pytest.approx(
        2.5 * (w**2).sum() / w.sum() ** 2, rel=1e-12
    )


def test_corrected_variance_starts_at_the_gradient_variance():
    assert M.corrected_variance(1, 0.9, 3.0) == pytest.approx(3.0, rel=1e-14)


def test_gaussian_square_variance_by_quadrature():
    # Gauss–Hermite quadrature with 10 nodes is exact for polynomials up to degree 19.
    x, w = np.polynomial.hermite_e.hermegauss(10)
    w = w / w.sum()
    mu, sigma = 0.3, 2.0
    g2 = (mu + sigma * x) ** 2
    exact = (w * g2**2).sum() - (w * g2).sum() ** 2
    assert M.gaussian_square_variance(mu, sigma) == pytest.approx(exact, rel=1e-12)


def test_ema_moments_recursion_matches_closed_forms():
    t = np.arange(1, 301)
    mean, var = M.ema_moments(np.full(300, 0.4), np.full(300, 1.7), 0.95)
    np.testing.assert_allclose(mean, M.ema_mean(t, 0.95, 0.4), rtol=1e-12)
    np.testing.assert_allclose(var, M.ema_variance(t, 0.95, 1.7), rtol=1e-12)


def test_zeta_is_zero_when_stationary_and_matches_its_definition_otherwise():
    assert np.all(M.zeta(np.full(100, 3.0), 0.999) == pytest.approx(0.0, abs=1e-13))
    x = 1.0 + np.sin(np.arange(1, 61) / 7.0)
    beta = 0.9
    for t in (1, 10, 60):
        w = explicit_weights(t, beta)
        direct = (w * (x[:t] - x[t - 1])).sum()  # (1-β)Σ β^{t-i}(E[x_i] − E[x_t])
        assert M.zeta(x, beta)[t - 1] == pytest.approx(direct, rel=1e-11, abs=1e-14)


def test_simulate_moments_agrees_with_closed_forms(device):
    pairs, n, steps, mu, sigma = ((0.9, 0.999), (0.5, 0.9)), 20_000, 40, -0.5, 1.5
    runs = M.simulate_moments(pairs, n, steps, mu=mu, sigma=sigma, eps=1e-8,
                              seed=3, device=device)
    z = z_bound(1e-3, 4 * len(pairs) * steps)
    for r in runs:
        t, b1, b2 = r["t"], r["beta1"], r["beta2"]
        s2 = mu**2 + sigma**2
        checks = [
            (r["mean_m"], M.ema_mean(t, b1, mu), r["se_m"]),
            (r["mean_v"], M.ema_mean(t, b2, s2), r["se_v"]),
            (r["var_m"], M.ema_variance(t, b1, sigma**2), r["se_var_m"]),
            (r["var_v"], M.ema_variance(t, b2, M.gaussian_square_variance(mu, sigma)),
             r["se_var_v"]),
        ]
        for measured, predicted, se in checks:
            assert np.all(np.abs(measured - predicted) <= z * se)
        # m̂ is m divided by a constant: the same test, scaled.
        np.testing.assert_allclose(r["mean_m_hat"] * M.ema_mass(t, b1), r["mean_m"], rtol=1e-12)
        assert np.all(r["step_rel_err"] <= M.step_tolerance(t, b1, b2))


def test_simulate_moments_rejects_the_prediction_without_the_factor():
    (r,) = M.simulate_moments(((0.9, 0.999),), 20_000, 5, mu=0.3, sigma=2.0,
                              eps=1e-8, seed=4, device="cpu")
    z = z_bound(1e-3, 10)
    assert np.all(np.abs(r["mean_m"] - 0.3) > z * r["se_m"])
    assert np.all(np.abs(r["mean_v"] - (0.3**2 + 4.0)) > z * r["se_v"])


def test_simulate_moments_follows_a_drifting_stream():
    steps = 60
    mu = 0.3 * 2.0 ** (-np.arange(1, steps + 1) / 20)
    sigma = 2.0 * 2.0 ** (-np.arange(1, steps + 1) / 20)
    (r,) = M.simulate_moments(((0.9, 0.99),), 20_000, steps, mu=mu,
                              sigma=sigma, eps=1e-8, seed=5, device="cpu")
    z = z_bound(1e-3, 2 * steps)
    s = mu**2 + sigma**2
    t = r["t"]
    pred_m_hat = M.ema_moments(mu, sigma**2, 0.9)[0] / M.ema_mass(t, 0.9)
    pred_v_hat = (M.zeta(s, 0.99) + M.ema_mass(t, 0.99) * s) / M.ema_mass(t, 0.99)
    assert np.all(np.abs(r["mean_m_hat"] - pred_m_hat) <= z * r["se_m_hat"])
    assert np.all(np.abs(r["mean_v_hat"] - pred_v_hat) <= z * r["se_v_hat"])


@pytest.mark.parametrize("bias_correction", [True, False])
@pytest.mark.parametrize("eps", [0.0, 1e-8])
def test_first_step_matches_adambook_adam(device, bias_correction, eps):
    g = torch.tensor([3e-7, -1e-4, 0.2, -5.0, 4e3], dtype=torch.float64, device=device)
    p = torch.nn.Parameter(torch.zeros_like(g))
    opt = adambook.Adam([p], lr=1e-3, eps=eps, bias_correction=bias_correction)
    p.grad = g.clone()
    opt.step()
    expected = M.first_step(g.cpu().numpy(), lr=1e-3, beta1=0.9, beta2=0.999, eps=eps,
                            bias_correction=bias_correction)
    np.testing.assert_allclose(p.detach().cpu().numpy(), expected, rtol=8 * U64)


def test_uncorrected_first_step_is_the_ratio_of_the_corrections():
    assert M.uncorrected_step_ratio(1, 0.9, 0.999) == pytest.approx(0.1 / math.sqrt(1e-3))
    assert M.first_step(1.0, lr=1.0, beta1=0.9, beta2=0.999, eps=0.0,
                        bias_correction=False) == pytest.approx(-0.1 / math.sqrt(1e-3))


def test_uncorrected_step_ratio_for_a_constant_gradient():
    """Uncorrected over corrected Adam, ε = 0, constant gradient: (1-β1^t)/√(1-β2^t)."""
    g = torch.full((1,), 0.37, dtype=torch.float64)
    steps = {}
    for bc in (True, False):
        p = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
        opt = adambook.Adam([p], lr=1.0, betas=(0.9, 0.9999), eps=0.0, bias_correction=bc)
        out = []
        for _ in range(60):
            with torch.no_grad():
                p.zero_()  # each step starts from 0, so -θ is the step itself
            p.grad = g.clone()
            opt.step()
            out.append(-p.item())
        steps[bc] = np.array(out)
    # Rounding: ~6 operations in the step, and 1 - β^t, which `1 - beta**t` forms with a
    # relative error up to U β^t/(1-β^t) (M.step_tolerance).
    tol = M.step_tolerance(np.arange(1, 61), 0.9, 0.9999)
    np.testing.assert_array_less(np.abs(steps[True] - 1), tol)
    np.testing.assert_array_less(
        np.abs(steps[False] / M.uncorrected_step_ratio(np.arange(1, 61), 0.9, 0.9999) - 1), tol
    )


@pytest.mark.parametrize("bias_correction", [True, False])
def test_step_bound_is_attained_and_never_exceeded(bias_correction):
    b1, b2, T = 0.9, 0.999, 25
    gamma_g = b1 / b2  # g_{t-k} ∝ (β1/β2)^k attains Cauchy–Schwarz at step T
    worst = [(1 / gamma_g) ** i for i in range(1, T + 1)]
    gen = torch.Generator().manual_seed(0)
    randoms = [torch.randn(T, generator=gen, dtype=torch.float64).tolist() for _ in range(20)]
    streams = [worst] + randoms
    for k, stream in enumerate(streams):
        p, m, v = (torch.zeros(1, dtype=torch.float64) for _ in range(3))
        for t, gt in enumerate(stream, start=1):
            p.zero_()
            F.adam([p], [torch.tensor([gt], dtype=torch.float64)], [m], [v], [t], lr=1.0,
                   beta1=b1, beta2=b2, eps=0.0, bias_correction=bias_correction)
            bound = M.step_bound(t, b1, b2, bias_correction)
            # rounding of the step, including the package's 1 - beta**t (M.step_tolerance)
            assert abs(p.item()) <= bound * (1 + M.step_tolerance(t, b1, b2))
        if k == 0:  # the worst-case stream attains the bound at its last step
            assert abs(p.item()) == pytest.approx(float(bound), rel=1e-12)


def test_step_bound_needs_beta1_squared_below_beta2():
    with pytest.raises(ValueError, match="beta1\\*\\*2 < beta2"):
        M.step_bound(1, 0.99, 0.95)


def test_eps_hat_form_equals_algorithm_1_when_eps_hat_is_scaled(device):
    gen = torch.Generator().manual_seed(1)
    grads = (torch.randn(80, 6, generator=gen, dtype=torch.float64) * 1e-7).to(device)
    states = {k: [torch.zeros(6, dtype=torch.float64, device=device) for _ in range(3)]
              for k in ("alg1", "hat", "hat0", "alg0")}
    for t, g in enumerate(grads, start=1):
        for k, (p, m, v) in states.items():
            p.zero_()
            if k.startswith("alg"):
                F.adam([p], [g], [m], [v], [t], lr=0.1, beta1=0.9, beta2=0.999,
                       eps=1e-8 if k == "alg1" else 0.0)
            else:
                e = 1e-8 * math.sqrt(1 - 0.999**t) if k == "hat" else 0.0
                M.adam_eps_hat([p], [g], [m], [v], [t], lr=0.1, beta1=0.9, beta2=0.999,
                               eps_hat=e)
        torch.testing.assert_close(states["hat"][0], states["alg1"][0], rtol=8 * U64, atol=0)
        torch.testing.assert_close(states["hat0"][0], states["alg0"][0], rtol=8 * U64, atol=0)


def test_effective_eps():
    assert M.effective_eps(1, 0.999, 1e-8) == pytest.approx(1e-8 / math.sqrt(1e-3))
    assert M.effective_eps(10**6, 0.999, 1e-8) == pytest.approx(1e-8, rel=1e-15)


def test_simulate_moments_draws_the_same_numbers_on_any_device(device):
    """The streams come from a CPU generator: the device only does the work."""
    kw = dict(mu=0.3, sigma=2.0, eps=1e-8, seed=9)
    (a,) = M.simulate_moments(((0.9, 0.999),), 500, 3, device="cpu", **kw)
    (b,) = M.simulate_moments(((0.9, 0.999),), 500, 3, device=device, **kw)
    np.testing.assert_allclose(b["mean_m"], a["mean_m"], rtol=1e-12)
