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
from adambook.judges.adam import (judge_momentum_smooths_noise,
                                  judge_per_coordinate_steps)
from adambook.stats import variance_se, z_bound

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


def noise_verdict(device="cpu", n=4_000, steps=100, sigma=2.0):
    measured, se = ema_variance(BETAS1, n, steps, 0.3, sigma, 2, device)
    b = np.asarray(BETAS1)
    predicted = sigma**2 * (1 - b) / (1 + b) * (1 - b ** (2 * steps))
    z = z_bound(1e-3, len(b))
    return judge_momentum_smooths_noise(b, measured, se, predicted, sigma, z,
                                        n, steps)


def scale_verdict(device="cpu", d=6, steps=100, decades=6.0, eps=1e-8,
                  lr=1e-2):
    """The chapter's open-loop scale-invariance check, judged."""
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
    return judge_per_coordinate_steps(gap0, rounding0, gap_eps, budget_eps,
                                      rounding_eps, eps, d, steps, decades)


def _wrap_adam(**change):
    """adambook.functional.adam with keyword arguments changed: f(value)."""
    original = F.adam

    def broken(*args, **kwargs):
        for arg, f in change.items():
            kwargs[arg] = f(kwargs.get(arg))
        return original(*args, **kwargs)

    return broken


# ------------------------------------------------------------------ verdicts


def test_momentum_smooths_noise_holds(device):
    assert noise_verdict(device).verdict == "holds"


def test_momentum_mutant_beta1_squared_flips_the_verdict(monkeypatch):
    # the moving average decays with beta1^2 instead of beta1
    monkeypatch.setattr(F, "adam", _wrap_adam(beta1=lambda b: b * b))
    assert noise_verdict().verdict == "does not hold"


def test_momentum_mutant_no_average_flips_the_verdict(monkeypatch):
    # no moving average at all: m_t is the raw gradient
    monkeypatch.setattr(F, "adam", _wrap_adam(beta1=lambda b: 0.0))
    assert noise_verdict().verdict == "does not hold"


def test_per_coordinate_steps_holds_with_its_qualification(device):
    assert scale_verdict(device).verdict == "holds with a qualification"


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
])
def test_a_bad_parameter_is_refused(change, message):
    ns, guards = _chapter_namespace()
    ns.update(change)
    with pytest.raises(ValueError, match=message):
        exec(guards, ns)
