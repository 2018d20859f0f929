r"""Judges of the chapter "Bias correction" (``chapters/bias_correction``).

Both judge the chapter's one Monte Carlo of independent gradient streams:
z-scores (measured − predicted)/SE, held to a Šidák bound ``z``.
"""

from __future__ import annotations

import numpy as np

from ..verdicts import Verdict

__all__ = ["judge_ema_bias", "judge_bias_correction"]


def _pairs(pairs) -> str:
    return ", ".join(f"({b1}, {b2})" for b1, b2 in pairs)


def judge_ema_bias(z_fit, z_nofactor, z, *, m1_ratio, m1_se, beta1,
                   n_streams, steps, pairs) -> Verdict:
    r"""``ema-bias``: :math:`\mathbb E[m_t] = (1-\beta_1^t)\mu`,
    :math:`\mathbb E[v_t] = (1-\beta_2^t)\mathbb E[g^2]`.

    ``z_fit``: z-scores of the means and variances of :math:`m_t, v_t`
    against the closed forms (size = number of tests); ``z_nofactor``: the
    means against the prediction without :math:`1-\beta^t`, shape
    ``(pairs, 2, steps)``; ``z``: the Šidák bound. "holds" iff every
    :math:`|z_{\rm fit}| \le z` and, in every pair, the prediction without
    the factor is rejected (:math:`|z| > z`) for :math:`m` and for :math:`v`
    at some step.
    """
    z_fit, z_nofactor = np.abs(z_fit), np.abs(z_nofactor)
    worst = float(z_fit.max())
    power = bool(np.all((z_nofactor > z).any(axis=-1)))
    return Verdict(
        key="ema-bias",
        claim="Started at zero, the moving averages are biased toward zero: "
        "E[m_t] = (1-β1^t)μ, and likewise E[v_t] = (1-β2^t)E[g²].",
        verdict="holds" if worst <= z and power else "does not hold",
        proved="For gradients of constant mean μ and second moment E[g²], "
        "E[m_t] = (1-β1^t)μ and E[v_t] = (1-β2^t)E[g²] exactly; for "
        "independent gradients of variance σ², "
        "Var(m_t) = σ²(1-β1)/(1+β1)(1-β1^{2t}).",
        scope=f"Monte Carlo of {n_streams} independent Gaussian gradient "
        f"streams at every step t = 1..{steps}, for (β1, β2) = "
        f"{_pairs(pairs)}; float64.",
        measured=f"largest |z| {worst:.2f} over {z_fit.size} tests "
        f"(bound {z:.2f}); E[m_1]/μ = {m1_ratio:.3f} ± {m1_se:.3f} "
        f"at β1 = {beta1}",
        section="sec-bias-monte-carlo",
    )


def judge_bias_correction(z_iid, z_drift, z_stationary, step_gap, z, *,
                          v_ratio, half_life, n_streams, steps, pairs,
                          drift_pair) -> Verdict:
    r"""``bias-correction``: dividing by :math:`1-\beta^t` removes the bias.

    ``z_iid``: z-scores of the means of :math:`\hat m_t, \hat v_t` against
    :math:`\mu, \mathbb E[g^2]`; ``z_drift``: under drift, against their
    expectation with :math:`\zeta_t`; ``z_stationary``: the drift's against
    the current moments; ``step_gap``: largest relative gap of the package's
    step over its rounding bound; ``z``: the Šidák bound for the
    ``z_iid.size + z_drift.size`` tests. "does not hold" if any
    :math:`|z| > z` or ``step_gap > 1``; else "holds with a qualification"
    if the drift rejects the stationary targets anywhere, else "holds".
    """
    worst_iid = float(np.abs(z_iid).max())
    worst_drift = float(np.abs(z_drift).max())
    n_tests = np.size(z_iid) + np.size(z_drift)
    residual_seen = bool(np.any(np.abs(z_stationary) > z))
    if not (worst_iid <= z and worst_drift <= z and step_gap <= 1):
        verdict = "does not hold"
    elif residual_seen:
        verdict = "holds with a qualification"
    else:
        verdict = "holds"
    return Verdict(
        key="bias-correction",
        claim="Dividing m_t by 1-β1^t and v_t by 1-β2^t removes the bias "
        "of the zero start.",
        verdict=verdict,
        proved="For a stationary stream, E[m̂_t] = μ and E[v̂_t] = E[g²] at "
        "every t, and adambook's step is m̂_t/(√v̂_t + ε) to rounding. When "
        "the gradient distribution drifts, a residual ζ_t/(1-β^t) remains "
        "(Kingma & Ba): the corrected averages estimate a weighted mean of "
        "past moments, not the current one.",
        scope=f"Monte Carlo of {n_streams} independent Gaussian gradient "
        f"streams at every step t = 1..{steps}: stationary for (β1, β2) = "
        f"{_pairs(pairs)}, and drifting (scale halving every {half_life} "
        f"steps) at {_pairs([drift_pair])}; float64.",
        measured=f"largest |z| {worst_iid:.2f} (i.i.d.), {worst_drift:.2f} "
        f"(drift) over {n_tests} tests (bound {z:.2f}); with gradient scale "
        f"halving every {half_life} steps, "
        f"E[v̂_{steps}] = {v_ratio:.2f}·E[g_{steps}²]",
        section="sec-bias-drift",
    )
