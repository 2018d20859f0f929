r"""Checks of the chapter "Bias correction" (chapters/bias_correction).

Two claims of the post:

* ``ema-bias``: started at zero, :math:`\mathbb E[m_t] = (1-\beta_1^t)\mu`, and the
  same holds for :math:`v_t` with :math:`\beta_2` and :math:`\mathbb E[g^2]`;
* ``bias-correction``: dividing by :math:`1-\beta^t` removes that bias.

Both are measured on the same Monte Carlo of many independent gradient streams
(:func:`adambook.moments.simulate_moments`), which is run once per process and size
and shared by the two checks. The chapter's other measurements (the first step, a
small training problem, the two conventions for :math:`\epsilon`) are here too, so
that the chapter only prints and plots them.
"""

from __future__ import annotations

import copy
import math
from functools import lru_cache

import numpy as np
import torch

from .. import functional as F
from .. import moments as M
from ..claims import ClaimResult, claim_check
from ..optim import Adam
from ..stats import z_bound
from ..utils import torch_threads

U64 = torch.finfo(torch.float64).eps  # 2^-52: one unit in the last place of 1.0

#: Gradients of the i.i.d. streams: N(MU, SIGMA²), as in the Adam chapter's experiment.
MU, SIGMA = 0.3, 2.0
#: The (β1, β2) pairs tested: the defaults, the pair common in language-model
#: training, and a slow pair whose bias lasts for thousands of steps.
PAIRS = ((0.9, 0.999), (0.9, 0.95), (0.99, 0.9999))
#: Family-wise false-alarm rate of each check's Šidák-corrected z-bound.
ALPHA = 1e-3
#: The drifting stream's mean and scale halve every DRIFT_HALF_LIFE steps.
DRIFT_HALF_LIFE = 100


def sizes(fast: bool) -> tuple[int, int]:
    """``(n_streams, T)``: 10^5 streams for every t = 1..200, or a fast 2·10^4 for 100."""
    return (20_000, 100) if fast else (100_000, 200)


@lru_cache(maxsize=8)
def _simulate(pairs, n_streams, steps, mu, sigma, seed, device):
    with torch_threads(1):
        return M.simulate_moments(
            pairs, n_streams, steps, mu=np.asarray(mu), sigma=np.asarray(sigma),
            seed=seed, device=device,
        )


def drift_schedule(steps: int, half_life: float = DRIFT_HALF_LIFE):
    r"""Mean and scale of the drifting stream.

    :math:`\mu_t = \mu\,2^{-t/H}` and :math:`\sigma_t = \sigma\,2^{-t/H}` with
    :math:`H` = ``half_life``.
    """
    decay = 2.0 ** (-np.arange(1, steps + 1) / half_life)
    return MU * decay, SIGMA * decay


def step_tolerance(t, beta1, beta2, base=10):
    r"""Rounding bound on the relative gap between the package's step and ours.

    Both compute :math:`\hat m_t/(\sqrt{\hat v_t}+\epsilon)` with about five roundings
    each. The package forms :math:`1-\beta^t` as ``1 - beta**t``: ``pow`` is within one
    unit in the last place of :math:`\beta^t`, and the subtraction magnifies that
    error by :math:`\beta^t/(1-\beta^t)` (we use the accurate ``expm1`` form). Hence
    :math:`U(b + 2\beta_1^t/(1-\beta_1^t) + 2\beta_2^t/(1-\beta_2^t))` with
    :math:`U = 2^{-52}` and ``base`` :math:`b = 10` (more for longer chains of operations).
    """
    t = np.asarray(t, dtype=float)
    amp = lambda b: b**t / M.ema_mass(t, b)  # noqa: E731
    return U64 * (base + 2 * amp(beta1) + 2 * amp(beta2))


def _z(measured, predicted, se):
    return (np.asarray(measured) - predicted) / np.asarray(se)


def iid_experiment(fast: bool = False, device: str = "cpu") -> dict:
    r"""The Monte Carlo of i.i.d. streams, scored against the closed forms.

    For every pair in :data:`PAIRS` and every :math:`t`, the z-scores
    (measured − predicted)/SE of :math:`\mathbb E[m_t]`, :math:`\mathbb E[v_t]`,
    :math:`\operatorname{Var}(m_t)`, :math:`\operatorname{Var}(v_t)`,
    :math:`\mathbb E[\hat m_t]` and :math:`\mathbb E[\hat v_t]`, and of the wrong
    prediction without the factor :math:`1-\beta^t`.
    """
    n, steps = sizes(fast)
    runs = copy.deepcopy(_simulate(PAIRS, n, steps, MU, SIGMA, 0, str(device)))
    s2 = MU**2 + SIGMA**2  # E[g²]
    var_g2 = M.gaussian_square_variance(MU, SIGMA)
    for r in runs:
        t, b1, b2 = r["t"], r["beta1"], r["beta2"]
        r["pred_m"] = M.ema_mean(t, b1, MU)
        r["pred_v"] = M.ema_mean(t, b2, s2)
        r["pred_var_m"] = M.ema_variance(t, b1, SIGMA**2)
        r["pred_var_v"] = M.ema_variance(t, b2, var_g2)
        r["z_m"] = _z(r["mean_m"], r["pred_m"], r["se_m"])
        r["z_v"] = _z(r["mean_v"], r["pred_v"], r["se_v"])
        r["z_var_m"] = _z(r["var_m"], r["pred_var_m"], r["se_var_m"])
        r["z_var_v"] = _z(r["var_v"], r["pred_var_v"], r["se_var_v"])
        r["z_m_hat"] = _z(r["mean_m_hat"], MU, r["se_m_hat"])
        r["z_v_hat"] = _z(r["mean_v_hat"], s2, r["se_v_hat"])
        # The falsifiability check: the same data against E[m_t] = μ, E[v_t] = E[g²].
        r["z_m_nofactor"] = _z(r["mean_m"], MU, r["se_m"])
        r["z_v_nofactor"] = _z(r["mean_v"], s2, r["se_v"])
        r["step_tol"] = step_tolerance(t, b1, b2)
    return {"runs": runs, "n_streams": n, "steps": steps, "mu": MU, "sigma": SIGMA,
            "second_moment": s2}


def drift_experiment(fast: bool = False, device: str = "cpu") -> dict:
    r"""The Monte Carlo of a drifting stream at the default betas, against :math:`\zeta`.

    Predictions come from :func:`adambook.moments.ema_moments`; the stationary
    predictions :math:`\mu_t` and :math:`\mathbb E[g_t^2]` are what the correction
    would deliver if it removed all bias.
    """
    n, steps = sizes(fast)
    mu_t, sigma_t = drift_schedule(steps)
    (r,) = copy.deepcopy(
        _simulate(((0.9, 0.999),), n, steps, tuple(mu_t), tuple(sigma_t), 1, str(device))
    )
    t, b1, b2 = r["t"], r["beta1"], r["beta2"]
    s_t = mu_t**2 + sigma_t**2
    r["second_moment"] = s_t
    r["pred_m_hat"] = M.ema_moments(mu_t, sigma_t**2, b1)[0] / M.ema_mass(t, b1)
    r["pred_v_hat"] = M.ema_moments(s_t, 0.0, b2)[0] / M.ema_mass(t, b2)
    r["zeta_m"], r["zeta_v"] = M.zeta(mu_t, b1), M.zeta(s_t, b2)
    r["rel_bias_m_hat"] = r["zeta_m"] / (M.ema_mass(t, b1) * mu_t)  # ζ/((1−β^t) E[x_t])
    r["rel_bias_v_hat"] = r["zeta_v"] / (M.ema_mass(t, b2) * s_t)
    r["z_m_hat"] = _z(r["mean_m_hat"], r["pred_m_hat"], r["se_m_hat"])
    r["z_v_hat"] = _z(r["mean_v_hat"], r["pred_v_hat"], r["se_v_hat"])
    r["z_m_hat_stationary"] = _z(r["mean_m_hat"], mu_t, r["se_m_hat"])
    r["z_v_hat_stationary"] = _z(r["mean_v_hat"], s_t, r["se_v_hat"])
    r["step_tol"] = step_tolerance(t, b1, b2)
    r["half_life"] = DRIFT_HALF_LIFE
    return r


def _max_abs(runs, key):
    return max(float(np.max(np.abs(r[key]))) for r in runs)


@claim_check("ema-bias")
def ema_bias(fast: bool = False) -> ClaimResult:
    """E[m_t] = (1-β1^t)μ and E[v_t] = (1-β2^t)E[g²] at every t, within a Šidák z-bound."""
    d = iid_experiment(fast)
    runs = d["runs"]
    keys = ("z_m", "z_v", "z_var_m", "z_var_v")
    n_tests = len(runs) * d["steps"] * len(keys)
    z = z_bound(ALPHA, n_tests)
    worst = max(_max_abs(runs, k) for k in keys)
    matches = worst <= z
    # Power: the prediction without 1 − β^t must be rejected, for m and for v, in every pair.
    rejected = {
        (r["beta1"], r["beta2"]): (
            int(np.sum(np.abs(r["z_m_nofactor"]) > z)),
            int(np.sum(np.abs(r["z_v_nofactor"]) > z)),
        )
        for r in runs
    }
    power = all(a > 0 and b > 0 for a, b in rejected.values())
    d.update(z=z, n_tests=n_tests, worst=worst, rejected=rejected, alpha=ALPHA)
    r0 = runs[0]
    return ClaimResult(
        key="ema-bias",
        claim="Started at zero, the moving averages are biased toward zero: "
        "E[m_t] = (1-β1^t)μ, and likewise E[v_t] = (1-β2^t)E[g²].",
        verdict="holds" if matches and power else "does not hold",
        proved="For gradients of constant mean μ and second moment E[g²], "
        "E[m_t] = (1-β1^t)μ and E[v_t] = (1-β2^t)E[g²] exactly; for independent "
        "gradients of variance σ², Var(m_t) = σ²(1-β1)/(1+β1)(1-β1^{2t}).",
        section="sec-bias-monte-carlo",
        measured=f"largest |z| {worst:.2f} over {n_tests} tests (bound {z:.2f}); "
        f"E[m_1]/μ = {r0['mean_m'][0] / MU:.3f} ± {r0['se_m'][0] / MU:.3f} "
        f"at β1 = {r0['beta1']}",
        details=d,
    )


@claim_check("bias-correction")
def bias_correction(fast: bool = False) -> ClaimResult:
    """m̂_t, v̂_t unbiased at every t for i.i.d. streams; a measured ζ residual under drift."""
    d = iid_experiment(fast)
    dr = drift_experiment(fast)
    runs = d["runs"]
    n_tests = 2 * len(runs) * d["steps"] + 2 * dr["t"].size
    z = z_bound(ALPHA, n_tests)
    worst_iid = max(_max_abs(runs, "z_m_hat"), _max_abs(runs, "z_v_hat"))
    worst_drift = max(_max_abs([dr], "z_m_hat"), _max_abs([dr], "z_v_hat"))
    steps_ok = all(np.all(r["step_rel_err"] <= r["step_tol"]) for r in runs + [dr])
    # The qualification: under drift the stationary target is missed by more than z SEs.
    residual_seen = int(np.sum(np.abs(dr["z_v_hat_stationary"]) > z)) + int(
        np.sum(np.abs(dr["z_m_hat_stationary"]) > z)
    )
    unbiased = worst_iid <= z and worst_drift <= z and steps_ok
    if not unbiased:
        verdict = "does not hold"
    else:
        verdict = "holds with a qualification" if residual_seen else "holds"
    d.update(z=z, n_tests=n_tests, worst_iid=worst_iid, worst_drift=worst_drift,
             steps_ok=steps_ok, residual_seen=residual_seen, drift=dr, alpha=ALPHA)
    T = dr["t"][-1]
    v_ratio = dr["mean_v_hat"][-1] / dr["second_moment"][-1]  # measured E[v̂_T]/E[g_T²]
    return ClaimResult(
        key="bias-correction",
        claim="Dividing m_t by 1-β1^t and v_t by 1-β2^t removes the bias of the zero start.",
        verdict=verdict,
        proved="For a stationary stream, E[m̂_t] = μ and E[v̂_t] = E[g²] at every t, and "
        "adambook's step is m̂_t/(√v̂_t + ε) to rounding. When the gradient distribution "
        "drifts, a residual ζ_t/(1-β^t) remains (Kingma & Ba): the corrected averages "
        "estimate a weighted mean of past moments, not the current one.",
        section="sec-bias-drift",
        measured=f"largest |z| {worst_iid:.2f} (i.i.d.), {worst_drift:.2f} (drift) over "
        f"{n_tests} tests (bound {z:.2f}); with gradient scale halving every "
        f"{DRIFT_HALF_LIFE} steps, E[v̂_{T}] = {v_ratio:.2f}·E[g_{T}²]",
        details=d,
    )


# ------------------------------------------------------------------ first step


def first_step_experiment(beta1=0.9, beta2=0.999, lr=1e-3, eps=1e-8, device="cpu", seed=4):
    r"""The first step of ``adambook.Adam`` with and without the correction, and its closed form.

    One parameter vector whose gradient entries span twelve decades in size with
    random signs; each run is one step from zero. Returns the steps in units of
    ``lr`` and :func:`adambook.moments.first_step` for the same gradient, for
    ``eps`` and for :math:`\epsilon = 0`.
    """
    gen = torch.Generator().manual_seed(seed)
    mag = 10.0 ** torch.linspace(-6, 6, 25, dtype=torch.float64)
    sign = torch.where(torch.rand(25, generator=gen, dtype=torch.float64) < 0.5, -1.0, 1.0)
    g = (mag * sign).to(device)
    out = {"grad": g.cpu().numpy(), "lr": lr, "beta1": beta1, "beta2": beta2, "eps": eps}
    for e in (eps, 0.0):
        for bc in (True, False):
            p = torch.nn.Parameter(torch.zeros_like(g))
            opt = Adam([p], lr=lr, betas=(beta1, beta2), eps=e, bias_correction=bc)
            p.grad = g.clone()
            opt.step()
            out[(e, bc)] = {
                "step": p.detach().cpu().numpy() / lr,
                "closed_form": M.first_step(out["grad"], lr=1.0, beta1=beta1, beta2=beta2,
                                            eps=e, bias_correction=bc),
            }
    return out


# ------------------------------------------------------------ a training problem


def training_experiment(
    lrs=(1e-3, 10**-2.5, 1e-2, 10**-1.5, 1e-1),
    beta2s=(0.999, 0.9999),
    steps=1000,
    seeds=8,
    width=16,
    dim=8,
    batch=32,
    noise=0.1,
    n_test=256,
    dtype=torch.float32,
    device="cpu",
):
    r"""Train small two-layer tanh networks with Adam, corrected and uncorrected.

    Each seed draws its own teacher network (of the same shape, weights twice as
    large), its own student initialisation and its own minibatch stream; every
    configuration (learning rate × :math:`\beta_2` × correction on/off) sees the same
    seeds, initialisations and minibatches. All configurations train at once: each
    has its own leaf parameters, one parameter group of one ``adambook.Adam``, and
    the forward pass concatenates them along the batch of independent networks.

    Returns per configuration ``(lr, beta2, bias_correction)``: ``loss`` (test loss
    on ``n_test`` fresh points per seed, shape ``(len(checkpoints), seeds)``) and
    ``max_step`` (largest :math:`|\Delta\theta_i|/\eta` over the coordinates, shape
    ``(steps, seeds)``) and ``max_theta`` (largest :math:`|\theta_i|` after each step,
    which bounds the rounding of a step read off as a difference), plus
    ``checkpoints`` and ``ulp`` (the dtype's machine epsilon).
    """
    dev = torch.device(device)
    kw = dict(dtype=dtype, device=dev)
    gen = torch.Generator().manual_seed(5)

    def net(scale):
        return [
            torch.randn(seeds, dim, width, generator=gen, dtype=dtype) * scale / dim**0.5,
            torch.zeros(seeds, 1, width, dtype=dtype),
            torch.randn(seeds, width, 1, generator=gen, dtype=dtype) * scale / width**0.5,
            torch.zeros(seeds, 1, 1, dtype=dtype),
        ]

    def forward(ps, x):
        w1, b1, w2, b2 = ps
        return torch.tanh(x @ w1 + b1) @ w2 + b2

    teacher = [p.to(dev) for p in net(2.0)]
    student0 = [p.to(dev) for p in net(1.0)]
    x_test = torch.randn(seeds, n_test, dim, generator=gen, dtype=dtype).to(dev)
    y_test = forward(teacher, x_test)

    configs = [(lr, b2, bc) for lr in lrs for b2 in beta2s for bc in (True, False)]
    C = len(configs)
    leaves = [[torch.nn.Parameter(p.clone()) for p in student0] for _ in configs]
    opt = Adam(
        [{"params": ps, "lr": lr, "betas": (0.9, b2), "bias_correction": bc}
         for ps, (lr, b2, bc) in zip(leaves, configs)],
        foreach=True,  # the multi-tensor path: fewer, larger kernel calls per group
    )
    lr_col = torch.tensor([c[0] for c in configs], **kw).repeat_interleave(seeds)
    checkpoints = np.unique(np.r_[0, np.round(np.geomspace(1, steps, 30)).astype(int)])
    losses = []
    max_steps, max_theta = torch.empty(steps, C * seeds, **kw), torch.empty(steps, C * seeds, **kw)

    def stacked():
        return [torch.cat([ps[i] for ps in leaves]) for i in range(4)]

    def test_loss():
        with torch.no_grad():
            pred = forward(stacked(), x_test.repeat(C, 1, 1))
            return ((pred - y_test.repeat(C, 1, 1)) ** 2).mean(dim=(1, 2))

    data = torch.Generator().manual_seed(6)
    with torch_threads(1):
        for t in range(steps + 1):
            if t in checkpoints:
                losses.append(test_loss())
            if t == steps:
                break
            x = torch.randn(seeds, batch, dim, generator=data, dtype=dtype).to(dev)
            y = forward(teacher, x)
            y = y + noise * torch.randn(y.shape, generator=data, dtype=dtype).to(dev)
            opt.zero_grad()
            pred = forward(stacked(), x.repeat(C, 1, 1))
            # Sum of the runs' mean-squared errors: each run's gradient is its own.
            ((pred - y.repeat(C, 1, 1)) ** 2).mean(dim=(1, 2)).sum().backward()
            with torch.no_grad():
                before = stacked()
            opt.step()
            with torch.no_grad():
                delta = torch.cat(
                    [(p - b).abs().flatten(1) for p, b in zip(stacked(), before)], dim=1
                )
                max_steps[t] = delta.amax(1) / lr_col
                max_theta[t] = torch.cat([p.abs().flatten(1) for p in stacked()], 1).amax(1)
    losses = torch.stack(losses).reshape(len(checkpoints), C, seeds).cpu().numpy()
    max_steps = max_steps.reshape(steps, C, seeds).cpu().numpy()
    max_theta = max_theta.reshape(steps, C, seeds).cpu().numpy()
    out = {"checkpoints": checkpoints, "configs": configs, "steps": steps, "seeds": seeds,
           "ulp": torch.finfo(dtype).eps}
    for k, cfg in enumerate(configs):
        out[cfg] = {"loss": losses[:, k], "max_step": max_steps[:, k],
                    "max_theta": max_theta[:, k]}
    return out


# ------------------------------------------------------------ the two ε forms


def eps_open_loop(
    scales=tuple(10.0 ** -k for k in range(0, 11)),
    steps=3000,
    lr=1e-2,
    eps=1e-8,
    beta1=0.9,
    beta2=0.999,
    seed=7,
    device="cpu",
):
    r"""The two ε conventions on one fixed gradient stream, one row per gradient scale :math:`c`.

    Row :math:`c` receives :math:`g_t = c\,(\mu + \sigma\xi_t)` whatever
    :math:`\theta` is, so the moments :math:`m_t, v_t` of every run are the same
    numbers; each step starts from :math:`\theta = 0` so that it is read off exactly.
    Returns the steps of Algorithm 1 (:func:`adambook.functional.adam`, ``eps``), of
    the efficient form with :math:`\hat\epsilon = \epsilon` (``hat``) and with
    :math:`\hat\epsilon_t = \epsilon\sqrt{1-\beta_2^t}` (``matched``), and
    :math:`\sqrt{\hat v_t}` and the gradients ``grads``, each of shape ``(steps, rows)``.
    """
    kw = dict(dtype=torch.float64, device=torch.device(device))
    gen = torch.Generator().manual_seed(seed)  # on the CPU: the same stream on any device
    xi = torch.randn(steps, len(scales), generator=gen, dtype=torch.float64)
    grads = (torch.tensor(scales, dtype=torch.float64) * (MU + SIGMA * xi)).to(kw["device"])
    kinds = ("alg1", "hat", "matched")
    state = {k: [torch.zeros(len(scales), **kw) for _ in range(3)] for k in kinds}
    out = {k: torch.empty(steps, len(scales), **kw) for k in kinds + ("sqrt_v_hat",)}
    with torch_threads(1):
        for t in range(1, steps + 1):
            g = grads[t - 1]
            for k in kinds:
                theta, m, v = state[k]
                theta.zero_()
                if k == "alg1":
                    F.adam([theta], [g], [m], [v], [t], lr=lr, beta1=beta1, beta2=beta2,
                           eps=eps)
                else:
                    e = eps * math.sqrt(1 - beta2**t) if k == "matched" else eps
                    M.adam_eps_hat([theta], [g], [m], [v], [t], lr=lr, beta1=beta1,
                                   beta2=beta2, eps_hat=e)
                out[k][t - 1] = -theta
            out["sqrt_v_hat"][t - 1] = (state["alg1"][2] / float(M.ema_mass(t, beta2))).sqrt()
    res = {k: x.cpu().numpy() for k, x in out.items()}
    res.update(scales=np.asarray(scales), lr=lr, eps=eps, beta1=beta1, beta2=beta2,
               steps=steps, t=np.arange(1, steps + 1), grads=grads.cpu().numpy())
    # Algorithm 1's step over the efficient form's, for the same m and v:
    eff = M.effective_eps(res["t"], beta2, eps)[:, None]
    res["predicted_ratio"] = (res["sqrt_v_hat"] + eff) / (res["sqrt_v_hat"] + eps)
    res["tol"] = step_tolerance(res["t"], beta1, beta2, base=16)[:, None]
    return res


def eps_closed_loop(
    scales=tuple(10.0 ** -k for k in range(0, 11)),
    curvatures=(1.0, 100.0),
    steps=3000,
    lr=1e-2,
    eps=1e-8,
    beta1=0.9,
    beta2=0.999,
    device="cpu",
):
    r"""Algorithm 1 with :math:`\epsilon` against the efficient form with the same number.

    One row per gradient scale :math:`c`: the quadratic
    :math:`f_c(\theta) = \tfrac c2\sum_i h_i\theta_i^2` from :math:`\theta_0 = (1,\dots,1)`.
    With :math:`\epsilon = 0` Adam's trajectory would not depend on :math:`c`
    (chapter "Adam"). Returns both paths, shape ``(steps + 1, rows, d)``.
    """
    kw = dict(dtype=torch.float64, device=torch.device(device))
    c = torch.tensor(scales, **kw)
    h = torch.tensor(curvatures, **kw)

    def run(kind):
        theta = torch.ones(len(scales), len(curvatures), **kw)
        m, v = torch.zeros_like(theta), torch.zeros_like(theta)
        path = [theta.clone()]
        for t in range(1, steps + 1):
            g = c[:, None] * h * theta
            if kind == "alg1":
                F.adam([theta], [g], [m], [v], [t], lr=lr, beta1=beta1, beta2=beta2, eps=eps)
            else:
                M.adam_eps_hat([theta], [g], [m], [v], [t], lr=lr, beta1=beta1, beta2=beta2,
                               eps_hat=eps)
            path.append(theta.clone())
        return torch.stack(path).cpu().numpy()

    with torch_threads(1):
        paths = {k: run(k) for k in ("alg1", "hat")}
    return {"scales": np.asarray(scales), "curvatures": np.asarray(curvatures), "lr": lr,
            "eps": eps, "beta1": beta1, "beta2": beta2, "steps": steps, **paths}
