"""Judges of the weight-decay chapters, chapters/l2_weight_decay and
chapters/ridge: each takes what its chapter measured and returns a
:class:`~adambook.verdicts.Verdict`; none runs anything."""

from __future__ import annotations

import numpy as np

from ..verdicts import Verdict


def _design(n):
    return f"the post's design (n = {n}, column scales 1 and 1000, float64)"


def _convex(n, lam, steps):
    return (f"Strictly convex two-parameter ridge regression on {_design(n)}, "
            f"λ = {lam:g}, full batch, run to convergence ({steps:,} steps, "
            "constant then geometrically decaying lr); non-convex, over-"
            "parameterised or fixed-budget training, where the path can "
            "choose the destination, is not covered.")


def judge_l2_equals_wd_for_sgd(gap, budget, steps, batch, n):
    """Holds if the L2 and decoupled runs stay within ``budget``."""
    gap, budget = np.asarray(gap), np.asarray(budget)
    return Verdict("l2-equals-wd-for-sgd",
        "For SGD without momentum, adding λθ to the gradient and shrinking "
        "the weights by 1 − ηλ before the step are the same update.",
        "holds" if np.all(gap <= budget) else "does not hold",
        "With the same minibatches, adambook.functional.sgd with "
        "weight_decay=λ and with decoupled_weight_decay=True produce the "
        "same iterates up to float rounding, step by step; the gap stays "
        "inside the accumulated rounding bound.",
        f"Plain SGD on {_design(n)}, one start, {steps:,} steps of {batch} "
        "rows drawn with replacement, compared step by step (a per-step "
        "identity: the problem's convexity plays no part).",
        f"largest gap {gap.max():.1e} over {steps} steps "
        f"(rounding bound {budget[-1]:.1e})",
        "sec-l2wd-sgd")


def judge_l2_not_wd_for_adam(gaps, budgets, steps, lr, n):
    """Holds if each form of Adam + L2 leaves its rounding bound."""
    differ = all(np.any(np.asarray(gaps[k]) > np.asarray(budgets[k]))
                 for k in gaps)
    return Verdict("l2-not-wd-for-adam",
        "For Adam, adding λθ to the gradient is not the same as decaying "
        "the weights.",
        "holds" if differ else "does not hold",
        "From the same start, Adam + L2 (in torch's form and in the post's "
        "form) and AdamW part by far more than rounding could explain: the "
        "penalty in Adam + L2 is divided by √v̂+ε, AdamW's is not.",
        f"Full-batch Adam on {_design(n)} from one start, {steps:,} steps "
        f"at lr = {lr:g}, compared step by step (per-step updates).",
        f"largest gap {min(np.max(g) for g in gaps.values()):.2e} "
        f"(rounding bound {np.asarray(budgets['adam_l2'])[-1]:.1e})",
        "sec-l2wd-adam")


def judge_nonuniform_effective_decay(const_min, formula_ok, conv_end,
                                     limit, col_ratio, lrs, steps,
                                     conv_steps, n):
    """Rate ratio λ_eff,1/λ_eff,2: ``const_min`` over the constant-lr
    runs, ``conv_end`` per form at the end of the converged run. Holds if
    > 1 in both regimes; qualified if a converged form ends < 1; does not
    hold if the constant-lr runs (or ``formula_ok``) fail."""
    const = const_min > 1 and formula_ok
    reversed_ = [k for k, r in conv_end.items() if r < 1]
    verdict = ("does not hold" if not const else "holds" if not reversed_
               else "holds with a qualification")
    return Verdict("nonuniform-effective-decay",
        "Adam + L2 divides the penalty by √v̂+ε, so a coordinate with "
        "large gradients (here the column of scale 1000) is decayed less per "
        "step.",
        verdict,
        "Per unit learning rate Adam + L2 decays coordinate i at "
        "λ/(√v̂ᵢ + ε). While the learning rate is constant the "
        "large-scale coordinate is decayed less at every step, in both forms. "
        "Run to convergence, torch's form keeps it so, but in the post's form "
        "v̂ averages the data gradient alone, which at ridge is −λθ*, "
        "and the ratio tends to (λ|θ*₂|+ε)/(λ|θ*₁|+ε) < 1: the "
        "large-scale coordinate ends decayed more.",
        f"Full-batch Adam + L2 in both forms on {_design(n)} from 0: "
        f"{steps:,} steps at constant lr = "
        f"{', '.join(f'{x:g}' for x in lrs)}, and {conv_steps:,} steps of "
        "the ridge chapter's decaying schedule (strictly convex, to "
        "convergence); per-step rates, not a claim about the end point.",
        f"constant lr: ratio ≥ {const_min:.0f} (column ratio "
        f"{col_ratio:.0f}); converged: torch's form ends at "
        f"{conv_end['torch']:.0f}, the post's at {conv_end['post']:.1e} "
        f"(fixed-point limit {limit:.1e})",
        "sec-l2wd-effective")


def judge_ridge_stationary_point(cert_upper, tol, mb_z, z, equiv, margin,
                                 lam, steps, runs, mb_steps, n):
    """Does not hold if Adam + L2 ends within ``tol`` of ridge (full
    batch) and its minibatch mean is within ``z`` SE and ``equiv``."""
    worst = max(cert_upper)
    zmax = float(np.max(np.abs(np.asarray(mb_z))))
    at_ridge = worst <= tol and zmax <= z and all(equiv)
    return Verdict("ridge-stationary-point",
        "On the post's design, Adam with L2 settles at a point other than "
        "the ridge solution.",
        "does not hold" if at_ridge else "holds",
        "Dividing by √v̂+ε > 0 cannot move the zeros of ∇f + λθ. Full "
        "batch, Adam + L2 in torch's form and in the post's form ends within "
        "the float64 accuracy of the ridge solution (certified from the "
        "residual); with minibatches its average iterate is equivalent to "
        "ridge in θ₁ (two one-sided tests).",
        _convex(n, lam, steps) + f" Minibatches: {runs:,} runs × "
        f"{mb_steps:,} steps at constant lr, averaged.",
        f"certified distance to ridge ≤ {worst:.1e} (float64 accuracy "
        f"{tol:.1e}); minibatch |mean − ridge| ≤ {zmax:.1f} SE (z = "
        f"{z:.2f}), equivalent in θ₁ within ±{margin:.1e}",
        "sec-ridge-fullbatch")


def judge_sgd_converges_to_ridge(cert_upper, tol, lam, steps, n):
    """Holds when full-batch SGD + L2 ends within ``tol`` of ridge."""
    return Verdict("sgd-converges-to-ridge",
        "SGD converges to the correct (ridge) solution.",
        "holds" if cert_upper <= tol else "does not hold",
        "SGD + L2 (heavy ball) ends at ridge to float64 accuracy.",
        _convex(n, lam, steps).replace("constant then geometrically "
                                       "decaying lr", "constant lr"),
        f"certified distance to ridge ≤ {cert_upper:.1e} (float64 "
        f"accuracy {tol:.1e})", "sec-ridge-fullbatch")


def judge_adam_l2_same_objective(l2_upper, w_lower, tol, lam, steps, n):
    """Holds if Adam + L2 leaves ridge (SGD's point); qualified if only
    AdamW does; does not hold if neither does."""
    l2_at, w_off = max(l2_upper) <= tol, w_lower > 1e6 * tol
    return Verdict("adam-l2-same-objective",
        "When weight decay is involved, Adam does not optimize the same "
        "objective as SGD.",
        "holds" if not l2_at else "holds with a qualification" if w_off
        else "does not hold",
        "With L2 (either form) Adam's stationary point is SGD's, the ridge "
        "solution; with decoupled decay (AdamW) it is not: AdamW, the form "
        "the post recommends, is the one that leaves the ridge objective.",
        _convex(n, lam, steps),
        f"Adam + L2 ≤ {max(l2_upper):.1e} from ridge (accuracy "
        f"{tol:.1e}); AdamW ≥ {w_lower:.3f} from it", "sec-ridge-adamw")


def judge_adamw_decouples_per_step(rel_err, bound, lam, steps, n):
    """Holds if |rate/λ − 1| ≤ ``bound`` at every step and coordinate."""
    ok = bool(np.all(np.asarray(rel_err) <= np.asarray(bound)))
    return Verdict("adamw-decouples-per-step",
        "AdamW's decay bypasses the adaptive denominator: the weights "
        "shrink by the same factor 1 − ηλ on every coordinate.",
        "holds" if ok else "does not hold",
        "Each AdamW step, retaken without decay, differs by ηλθ on every "
        "coordinate, whatever √v̂, to rounding.",
        f"Full-batch AdamW on {_design(n)}, λ = {', '.join(map(str, lam))}"
        f", {steps:,} steps (a per-step identity).",
        f"largest |rate/λ − 1| {np.max(rel_err):.1e} (rounding bound at "
        f"that step ≥ {np.min(bound):.1e})", "sec-ridge-adamw")


def judge_adamw_fixes_it(cert_ridge, cert_ls, tol, lam, steps, n, drift):
    """Holds only if AdamW ends within ``tol`` of ridge (certificates of
    :func:`adambook.regularization.certify`); ``drift``: in SE."""
    return Verdict("adamw-fixes-it",
        "AdamW's decoupled decay repairs this: it settles where weight "
        "decay was meant to take it, the ridge solution.",
        "holds" if cert_ridge["upper"] <= tol else "does not hold",
        "AdamW does not settle at the ridge solution. Its fixed points "
        "solve ∇f + λ(√v̂+ε)⊙θ = 0 (Loshchilov & Hutter's own "
        "reading: decoupled decay under a fixed preconditioner is L2 rescaled "
        "per coordinate): full batch, least squares up to order-ε terms "
        "while the ball ‖θ‖∞ ≤ 1/λ does not bind, the "
        "ℓ∞-constrained least-squares solution when it does.",
        _convex(n, lam, steps) + " Minibatch runs are reported, not "
        f"judged (drift between their last two quarters: {drift:.1f} SE).",
        f"AdamW (λ = {lam:g}) ends {cert_ridge['lower']:.3f} from ridge and "
        f"{cert_ls['upper']:.1e} from least squares", "sec-ridge-adamw")
