r"""Judges of the chapter "Bias correction" (``chapters/bias_correction``).

Both judge the chapter's one Monte Carlo of independent gradient streams:
z-scores (measured − predicted)/SE, held to a Šidák bound ``z``.
"""

from __future__ import annotations

import math

import numpy as np

from ..stats import equivalent
from ..verdicts import Verdict


def _pairs(pairs) -> str:
    return ", ".join(f"({b1}, {b2})" for b1, b2 in pairs)


def judge_ema_bias(z_fit, z_nofactor, z, *, m1_ratio, m1_se, beta1,
                   n_streams, steps, pairs) -> Verdict:
    r"""``ema-bias``: :math:`\mathbb E[m_t] = (1-\beta_1^t)\mu`,
    :math:`\mathbb E[v_t] = (1-\beta_2^t)\mathbb E[g^2]`.

    "holds" iff every z-score against the closed forms ``z_fit`` is
    within ``z`` and, in every pair, the prediction without
    :math:`1-\beta^t` (``z_nofactor``, ``(pairs, 2, steps)``) is rejected
    for :math:`m` and for :math:`v` at some step.
    """
    z_fit, z_nofactor = np.abs(z_fit), np.abs(z_nofactor)
    worst = float(z_fit.max())
    power = bool(np.all((z_nofactor > z).any(axis=-1)))
    return Verdict(
        key="ema-bias",
        claim="Started at zero, the moving averages are biased toward zero: "
        "E[mₜ] = (1 − β₁ᵗ)μ, and likewise E[vₜ] = (1 − β₂ᵗ)E[g²].",
        verdict="holds" if worst <= z and power else "does not hold",
        proved="For gradients of constant mean μ and second moment E[g²], "
        "E[mₜ] = (1 − β₁ᵗ)μ and E[vₜ] = (1 − β₂ᵗ)E[g²] exactly; for "
        "independent gradients of variance σ², "
        "Var(mₜ) = σ²(1 − β₁)(1 − β₁²ᵗ)/(1 + β₁).",
        scope=f"Monte Carlo of {n_streams} independent Gaussian gradient "
        f"streams at every step t = 1..{steps}, for (β₁, β₂) = "
        f"{_pairs(pairs)}; float64.",
        measured=f"largest |z| {worst:.2f} over {z_fit.size} tests "
        f"(bound {z:.2f}); E[m₁]/μ = {m1_ratio:.3f} ± {m1_se:.3f} "
        f"at β₁ = {beta1}",
        section="sec-bias-monte-carlo",
    )


def judge_bias_correction(z_iid, z_drift, z_stationary, step_gap, z, *,
                          v_ratio, half_life, n_streams, steps, pairs,
                          drift_pair) -> Verdict:
    r"""``bias-correction``: dividing by :math:`1-\beta^t` removes the bias.

    "holds" iff every z-score of :math:`\hat m_t, \hat v_t` (``z_iid``,
    and ``z_drift`` against the expectation with :math:`\zeta_t`) is
    within ``z`` and ``step_gap`` (gap over rounding bound) ``<= 1``.
    ``z_stationary``, the drift against the current moments, is reported.
    """
    worst_iid, worst_drift = np.abs(z_iid).max(), np.abs(z_drift).max()
    n_tests = np.size(z_iid) + np.size(z_drift)
    rejected = int((np.abs(z_stationary) > z).any(axis=0).sum())
    ok = worst_iid <= z and worst_drift <= z and step_gap <= 1
    return Verdict(
        key="bias-correction",
        claim="Dividing mₜ by 1 − β₁ᵗ and vₜ by 1 − β₂ᵗ removes the bias "
        "of the zero start.",
        verdict="holds" if ok else "does not hold",
        proved="For a stationary stream, E[m̂ₜ] = μ and E[v̂ₜ] = E[g²] "
        "at every t, and adambook's step is m̂ₜ/(√v̂ₜ + ε) to "
        "rounding. When the gradient distribution drifts (the post assumes it "
        "does not), a residual ζₜ/(1 − βᵗ) remains (Kingma & Ba): the lag "
        "of a moving average, which the correction does not claim to remove.",
        scope=f"Monte Carlo of {n_streams} independent Gaussian gradient "
        f"streams at every step t = 1..{steps}: stationary for (β₁, β₂) = "
        f"{_pairs(pairs)}, and drifting (scale halving every {half_life} "
        f"steps) at {_pairs([drift_pair])}; float64.",
        measured=f"largest |z| {worst_iid:.2f} (i.i.d.), {worst_drift:.2f} "
        f"(drift, against ζₜ) over {n_tests} tests (bound {z:.2f}); the "
        f"drift rejects the stationary targets at {rejected} of {steps} "
        f"steps; at step {steps}, E[v̂] = {v_ratio:.2f}·E[g²]",
        section="sec-bias-drift",
    )


def judge_untuned_warmup(d, se, t_one, d_lr, se_lr, t_lr, margin, *, lrs,
                         beta2, n_seeds, steps) -> Verdict:
    r"""``untuned-warmup``: linear warmup over :math:`2/(1-\beta_2)` steps
    trains as well as RAdam (Ma & Yarats 2021).

    ``d, se``: mean of :math:`\ln(L_{\rm warmup}/L_{\rm RAdam})` and its
    SE (``d_lr, se_lr``: per learning rate). "holds" iff
    :math:`|d| + t\,{\rm se} < \ln` ``margin`` and no rate's interval
    lies wholly outside the margin, :math:`|d_\eta| - t_\eta {\rm se}_\eta
    > \ln` ``margin``; qualified if only the first.
    """
    d_lr, se_lr = np.asarray(d_lr), np.asarray(se_lr)
    delta = math.log(margin)
    equal = bool(equivalent(d, se, delta, t_one))
    differ = [f"{lr:.0e}" for lr, x, s in zip(lrs, d_lr, se_lr)
              if abs(x) - t_lr * s > delta]  # beyond the margin, not 0
    verdict = ("does not hold" if not equal else
               "holds with a qualification" if differ else "holds")
    return Verdict(
        key="untuned-warmup",
        claim="An untuned linear warmup over 2/(1 − β₂) steps trains as well "
        "as RAdam's rectification (Ma & Yarats 2021).",
        verdict=verdict,
        proved=f"Averaged over the learning rates, the test losses of the "
        f"two agree within a factor {margin} (two one-sided tests)"
        + (f"; they differ by more than that at η = {', '.join(differ)}."
           if differ else ", and no single learning rate shows a "
           "difference beyond that factor."),
        scope=f"Non-convex: 2-layer tanh networks fit to a teacher, fixed "
        f"budget of {steps} minibatch steps, η = {lrs[0]:.0e}..{lrs[-1]:.0e}"
        f", β₂ = {beta2}, {n_seeds} paired seeds; float32.",
        measured=f"mean ln(L(warmup)/L(RAdam)) = {d:+.3f} ± {se:.3f} (bound "
        f"{t_one:.2f}, margin ln {margin} = {math.log(margin):.3f}); per "
        "η: " + ", ".join(f"{x:+.2f} ± {s:.2f}"
                          for x, s in zip(d_lr, se_lr)),
        section="sec-bias-warmup",
    )
