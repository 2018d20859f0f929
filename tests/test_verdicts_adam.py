"""The Adam chapter's verdicts: its experiments, small, judged, then broken.

Each experiment here is a small copy of the chapter's loop (chapters/adam),
built from the same package tools; each mutant breaks what the claim rests
on and must flip the verdict. The guards of the chapter's ``require`` cell
are executed from the notebook itself.
"""

import math
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch

import adambook
from adambook import functional as F
from adambook import moments as M
from adambook.judges.adam import (judge_beta1_tradeoff,
                                  judge_momentum_smooths_noise,
                                  judge_per_coordinate_steps)
from adambook.stats import mean_se, variance_se, z_bound

CHAPTER = Path(__file__).resolve().parents[1] / "chapters" / "adam.ipynb"
U64 = torch.finfo(torch.float64).eps / 2
BETAS1 = [0.5, 0.8, 0.9, 0.95, 0.99]


def ema_variance(betas1, n, steps, mu, sigma, seed, device):
    """The chapter's Monte Carlo: sample Var(exp_avg) of adambook.Adam."""
    params = [torch.zeros(n, dtype=torch.float64, device=device,
                          requires_grad=True) for _ in betas1]
    opt = adambook.Adam([{"params": [p], "betas": (b1, 0.999)}
                         for p, b1 in zip(params, betas1)], lr=0.0)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        for p in params:
            noise = torch.randn(n, generator=gen, dtype=torch.float64)
            p.grad = mu + sigma * noise.to(device)
        opt.step()
    return map(np.array, zip(*(
        variance_se(opt.state[p]["exp_avg"].cpu().numpy()) for p in params)))


def tradeoff_verdict(betas=BETAS1, n=20_000, steps=300, lag_steps=460,
                     n_lag=5_000, mu=0.3, sigma=2.0, jump=4.0, seed=2,
                     ema=None):
    """The chapter's variance-and-lag Monte Carlo (sec-adam-lag), judged.

    ``ema(m, g, beta)`` is one step of the moving average, in place."""
    ema = ema or (lambda m, g, b: m.mul_(b).add_((1 - b) * g))
    b = np.asarray(betas)
    col = torch.tensor(betas, dtype=torch.float64).unsqueeze(1)
    m = torch.zeros(len(betas), n, dtype=torch.float64)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        ema(m, mu + sigma * torch.randn(n, generator=gen,
                                        dtype=torch.float64), col)
    var, var_se = variance_se(m.numpy(), axis=1)
    m = m[:, :n_lag].clone()
    short = torch.zeros_like(m)
    for _ in range(lag_steps):
        ema(m, mu + jump + sigma * torch.randn(
            n_lag, generator=gen, dtype=torch.float64), col)
        short.add_(mu + jump - m)
    lag, lag_se = mean_se(short.numpy() / jump, axis=1)
    lag_pred = (jump + mu * b**steps) / jump * b * (1 - b**lag_steps) / (1 - b)
    pred = (1 - b) / (1 + b) * (1 - b ** (2 * steps))
    z = z_bound(1e-3, 4 * len(b) - 2)
    return judge_beta1_tradeoff(b, var / sigma**2, var_se / sigma**2, pred,
                                lag, lag_se, lag_pred, z, scope="test")


def jitter_verdict(betas=(0.5, 0.9), chains=10_000, steps=800, eta=0.05,
                   margin=0.1, seed=4, weights=lambda b: 1.0):
    """The chapter's iterate-spread experiment (sec-adam-jitter), judged.

    ``weights(beta)``: what the EMA's weights sum to (1 for the true one)."""
    nb, dt = len(betas), torch.float64
    col = torch.tensor(betas, dtype=dt).unsqueeze(1)
    w = torch.tensor([weights(x) for x in betas], dtype=dt).unsqueeze(1)
    th_sgd, th_mom, m = (torch.zeros(k, chains, dtype=dt)
                         for k in (1, nb, nb))
    b1s = (0.0,) + tuple(betas)
    th_a, m_a, v_a = (torch.zeros(1 + nb, chains, dtype=dt)
                      for _ in range(3))
    gen = torch.Generator().manual_seed(seed)
    for t in range(1, steps + 1):
        xi = torch.randn(chains, generator=gen, dtype=dt)
        th_sgd.sub_(eta * (th_sgd + xi))
        m.mul_(col).add_((1 - col) * w * (th_mom + xi))
        th_mom.sub_(eta * m)
        g = th_a + xi
        for k, b1 in enumerate(b1s):  # Adam is linear in m: scale its lr
            F.adam([th_a[k]], [g[k]], [m_a[k]], [v_a[k]], [t],
                   lr=eta * (weights(b1) if b1 else 1.0), beta1=b1,
                   beta2=0.999, eps=1e-8)

    def ratio(a, c):
        a2, c2 = a.numpy() ** 2, c.numpy() ** 2
        r = a2.mean() / c2.mean()
        return r, (a2 - r * c2).std(ddof=1) / c2.mean() / math.sqrt(chains)

    r, se = map(np.array, zip(*(ratio(th_mom[k], th_sgd[0])
                                for k in range(nb))))
    ra, sa = map(np.array, zip(*(ratio(th_a[1 + k], th_a[0])
                                 for k in range(nb))))
    jb = np.asarray(betas)
    # eq-mom-ratio (h = 1); T is past the slowest transient
    theory = (2 - eta) * (1 + jb) / (2 * (1 + jb) - eta * (1 - jb))
    return judge_momentum_smooths_noise(
        jb, r, se, theory, margin, z_bound(1e-3, 4 * nb), adam_ratio=ra,
        adam_se=sa, lemma_dev=0.0, scope="test")


def rotation_steps(angle, kappa=1e6, budget=2000, lr=1e-2, tol=1e-6):
    """Adam's steps to |theta| <= tol for good on the axis-aligned and the
    rotated quadratic (sec-adam-rotated); ``budget`` if never."""
    q = torch.tensor([[math.cos(angle), -math.sin(angle)],
                      [math.sin(angle), math.cos(angle)]],
                     dtype=torch.float64)
    d = torch.diag(torch.tensor([1.0, kappa], dtype=torch.float64))
    hs = torch.stack([d, q @ d @ q.T])
    p = torch.ones(2, 2, dtype=torch.float64)
    m, v = torch.zeros_like(p), torch.zeros_like(p)
    last = torch.zeros(2, dtype=torch.long)
    for t in range(1, budget + 1):
        g = torch.einsum("kij,kj->ki", hs, p)
        F.adam([p], [g], [m], [v], [t], lr=lr, beta1=0.9, beta2=0.999,
               eps=0.0)
        last[p.norm(dim=1) > tol] = t
    return last.tolist()


def scale_verdict(device="cpu", d=6, steps=100, decades=6.0, eps=1e-8,
                  lr=1e-2, angle=math.pi / 6):
    """The chapter's open-loop scale-invariance check and the rotated
    quadratic, judged."""
    gen = torch.Generator().manual_seed(3)
    stream = torch.randn(steps, d, generator=gen, dtype=torch.float64)
    c = 10.0 ** torch.empty(d, dtype=torch.float64).uniform_(
        -decades, decades, generator=gen)
    stream, c = stream.to(device), c.to(device)

    def run(grads, eps, scales=None):
        p, m, v = (torch.zeros(d, dtype=torch.float64, device=device)
                   for _ in range(3))
        path = budget = 0.0
        for t, g in enumerate(grads, start=1):
            before = p.clone()
            F.adam([p], [g], [m], [v], [t], lr=lr, beta1=0.9, beta2=0.999,
                   eps=eps)
            step = (p - before).abs()
            path += step.sum().item()
            if scales is not None:
                v_hat_sqrt = (v / (1 - 0.999**t)).sqrt()
                budget += (step * eps * torch.clamp(1 / scales, min=1.0)
                           / v_hat_sqrt).sum().item()
        return p, path, budget

    out = []
    for e in (0.0, eps):
        p_ref, path, budget = run(stream, e, scales=c)
        p_scaled, _, _ = run(stream * c, e)
        out.append(((p_ref - p_scaled).abs().sum().item(), budget,
                    8 * U64 * path))
    (gap0, _, rounding0), (gap_eps, budget_eps, rounding_eps) = out
    diag, rot = rotation_steps(angle)
    return judge_per_coordinate_steps(
        gap0, rounding0, gap_eps, budget_eps, rounding_eps, eps,
        diag_steps=diag, rot_steps=None if rot == 2000 else rot,
        budget=2000, kappa=1e6, scope="test")


def _wrap_adam(**change):
    """adambook.functional.adam with keyword arguments changed: f(value)."""
    original = F.adam

    def broken(*args, **kwargs):
        for arg, f in change.items():
            kwargs[arg] = f(kwargs.get(arg))
        return original(*args, **kwargs)

    return broken


# ------------------------------------------------------------------ verdicts


def test_momentum_smooths_noise_does_not_hold():
    assert jitter_verdict().verdict == "does not hold"


def test_momentum_mutant_weights_sum_below_one_flips_the_verdict():
    # an average whose weights sum to 1 - beta: the effective learning rate
    # falls, and so does the spread ("holds")
    v = jitter_verdict(weights=lambda b: 1 - b)
    assert v.verdict == "holds"


def test_beta1_tradeoff_holds():
    assert tradeoff_verdict().verdict == "holds"


def test_tradeoff_mutant_beta1_squared_flips_the_verdict():
    # the moving average decays with beta1^2: still a trade-off, but off
    # both closed forms
    v = tradeoff_verdict(ema=lambda m, g, b: m.mul_(b * b).add_(
        (1 - b * b) * g))
    assert v.verdict == "holds with a qualification"


def test_tradeoff_mutant_no_average_flips_the_verdict():
    # no moving average at all: m_t is the raw gradient, no trade
    v = tradeoff_verdict(ema=lambda m, g, b: m.copy_(g.expand_as(m)))
    assert v.verdict == "does not hold"


def test_tradeoff_mutant_swapped_weights_flips_the_verdict():
    # m = (1 - b) m + b g: a larger beta1 now smooths less
    v = tradeoff_verdict(ema=lambda m, g, b: m.mul_(1 - b).add_(b * g))
    assert v.verdict == "does not hold"


def test_per_coordinate_steps_holds_with_its_qualification(device):
    assert scale_verdict(device).verdict == "holds with a qualification"


def test_per_coordinate_without_rotation_holds():
    # the qualification is the rotation: at angle 0 the two runs coincide
    assert scale_verdict(angle=0.0).verdict == "holds"


def test_per_coordinate_mutant_eps_leak_flips_the_verdict(monkeypatch):
    # epsilon leaks into every step, so the eps = 0 run is not invariant
    monkeypatch.setattr(F, "adam", _wrap_adam(eps=lambda e: e + 1e-6))
    assert scale_verdict().verdict == "does not hold"


def test_per_coordinate_mutant_one_global_step_size_flips_the_verdict(
        monkeypatch):
    # one step size for all coordinates: sqrt of v averaged over coordinates
    def broken(params, grads, exp_avgs, exp_avg_sqs, steps, *, lr, beta1,
               beta2, eps, **_):
        for p, g, m, v, t in zip(params, grads, exp_avgs, exp_avg_sqs,
                                 steps):
            m.lerp_(g, 1 - beta1)
            v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
            denom = (v.mean() / (1 - beta2**t)).sqrt() + eps
            p.sub_(lr * m / (1 - beta1**t) / denom)

    monkeypatch.setattr(F, "adam", broken)
    assert scale_verdict().verdict == "does not hold"


# ------------------------------------------- replaces a test of test_moments


def test_adam_exp_avg_variance_is_moments_ema_variance():
    """moments.ema_variance is the variance of adambook.Adam's exp_avg, and
    the chapter's eq-ema-var is that closed form."""
    betas, steps, sigma, n = [0.5, 0.9, 0.99], 30, 2.0, 4_000
    measured, se = ema_variance(betas, n, steps, 0.3, sigma, 2, "cpu")
    b = np.asarray(betas)
    closed = M.ema_variance(steps, b, sigma**2)
    chapter = sigma**2 * (1 - b) / (1 + b) * (1 - b ** (2 * steps))
    np.testing.assert_allclose(chapter, closed, rtol=1e-12)
    assert np.all(np.abs(measured - closed) <= z_bound(1e-3, len(b)) * se)


# ------------------------------------------------- the chapter's guards


def _chapter_namespace():
    """Run the chapter's imports and parameters cells; return the namespace
    and the source of the require cell that follows the parameters."""
    cells = [c for c in nbformat.read(CHAPTER, 4).cells
             if c.cell_type == "code"]
    i = next(k for k, c in enumerate(cells)
             if "parameters" in c.metadata.get("tags", []))
    ns = {}
    for cell in cells[:i + 1]:
        exec(cell.source, ns)
    return ns, cells[i + 1].source


def test_the_chapter_parameters_pass_the_guards():
    ns, guards = _chapter_namespace()
    exec(guards, ns)
    assert math.isfinite(ns["z"])


@pytest.mark.parametrize("change, message", [
    ({"DTYPE": torch.float32}, "float64"),
    ({"BETAS1": [0.5, 1.0]}, r"lie in \(0, 1\)"),
    ({"SIGMA": 0.0}, "SIGMA > 0"),
    ({"N_STREAMS": 1_000}, "normal approximation"),
    ({"BETAS1": [0.01, 0.9]}, "too few to reject"),
    ({"T_NOISE": 100}, "stationary regime"),
    ({"D_SCALE": 0}, "D_SCALE >= 1"),
    ({"DECADES": 0.0}, "DECADES must be positive"),
    ({"DECADES": 200.0}, "DECADES must be positive"),
    ({"EPS": 0.0}, "EPS is the epsilon"),
    ({"T_LAG": 100}, "cuts the lag"),
    ({"N_LAG": 500}, "1000 <= N_LAG"),
    ({"N_LAG": 2_000}, "cannot resolve"),
    ({"JITTER_BETAS": (0.5, 1.0)}, "JITTER_BETAS"),
    ({"JITTER_ETA": 3.0}, "stable SGD"),
    ({"JITTER_CHAINS": 500}, "JITTER_CHAINS >= 1000"),
    ({"JITTER_CHAINS": 2_000}, "equivalence test has power"),
    ({"JITTER_ETA": 0.5}, "equivalence test has power"),
    ({"JITTER_T": 200}, "too short for the stationary spread"),
    ({"KAPPAS": (1.0, 10.0)}, "reaching at least 1e3"),
    ({"ANGLE": math.pi / 2}, "axis-aligned"),
    ({"SNRS": (0.1, 1.0, 10.0)}, "SNRS must run from 0"),
])
def test_a_bad_parameter_is_refused(change, message):
    ns, guards = _chapter_namespace()
    ns.update(change)
    with pytest.raises(ValueError, match=message):
        exec(guards, ns)
