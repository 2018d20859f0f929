"""Judges of the weight-decay chapters, chapters/l2_weight_decay and
chapters/ridge: each takes what its chapter measured and returns a
:class:`~adambook.verdicts.Verdict`; none runs anything."""

from __future__ import annotations

import numpy as np

from ..verdicts import Verdict


def _design(n):
    return f"the post's design (n = {n}, column scales 1 and 1000, float64)"


def judge_l2_equals_wd_for_sgd(gap, budget, steps, batch, n):
    """Holds when the L2 and the decoupled SGD run differ by no more than
    their accumulated rounding bound at every step."""
    gap, budget = np.asarray(gap), np.asarray(budget)
    return Verdict(
        "l2-equals-wd-for-sgd",
        "For SGD without momentum, adding λθ to the gradient and shrinking "
        "the weights by 1 − ηλ before the step are the same update.",
        "holds" if np.all(gap <= budget) else "does not hold",
        "With the same minibatches, adambook.functional.sgd with "
        "weight_decay=λ and with decoupled_weight_decay=True produce the "
        "same iterates up to float rounding, step by step; the gap stays "
        "inside the accumulated rounding bound.",
        f"Plain SGD on {_design(n)}, one start, {steps:,} steps of {batch} "
        "rows drawn with replacement, compared step by step.",
        f"largest gap {gap.max():.1e} over {steps} steps "
        f"(rounding bound {budget[-1]:.1e})",
        "sec-l2wd-sgd")


def judge_l2_not_wd_for_adam(gaps, budgets, steps, lr, n):
    """``gaps``, ``budgets``: for each form of Adam + L2, its distance to
    AdamW along the run and the rounding bound had they been one update.
    Holds when every form leaves its bound at some step."""
    differ = all(np.any(np.asarray(gaps[k]) > np.asarray(budgets[k]))
                 for k in gaps)
    return Verdict(
        "l2-not-wd-for-adam",
        "For Adam, adding λθ to the gradient is not the same as decaying "
        "the weights.",
        "holds" if differ else "does not hold",
        "From the same start, Adam + L2 (in torch's form and in the post's "
        "form) and AdamW part by far more than rounding could explain: the "
        "penalty in Adam + L2 is divided by √v̂+ε, AdamW's is not.",
        f"Full-batch Adam on {_design(n)} from one start, {steps:,} steps "
        f"at lr = {lr:g}, compared step by step.",
        f"largest gap {min(np.max(g) for g in gaps.values()):.2e} "
        f"(rounding bound {np.asarray(budgets['adam_l2'])[-1]:.1e})",
        "sec-l2wd-adam")


def judge_nonuniform_effective_decay(min_ratio, max_ratio,
                                     measured_min_ratio, formula_gaps,
                                     formula_roundings, col_ratio, lrs,
                                     steps, n):
    """The ratio of the two coordinates' decay rates under Adam + L2.

    "Weaker": the large-scale coordinate's rate, by eq-effective-decay and
    as measured, is smaller at every recorded step, and measurement and
    formula agree within rounding. "Near": the ratio stays within a factor
    10 of the column-norm ratio. Both: holds; weaker only: qualified.
    """
    weaker = (min_ratio > 1 and measured_min_ratio > 1 and all(
        g <= r for g, r in zip(formula_gaps, formula_roundings)))
    near = col_ratio / 10 <= min_ratio and max_ratio <= 10 * col_ratio
    verdict = ("holds" if weaker and near else
               "holds with a qualification" if weaker else "does not hold")
    return Verdict(
        "nonuniform-effective-decay",
        "Adam + L2 divides the penalty by √v̂+ε, so a coordinate with large "
        "gradients (here the column of scale 1000) is decayed less per "
        "step.",
        verdict,
        "Per unit learning rate, Adam + L2 decays coordinate i at "
        "λ/(√v̂_i+ε) and AdamW at λ. On the post's design the large-scale "
        "coordinate's rate is smaller at every step of every run; the ratio "
        "starts at the column-scale ratio but then follows each "
        "coordinate's gradient history rather than the scales.",
        f"Full-batch Adam + L2 in both forms on {_design(n)} from 0, "
        f"{steps:,} steps at lr = {', '.join(f'{x:g}' for x in lrs)}; the "
        "rate is recorded along the runs, not at a limit.",
        f"rate ratio between {min_ratio:.0f} and {max_ratio:.0f} "
        f"(column-norm ratio {col_ratio:.0f})",
        "sec-l2wd-effective")


def judge_ridge_stationary_point(cert_upper, tol, mb_z, z, lam, steps,
                                 runs, mb_steps, n):
    """``cert_upper``: the certified distances of full-batch Adam + L2 (both
    forms) to the ridge solution, against ``tol`` = 2κu‖θ*‖; ``mb_z``: the
    minibatch (mean − ridge)/SE of both forms, against ``z``. The post's
    claim does not hold when both forms reach ridge in both settings."""
    worst = max(cert_upper)
    zmax = float(np.max(np.abs(np.asarray(mb_z))))
    at_ridge = worst <= tol and zmax <= z
    return Verdict(
        "ridge-stationary-point",
        "On the post's design, Adam with L2 settles at a point other than "
        "the ridge solution.",
        "does not hold" if at_ridge else "holds",
        "Dividing by √v̂+ε > 0 cannot move the zeros of ∇f + λθ. Full "
        "batch, Adam + L2 in torch's form and in the post's form ends within "
        "the float64 accuracy of the ridge solution (certified from the "
        "residual); with minibatches its average iterate sits at the ridge "
        "solution within its standard error.",
        f"Convex ridge regression on {_design(n)}, λ = {lam:g}: full batch "
        f"run to convergence ({steps:,} steps, hold then decay); "
        f"minibatches, {runs:,} runs × {mb_steps:,} steps, averaged.",
        f"certified distance to ridge ≤ {worst:.1e} (float64 accuracy "
        f"2κu‖θ‖ = {tol:.1e}); minibatch |mean − ridge| ≤ {zmax:.1f} SE "
        f"(z = {z:.2f})",
        "sec-ridge-fullbatch")


def judge_adamw_fixes_it(cert_ridge, cert_ls, tol, lam, steps, n):
    """AdamW's certificates (dicts of :func:`adambook.regularization.
    certify`) against ridge and least squares; the post's claim holds only
    if AdamW ends within ``tol`` of the ridge solution."""
    return Verdict(
        "adamw-fixes-it",
        "AdamW's decoupled decay repairs this: it settles where weight "
        "decay was meant to take it, the ridge solution.",
        "holds" if cert_ridge["upper"] <= tol else "does not hold",
        "AdamW does not settle at the ridge solution. Its fixed points "
        "solve ∇f + λ(√v̂+ε)⊙θ = 0: full batch, least squares up to "
        "order-ε terms while the ball ‖θ‖∞ ≤ 1/λ does not bind, the "
        "ℓ∞-constrained least-squares solution when it does; with "
        "minibatches, ridge with the per-coordinate penalty λ(√v̂_i+ε).",
        f"Convex ridge regression on {_design(n)}, full-batch AdamW run to "
        f"convergence ({steps:,} steps, hold then decay); minibatch runs "
        "as for Adam + L2.",
        f"AdamW (λ = {lam:g}) ends {cert_ridge['lower']:.3f} from ridge and "
        f"{cert_ls['upper']:.1e} from least squares",
        "sec-ridge-adamw")
