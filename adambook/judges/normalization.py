"""Judges of chapters/normalization: weight decay on scale-invariant weights.

Each takes what the chapter measured (log-ratios of measured to predicted,
with standard errors over seeds) and the z-bound and margin it stated, and
returns a :class:`~adambook.verdicts.Verdict`; none runs anything.
"""

from __future__ import annotations

from ..scale_invariance import different, equivalent
from ..verdicts import Verdict


def _pm(d, se):
    return f"{d:+.3f} ± {se:.3f}"


def judge_scale_invariance(worst, tol, scales, scope):
    """Holds if the loss, <∇L, w> and c ∇L(cw) - ∇L(w) all vanish to the
    rounding bound ``tol`` (relative), at every scale; else does not."""
    ok = max(worst.values()) <= tol
    return Verdict(
        "scale-invariance",
        "Weights that feed a normalization layer are scale-invariant: "
        "L(cw) = L(w), so ⟨∇L(w), w⟩ = 0 and ∇L(cw) = ∇L(w)/c.",
        "holds" if ok else "does not hold",
        "Both identities hold to float64 rounding for each layer at c = "
        + ", ".join(f"{c:g}" for c in scales) + ".",
        scope,
        f"largest relative gaps: loss {worst['loss']:.1e}, inner product "
        f"{worst['inner']:.1e}, gradient {worst['grad']:.1e} "
        f"(bound {tol:.1e})",
        "sec-norm-invariance")


def judge_sgd_equilibrium(recursion, rows, z, margin, factor, scope):
    """``rows``: name -> (mean, se) of log(measured/predicted). Holds if the
    recursion residual is within rounding (``recursion`` <= 1), every angle
    and norm is equivalent to its prediction within ``margin`` and every
    e-folding time within ``factor``; with a qualification if the recursion
    and the angles are, but a norm or a time is not; else does not hold."""
    angles = all(equivalent(*v, margin, z)
                 for k, v in rows.items() if "angle" in k)
    norms = all(equivalent(*v, margin, z)
                for k, v in rows.items() if "norm" in k)
    times = all(equivalent(*v, factor, z)
                for k, v in rows.items() if "time" in k)
    base = recursion <= 1 and angles
    verdict = ("holds" if base and norms and times else
               "holds with a qualification" if base else "does not hold")
    off = [k for k, v in rows.items()
           if not equivalent(*v, factor if "time" in k else margin, z)]
    return Verdict(
        "sgd-wd-equilibrium",
        "Without decay SGD only grows a scale-invariant weight's norm; with "
        "decay it reaches an equilibrium norm with angular update "
        "√(2ηλ/(1+μ)) per step, in of order 1/(ηλ) steps.",
        verdict,
        "The norm recursion holds to rounding; the angular update matches "
        "√(2ηλ/(1+μ)) per layer, with and without momentum"
        + ("" if not off else "; not within the margin: "
           + ", ".join(off)) + ".",
        scope,
        f"recursion residual ≤ {recursion:.2f} × rounding bound; "
        + "; ".join(f"log(meas/pred) {k}: {_pm(*v)}"
                    for k, v in rows.items()) + f" (z = {z:.2f})",
        "sec-norm-sgd")


def judge_adamw_equal(fits, spread, less, pred, z, margin, scope):
    """Holds if each layer's angular update is equivalent to ``pred`` and
    the layers' ratio to one (margin, z); with a qualification if not, but
    AdamW's layers differ significantly less than Adam + L2's (``less``:
    mean, se of the paired gap of |log ratio|); else does not hold."""
    equal = (all(equivalent(*f, margin, z) for f in fits)
             and equivalent(*spread, margin, z))
    verdict = ("holds" if equal else "holds with a qualification"
               if less[0] - z * less[1] > 0 else "does not hold")
    return Verdict(
        "adamw-equal-angular-updates",
        "With AdamW every scale-invariant layer reaches the same angular "
        "update √(2ηλ(1-β₁)/(1+β₁)), whatever its gradient scale.",
        verdict,
        "The layers' equilibrium angular updates are "
        + ("equal within the margin and match the prediction." if equal
           else "closer to each other than Adam + L2's, but not equal "
           "within the margin."),
        scope,
        f"predicted {pred:.4f}; log(meas/pred) per layer "
        + ", ".join(_pm(*f) for f in fits)
        + f"; log(layer 1/layer 2) {_pm(*spread)}; Adam + L2's |log ratio| "
        f"larger by {_pm(*less)} (z = {z:.2f}, margin {margin:.3f})",
        "sec-norm-adamw")


def judge_adam_l2_unequal(spread, fit, z, margin, scope):
    """Holds if Adam + L2's layer ratio differs from one beyond ``margin``
    and equals the ratio predicted from λ_eff within it; with a
    qualification if only the first; else does not hold."""
    unequal = bool(different(*spread, margin, z))
    verdict = ("does not hold" if not unequal else "holds"
               if equivalent(*fit, margin, z)
               else "holds with a qualification")
    return Verdict(
        "adam-l2-unequal-angular-updates",
        "With Adam + L2 the decay passes through the preconditioner, so "
        "each layer's equilibrium angular update depends on its own "
        "gradient-to-weight ratio: √(2ηλ_eff(1-β₁)/(1+β₁)).",
        verdict,
        "The layers' angular updates differ beyond the margin"
        + (", by the ratio λ_eff predicts." if verdict == "holds" else "."
           if unequal else " (they do not).")
        if unequal else "The layers' angular updates do not differ beyond "
        "the margin.",
        scope,
        f"log(layer 1/layer 2) {_pm(*spread)}; minus predicted "
        f"{_pm(*fit)} (z = {z:.2f}, margin {margin:.3f})",
        "sec-norm-adaml2")


def judge_lr_wd_product(adamw, adam_l2, products, z, margin, scope):
    """Each list holds (mean, se) of log(test loss a / test loss b) for
    pairs of equilibrium cells of equal lr·λ. Holds if every AdamW pair is
    equivalent and some Adam + L2 pair differs (beyond margin); with a
    qualification if only one of: AdamW equivalent, no AdamW pair differs
    while some Adam + L2 pair does; else does not hold."""
    eq = all(equivalent(*p, margin, z) for p in adamw)
    no_diff = not any(different(*p, margin, z) for p in adamw)
    l2 = any(different(*p, margin, z) for p in adam_l2)
    verdict = ("holds" if eq and l2 else "holds with a qualification"
               if (no_diff and l2) or eq else "does not hold")
    worst = max(adamw, key=lambda p: abs(p[0]))
    worst_l2 = max(adam_l2, key=lambda p: abs(p[0]))
    return Verdict(
        "lr-wd-product",
        "On scale-invariant weights AdamW's good region of the lr × λ grid "
        "follows the product lr·λ; Adam + L2's does not.",
        verdict,
        f"Across {len(adamw)} pairs of equilibrium cells of equal lr·λ, "
        + ("AdamW's test losses are equal within the margin"
           if eq else "AdamW's test losses are not shown equal")
        + (" and Adam + L2's differ." if l2 else
           " and Adam + L2's are not shown to differ."),
        scope,
        f"largest AdamW log-ratio {_pm(*worst)}, Adam + L2 "
        f"{_pm(*worst_l2)} (z = {z:.2f}, margin {margin:.3f})",
        "sec-norm-grid")
