"""Judges of chapters/normalization. Each takes log-ratios (mean, se over
seeds) the chapter measured, its z-bound and margin; none runs anything."""

from __future__ import annotations

import math

from ..scale_invariance import different
from ..stats import equivalent
from ..verdicts import Verdict


def _pm(d, se):
    return f"{d:+.3f} ± {se:.3f}"


def _eq(p, margin, z):
    return bool(equivalent(p[0], p[1], margin, z))


def judge_scale_invariance(worst, tol, scales, scope):
    """Holds if every relative gap in ``worst`` is <= ``tol``."""
    ok = max(worst.values()) <= tol
    return Verdict(
        "scale-invariance",
        "Weights feeding a normalization layer are scale-invariant: "
        "⟨∇L(w), w⟩ = 0 and ∇L(cw) = ∇L(w)/c.",
        "holds" if ok else "does not hold",
        "Both identities hold to float64 rounding for each layer at c = "
        + ", ".join(f"{c:g}" for c in scales) + ".", scope,
        f"largest relative gaps: loss {worst['loss']:.1e}, inner product "
        f"{worst['inner']:.1e}, gradient {worst['grad']:.1e} "
        f"(bound {tol:.1e})", "sec-norm-invariance")


def judge_sgd_equilibrium(recursion, rows, z, margin, factor, scope):
    """Holds if recursion <= 1 and every angle and norm in ``rows`` is
    within ``margin`` (times within ``factor``); qualified if only the
    recursion and the angles are; else does not hold."""
    off = [k for k, v in rows.items()
           if not _eq(v, factor if "time" in k else margin, z)]
    base = recursion <= 1 and not any("angle" in k for k in off)
    verdict = ("holds" if base and not off else
               "holds with a qualification" if base else "does not hold")
    return Verdict(
        "sgd-wd-equilibrium",
        "With decay, SGD turns a scale-invariant weight by √(2ηλ/(1+μ)) "
        "per step at an equilibrium norm, reached in ~1/(ηλ) steps.",
        verdict,
        "The norm recursion holds to rounding; the angular update matches "
        "√(2ηλ/(1+μ)) per layer, with and without momentum"
        + ("; not within the margin: " + ", ".join(off) if off else "")
        + ".", scope,
        f"recursion residual ≤ {recursion:.2f} × rounding bound; "
        "log(meas/pred): " + "; ".join(f"{k} {_pm(*v)}"
                                       for k, v in rows.items())
        + f" (z = {z:.2f})",
        "sec-norm-sgd")


def judge_adamw_equal(fits, spread, less, pred, z, margin, scope):
    """Holds if every layer's angle matches ``pred`` and the layers each
    other (``fits``, ``spread``); qualified if not, but AdamW's layers
    differ significantly less than Adam + L2's (``less``); else fails."""
    equal = all(_eq(f, margin, z) for f in fits + [spread])
    verdict = ("holds" if equal else "holds with a qualification"
               if less[0] - z * less[1] > 0 else "does not hold")
    return Verdict(
        "adamw-equal-angular-updates",
        "AdamW gives every scale-invariant layer the same angular update "
        "√(2ηλ(1 − β₁)/(1 + β₁)).",
        verdict,
        "The layers' equilibrium angular updates are "
        + ("equal within the margin and match the prediction." if equal
           else "closer to each other than Adam + L2's, but not equal "
           "within the margin."), scope,
        f"predicted {pred:.4f}; log(meas/pred) per layer "
        + ", ".join(_pm(*f) for f in fits)
        + f"; log(layer 1/layer 2) {_pm(*spread)}; Adam + L2's |log ratio| "
        f"larger by {_pm(*less)} (z = {z:.2f}, margin {margin:.3f})",
        "sec-norm-adamw")


def judge_adam_l2_unequal(spread, fit, z, margin, scope):
    """``spread``: log(layer 1 / layer 2); ``fit``: that minus the
    λ_eff prediction. Holds if the layers differ beyond ``margin``, on
    the predicted side of 1, and the prediction is shown equivalent
    within ``margin`` without being shown to miss (|fit| ≤ z·se);
    qualified if they differ on the predicted side but the prediction is
    not shown right (by how much it misses is reported); else does not
    hold. (The first rule asked only for equivalence within ``margin``:
    whether that came out depended on the draw of the task.)"""
    predicted = spread[0] - fit[0]
    unequal = different(*spread, margin, z) and spread[0] * predicted > 0
    exact = _eq(fit, margin, z) and abs(fit[0]) <= z * fit[1]
    verdict = ("does not hold" if not unequal else
               "holds" if exact else "holds with a qualification")
    miss = f"{math.expm1(abs(fit[0])):.0%}"
    return Verdict(
        "adam-l2-unequal-angular-updates",
        "Adam + L2 gives each scale-invariant layer its own angular "
        "update, set by its gradient-to-weight ratio.",
        verdict,
        "The layers' angular updates "
        + ("differ beyond the margin, "
           + ("by the ratio the effective λ predicts." if exact else
              f"on the side the effective λ predicts; the predicted "
              f"ratio is off by {miss}.")
           if unequal else "do not differ beyond the margin on the side "
           "the effective λ predicts."), scope,
        f"log(layer 1/layer 2) {_pm(*spread)}; minus predicted "
        f"{_pm(*fit)} (z = {z:.2f}, margin {margin:.3f})",
        "sec-norm-adaml2")


def judge_lr_wd_product(adamw, adam_l2, z, margin, scope):
    """``adamw``, ``adam_l2``: (mean, se) of log(test loss ratio) per pair
    of cells of equal lr·λ. Holds if every AdamW pair is equivalent and
    some Adam + L2 pair differs; qualified if AdamW is equivalent, or no
    AdamW pair differs while an Adam + L2 pair does; else does not hold."""
    eq = all(_eq(p, margin, z) for p in adamw)
    split = any(different(*p, margin, z) for p in adamw)
    l2 = any(different(*p, margin, z) for p in adam_l2)
    verdict = ("holds" if eq and l2 else "holds with a qualification"
               if eq or (l2 and not split) else "does not hold")
    worst, worst_l2 = (max(ps, key=lambda p: abs(p[0]))
                       for ps in (adamw, adam_l2))
    return Verdict(
        "lr-wd-product",
        "AdamW's good region of the lr × λ grid follows the product lr·λ; "
        "Adam + L2's does not.", verdict,
        f"Across {len(adamw)} pairs of cells of equal lr·λ, AdamW's test "
        "losses are " + ("equal within the margin" if eq else
                         "shown to differ" if split else
                         "undecided (neither equal nor different)")
        + "; Adam + L2's are " + ("shown to differ." if l2 else
                                  "not shown to differ."), scope,
        f"largest AdamW log-ratio {_pm(*worst)}, Adam + L2 "
        f"{_pm(*worst_l2)} (z = {z:.2f}, margin {margin:.3f})",
        "sec-norm-grid")


def judge_lr_wd_closer(adamw, adam_l2, closer, z, margin, scope):
    """The third rule on ``lr-wd-product``. ``adamw``, ``adam_l2``:
    (mean, se) of each method's log test-loss ratio per pair of cells of
    equal lr·λ; ``closer``: (mean, se) of Adam + L2's mean over the pairs
    of |mean| − √(2/π)·se (unbiased at a gap of 0, low otherwise) minus
    AdamW's. Holds if
    AdamW is closer (mean > z·se), some Adam + L2 pair differs from 0,
    and every AdamW pair is equivalent within ``margin`` and none differs
    from 0; qualified if closer and an Adam + L2 pair differs, but not
    all of the rest; else does not hold."""
    is_closer = closer[0] > z * closer[1]
    l2_split = any(abs(d) > z * s for d, s in adam_l2)
    split = [p for p in adamw if abs(p[0]) > z * p[1]]
    equal = all(_eq(p, margin, z) for p in adamw) and not split
    worst = max(adamw, key=lambda p: abs(p[0]))
    verdict = ("does not hold" if not (is_closer and l2_split) else
               "holds" if equal else "holds with a qualification")
    return Verdict(
        "lr-wd-product",
        "AdamW's good region of the lr × λ grid follows the product lr·λ; "
        "Adam + L2's does not.", verdict,
        "Cells of equal lr·λ differ " + (
            "less for AdamW than for Adam + L2" if is_closer else
            "not measurably less for AdamW than for Adam + L2")
        + ("" if l2_split else ", and no Adam + L2 pair differs")
        + (f"; AdamW's still differ, by up to "
           f"{math.expm1(abs(worst[0])):.0%}." if split else
           "; no AdamW pair differs, and all are equal within the margin."
           if equal else "; AdamW's are not shown equal within the margin."),
        scope,
        f"mean |log-ratio| − √(2/π)·se over {len(adamw)} pairs, Adam + L2 "
        f"minus AdamW {_pm(*closer)}; largest AdamW log-ratio {_pm(*worst)} "
        f"(z = {z:.2f}, margin {margin:.3f})", "sec-norm-grid")
