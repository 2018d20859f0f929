"""Checks of the chapter "Adam: momentum plus per-coordinate step sizes" (chapters/adam)."""

from __future__ import annotations

import math

import numpy as np
import torch

from .. import functional as F
from ..claims import ClaimResult, claim_check
from ..optim import Adam
from ..stats import variance_se, z_bound
from ..utils import torch_threads

U64 = torch.finfo(torch.float64).eps / 2  # unit roundoff u = 2^-53 of float64


def ema_variance_experiment(betas1, n_streams, steps, mu=0.3, sigma=2.0, seed=2, device="cpu"):
    r"""Monte Carlo of :math:`\operatorname{Var}(m_T)` for i.i.d. gradients, by adambook.Adam.

    Each parameter group has its own :math:`\beta_1`; each parameter is a vector of
    ``n_streams`` independent streams with gradients :math:`\mu + \sigma\xi`. With a
    learning rate of zero the optimizer only accumulates its state, and the sample
    variance of ``exp_avg`` across streams estimates the variance of :math:`m_T`.

    Returns a dict of numpy arrays: ``betas``, ``measured``, ``se`` (standard error of
    each sample variance) and ``predicted``
    :math:`\sigma^2\frac{1-\beta_1}{1+\beta_1}(1-\beta_1^{2T})`.
    """
    params = [
        torch.zeros(n_streams, dtype=torch.float64, device=device, requires_grad=True)
        for _ in betas1
    ]
    opt = Adam([{"params": [p], "betas": (b, 0.999)} for p, b in zip(params, betas1)], lr=0.0)
    gen = torch.Generator(device=device).manual_seed(seed)
    with torch_threads(1):
        for _ in range(steps):
            for p in params:
                noise = torch.randn(n_streams, generator=gen, dtype=torch.float64, device=device)
                p.grad = mu + sigma * noise
            opt.step()
    measured, se = zip(*(variance_se(opt.state[p]["exp_avg"].cpu().numpy()) for p in params))
    b = np.asarray(betas1, dtype=float)
    return {
        "betas": b,
        "measured": np.asarray(measured),
        "se": np.asarray(se),
        "predicted": sigma**2 * (1 - b) / (1 + b) * (1 - b ** (2 * steps)),
        "sigma": sigma,
        "steps": steps,
        "n_streams": n_streams,
    }


@claim_check("momentum-smooths-noise")
def momentum_smooths_noise(fast: bool = False) -> ClaimResult:
    """Var(m_t) of i.i.d. gradients is (1-β1)/(1+β1)·σ², within a Šidák z-bound."""
    betas1 = [0.5, 0.8, 0.9, 0.95, 0.99]
    r = ema_variance_experiment(betas1, n_streams=20_000 if fast else 50_000, steps=300)
    z = z_bound(alpha=1e-3, n_tests=len(betas1))
    matches = bool(np.all(np.abs(r["measured"] - r["predicted"]) <= z * r["se"]))
    reduces = bool(np.all(r["measured"] < r["sigma"] ** 2))
    # Power: the same bound rejects the plausible wrong formula (1-β)σ².
    rejects_wrong = bool(np.all(np.abs(r["measured"] - r["sigma"] ** 2 * (1 - r["betas"])) > z * r["se"]))
    i = betas1.index(0.9)
    r.update(z=z, rejects_wrong=rejects_wrong)
    return ClaimResult(
        key="momentum-smooths-noise",
        claim="Averaging past gradients with weight β1 damps minibatch noise.",
        verdict="holds" if matches and reduces and rejects_wrong else "does not hold",
        proved="For i.i.d. gradients of variance σ², Var(m_t) = σ²(1-β1)/(1+β1)(1-β1^{2t}): "
        "a 19-fold reduction at β1 = 0.9, bought with a lag of about 1/(1-β1) steps.",
        section="sec-adam-noise",
        measured=f"Var(m_T)/σ² = {r['measured'][i] / r['sigma'] ** 2:.4f} at β1 = 0.9 "
        f"(theory {r['predicted'][i] / r['sigma'] ** 2:.4f})",
        details=r,
    )


def scale_invariance_experiment(d=6, steps=500, lr=1e-2, seed=3):
    r"""Adam on a fixed gradient stream and on the stream with coordinates rescaled.

    The gradients do not depend on :math:`\theta`, so the two runs differ only by
    the sum of their per-step differences. Returns the total absolute difference
    for :math:`\epsilon = 0` and :math:`10^{-8}`, the rounding bound :math:`8u` times
    the path length, and the :math:`\epsilon` budget
    :math:`\sum_t\sum_i |\Delta\theta_{t,i}|\,\epsilon\max(1, 1/c_i)/\sqrt{\hat v_{t,i}}`
    of the chapter's scaling identity.
    """
    gen = torch.Generator().manual_seed(seed)
    stream = torch.randn(steps, d, generator=gen, dtype=torch.float64)
    c = 10.0 ** torch.empty(d, dtype=torch.float64).uniform_(-6, 6, generator=gen)

    def run(grads, eps, scales=None):
        p, m, v = (torch.zeros(d, dtype=torch.float64) for _ in range(3))
        path, budget = 0.0, 0.0
        for t, g in enumerate(grads, start=1):
            before = p.clone()
            F.adam([p], [g], [m], [v], [t], lr=lr, beta1=0.9, beta2=0.999, eps=eps)
            step = (p - before).abs()
            path += step.sum().item()
            if scales is not None:
                v_hat_sqrt = (v / (1 - 0.999**t)).sqrt()
                budget += (step * eps * torch.clamp(1 / scales, min=1.0) / v_hat_sqrt).sum().item()
        return p, path, budget

    out = {"c": c}
    for eps in (0.0, 1e-8):
        p_ref, path, budget = run(stream, eps, scales=c)
        p_scaled, _, _ = run(stream * c, eps)
        out[eps] = {
            "gap": (p_ref - p_scaled).abs().sum().item(),
            "rounding": 8 * U64 * path,
            "budget": budget,
        }
    return out


@claim_check("per-coordinate-steps")
def per_coordinate_steps(fast: bool = False) -> ClaimResult:
    """Adam's step ignores a coordinate's gradient scale, up to ε."""
    r = scale_invariance_experiment()
    exact = r[0.0]["gap"] <= r[0.0]["rounding"]
    within_eps = r[1e-8]["gap"] <= r[1e-8]["budget"] + r[1e-8]["rounding"]
    eps_matters = r[1e-8]["gap"] > r[1e-8]["rounding"]
    if exact and within_eps:
        verdict = "holds with a qualification" if eps_matters else "holds"
    else:
        verdict = "does not hold"
    return ClaimResult(
        key="per-coordinate-steps",
        claim="Dividing by the root of the squared-gradient average gives every coordinate "
        "its own step size, small where gradients are large.",
        verdict=verdict,
        proved="Multiplying coordinate i's gradients by c_i > 0 changes Adam's step only "
        "through ε/c_i; with ε = 0 the trajectory is unchanged to rounding. The "
        "qualification: where √v̂ is not large against ε/c_i, ε sets the step.",
        section="sec-adam-scale",
        measured=f"gap {r[0.0]['gap']:.1e} with ε = 0 (rounding bound {r[0.0]['rounding']:.1e}); "
        f"{r[1e-8]['gap']:.1e} with ε = 1e-8 over 12 decades of c",
        details=r,
    )
