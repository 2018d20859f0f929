"""Judges of the chapter "Adam: momentum plus per-coordinate step sizes".

Each takes what ``chapters/adam.ipynb`` measured and returns a
:class:`~adambook.verdicts.Verdict`; none runs anything.
"""

from __future__ import annotations

import numpy as np

from ..stats import equivalent
from ..verdicts import Verdict


def judge_momentum_smooths_noise(betas, ratio, se, theory, margin, z, *,
                                 adam_ratio, adam_se, lemma_dev, scope):
    r"""Does EMA momentum shrink the iterates' stationary spread?

    ``ratio``/``se``: spread with over without momentum, per β (Adam's:
    ``adam_ratio``/``adam_se``). Holds when every ratio is below
    ``1 - margin`` by ``z`` SE; does not hold when all are within
    ``margin`` of 1 (TOST) and SGD's match ``theory``, or all exceed 1 by
    ``z`` SE; qualified otherwise.
    """
    b, r, s, p, ra, sa = (np.asarray(x, dtype=float) for x in
                          (betas, ratio, se, theory, adam_ratio, adam_se))
    rs, ss = np.concatenate([r, ra]), np.concatenate([s, sa])
    if np.all(rs + z * ss < 1 - margin):
        verdict = "holds"
    elif ((np.all(equivalent(rs - 1, ss, margin, z))
           and np.all(np.abs(r - p) <= z * s)) or np.all(rs - z * ss > 1)):
        verdict = "does not hold"
    else:
        verdict = "holds with a qualification"
    i = int(np.argmax(b))
    return Verdict(
        key="momentum-smooths-noise",
        claim="Adam's update uses the moving average mₜ, which averages "
        "out minibatch noise, so the iterates jitter less.",
        verdict=verdict,
        proved="The average has (1 − β)/(1 + β) of the gradient's variance, "
        "but its weights sum to one: at equal effective learning rate the "
        "iterates' stationary spread is unchanged to leading order in η, "
        "for SGD and for Adam.",
        scope=scope,
        measured=f"spread ratio with/without momentum at β = {b[i]:g}: "
        f"SGD {r[i]:.3f} ± {s[i]:.3f} (theory {p[i]:.3f}), Adam "
        f"{ra[i]:.3f} ± {sa[i]:.3f}; margin ±{margin:g}, z = {z:.2f}; "
        f"Var(m) at the last step within {lemma_dev:.2f} SE of its formula",
        section="sec-adam-noise",
    )


def judge_beta1_tradeoff(betas, noise, noise_se, noise_pred, lag, lag_se,
                         lag_pred, z, *, scope):
    r"""A larger β1: less noise in m_t (eq-ema-var) but more lag (eq-lag).

    Holds when both match their closed forms within ``z`` SE and, between
    neighbouring β1, noise falls and lag rises by more than ``z`` times the
    sum of the two SEs. Does not hold when either does not move so;
    qualified when only a closed form is off.
    """
    n, ns, npr, g, gs, gp = (np.asarray(x, dtype=float) for x in
                             (noise, noise_se, noise_pred, lag, lag_se,
                              lag_pred))
    falls = np.all(n[:-1] - n[1:] > z * (ns[:-1] + ns[1:]))
    rises = np.all(g[1:] - g[:-1] > z * (gs[:-1] + gs[1:]))
    exact = (np.all(np.abs(n - npr) <= z * ns)
             and np.all(np.abs(g - gp) <= z * gs))
    verdict = ("does not hold" if not (falls and rises) else
               "holds" if exact else "holds with a qualification")
    i = int(np.argmin(np.abs(np.asarray(betas) - 0.9)))
    return Verdict(
        key="beta1-tradeoff",
        claim="A larger β₁ produces more smoothing but slower adaptation "
        "to changes in the gradient.",
        verdict=verdict,
        proved="Var(m)/σ² = (1 − β₁)/(1 + β₁) falls and the lag after a "
        "step change of the mean, β₁/(1 − β₁) steps, grows; the two are "
        "tied exactly by Var(m)/σ² = 1/(1 + 2·lag).",
        scope=scope,
        measured=f"at β₁ = {betas[i]:g}: Var(m)/σ² = {n[i]:.4f} ± "
        f"{ns[i]:.4f} (theory {npr[i]:.4f}), lag {g[i]:.2f} ± {gs[i]:.2f} "
        f"steps (theory {gp[i]:.2f}); over β₁ = {betas[0]:g} … "
        f"{betas[-1]:g} the lag grows from {g[0]:.2f} to {g[-1]:.1f}",
        section="sec-adam-lag",
    )


def judge_per_coordinate_steps(gap0, rounding0, gap_eps, budget_eps,
                               rounding_eps, eps, *, diag_steps, rot_steps,
                               budget, kappa, scope):
    r"""Adam's step under coordinate rescaling, and under a rotation.

    Does not hold when a gap (``gap0`` at ε = 0, ``gap_eps``) exceeds its
    bound (eq-adam-scale); qualified when the rotated problem takes over
    twice the steps (``rot_steps``, ``None``: not within ``budget``) of
    the axis-aligned one; holds otherwise.
    """
    if not (gap0 <= rounding0 and gap_eps <= budget_eps + rounding_eps):
        verdict = "does not hold"
    elif rot_steps is None or rot_steps > 2 * diag_steps:
        verdict = "holds with a qualification"
    else:
        verdict = "holds"
    rot = f"not within {budget:,}" if rot_steps is None else f"{rot_steps:,}"
    eps_txt = f"{eps:g}".replace("e-0", "e-")  # 1e-8, not 1e-08
    return Verdict(
        key="per-coordinate-steps",
        claim="Dividing by the root of the squared-gradient average gives "
        "every coordinate its own step size, small where gradients are "
        "large.",
        verdict=verdict,
        proved="Multiplying coordinate i's gradients by cᵢ > 0 changes "
        "Adam's step only through ε/cᵢ, so on an axis-aligned quadratic "
        "Adam's path does not depend on κ. The qualification: the "
        "invariance is to per-coordinate scaling only; rotate the same "
        "quadratic and κ is back.",
        scope=scope,
        measured=f"gap {gap0:.1e} with ε = 0 (rounding bound "
        f"{rounding0:.1e}), {gap_eps:.1e} with ε = {eps_txt} (bound "
        f"{budget_eps + rounding_eps:.1e}); steps to tolerance at κ = "
        f"{kappa:.0e}: {diag_steps:,} axis-aligned, {rot} rotated",
        section="sec-adam-scale",
    )
