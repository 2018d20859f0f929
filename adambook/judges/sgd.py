"""Judges of the chapter "SGD and its two problems" (``chapters/sgd``).

They take what the chapter's assertions used (z-scores are ``(measured -
theory) / SE``) and the ``scope`` the chapter writes from its parameters."""

from __future__ import annotations

import numpy as np

from ..verdicts import Verdict

#: Halfway between the exponents 1/2 (heavy ball) and 1 (gradient descent).
HEAVY_BALL_THRESHOLD = 0.75


def _within(z_scores, z) -> bool:
    return bool(np.all(np.abs(z_scores) <= z))


def judge_sgd_noise(*, z, n_tests, batch_sizes, mean_z, var_z, slope,
                    slope_se, slope_z, slope_equivalent, post_slope, post_se,
                    post_equivalent, margin, jitter_z, drops, no_batch_z,
                    kurtosis, kurtosis_z, scope) -> Verdict:
    r"""``sgd-noise``, by the rule of ``sec-sgd-noise-rule``.

    Does not hold unless every z-score (``mean_z``, ``var_z``,
    ``slope_z``, ``jitter_z``) is within ``z``, every slope equivalent to
    -1, every drop of the spread above ``z`` and the variance without
    :math:`1/b` (``no_batch_z``) rejected at every :math:`b > 1`.
    Qualified when the raw slope over :math:`b \ll N` is not equivalent to
    -1 (``post_equivalent``) or an excess kurtosis is not ``z`` SEs above
    0."""
    sizes = np.asarray(batch_sizes)
    core = (_within(mean_z, z) and _within(var_z, z) and _within(slope_z, z)
            and bool(np.all(slope_equivalent))
            and _within(jitter_z, z) and bool(np.all(np.asarray(drops) > z))
            and bool(np.all(np.abs(np.asarray(no_batch_z)[sizes > 1]) > z)))
    qualified = not (bool(np.all(post_equivalent))
                     and bool(np.all(np.asarray(kurtosis_z) > z)))
    worst = max(np.abs(var_z).max(), np.abs(jitter_z).max())
    return Verdict(
        key="sgd-noise",
        claim="Minibatch gradients are unbiased but noisy, with large "
        "outliers, so SGD's iterates jitter instead of settling at the "
        "optimum.",
        verdict="does not hold" if not core else
        "holds with a qualification" if qualified else "holds",
        proved="A minibatch of b of N examples drawn without replacement "
        "gives an unbiased gradient whose variance is σ²(N − b)/((N − 1)b): "
        "the post's 1/b where b ≪ N (a slope equivalent to −1), zero for "
        "the full batch; per-example gradients have heavier tails than a "
        "Gaussian. SGD with a constant learning rate η then jitters around "
        "the least-squares minimiser with E‖θ − θ*‖² given exactly by a "
        "linear recursion, ≈ (η/2)·(N − b)/((N − 1)b)·tr(H⁻¹Σ*) for "
        "small η.",
        scope=scope,
        measured=f"log-log slope {slope[0]:.4f} ± {slope_se[0]:.4f}, for "
        f"b ≪ N {post_slope[0]:.4f} ± {post_se[0]:.4f} (the post's −1, "
        f"margin ±{margin:g}); excess kurtosis {np.max(kurtosis):.1f}, ≥ "
        f"{np.min(kurtosis_z):.0f} SEs above 0; largest |z| {worst:.2f} "
        f"(bound {z:.2f}, {n_tests} tests)",
        section="sec-sgd-noise")


def judge_sgd_one_lr(*, stiff_below, stiff_above, closed_form_gap, rounding,
                     gd, gd_predicted, heavy_ball, heavy_ball_predicted,
                     slope, slope_bound, hb_slope, eps_min, scope) -> Verdict:
    """``sgd-one-lr``: holds iff the stiff coordinate (``|θ_T|/|θ_0|``)
    shrinks just below 2/L and grows just above, every path is within
    ``rounding`` of the closed form, the GD and heavy-ball counts are within
    one step of theirs and the GD slope lies in ``slope_bound``; qualified
    when heavy ball is faster at every κ with a slope below
    :data:`HEAVY_BALL_THRESHOLD`."""
    lo, hi = slope_bound
    gd, heavy_ball = np.asarray(gd), np.asarray(heavy_ball)
    core = (bool(np.all(np.asarray(stiff_below) < 1))
            and bool(np.all(np.asarray(stiff_above) > 1))
            and bool(np.all(np.asarray(closed_form_gap) <= rounding))
            and bool(np.all(np.abs(gd - gd_predicted) <= 1))
            and bool(np.all(np.abs(heavy_ball - heavy_ball_predicted) <= 1))
            and lo <= slope <= hi)
    helps = bool(np.all(heavy_ball < gd)) and hb_slope < HEAVY_BALL_THRESHOLD
    return Verdict(
        key="sgd-one-lr",
        claim="One learning rate for all coordinates makes SGD struggle on "
        "an ill-conditioned loss.",
        verdict="does not hold" if not core else
        "holds with a qualification" if helps else "holds",
        proved="Gradient descent on a quadratic is stable iff η < 2/Lₘₐₓ, "
        f"to the last digit we can resolve ({eps_min:.0e} either side), and "
        "even at the best single rate it needs "
        "⌈ln(1/tol)/ln((κ + 1)/(κ − 1))⌉ ≈ (κ/2)ln(1/tol) steps: "
        "proportional to κ. The qualification: one learning rate plus tuned "
        "heavy-ball momentum needs only about √κ·ln(1/tol)/2 steps, so it "
        "is plain SGD, not one learning rate as such, that pays the full "
        "factor κ.",
        scope=scope,
        measured=f"GD slope {slope:.3f} (theory [{lo:.3f}, {hi:.3f}]); "
        f"heavy ball {hb_slope:.3f}; boundary sharp at ε = {eps_min:.0e}",
        section="sec-sgd-one-lr")
