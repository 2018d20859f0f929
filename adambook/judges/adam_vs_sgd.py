"""Judge of the chapter "Is Adam faster than SGD?" (``chapters/adam_vs_sgd``).

:func:`compare` is the chapter's decision rule for one comparison;
:func:`judge_adam_faster` applies it per problem and returns the verdict.
Neither runs anything.
"""

from __future__ import annotations

from ..stats import equivalent, mean_se
from ..verdicts import Verdict


def compare(d, neither, exact, z, margin) -> str:
    r"""Adam against a comparator, from per-seed paired differences ``d``
    (positive: Adam ahead). With :math:`\bar d \pm z\,\mathrm{se}`:
    "better" if :math:`\bar d - z\,\mathrm{se} > \delta`, "worse" if
    :math:`\bar d + z\,\mathrm{se} < -\delta`, "no difference" if the two
    one-sided tests put :math:`\bar d` inside :math:`\pm\delta`
    (:func:`~adambook.stats.equivalent`; only when ``exact``, no value cut
    by the budget or the grid), else "undecided". "neither reaches" when
    ``neither``: both fail on most seeds, so ``d`` measures nothing."""
    if neither:
        return "neither reaches"
    m, se = mean_se(d)
    if m - z * se > margin:
        return "better"
    if m + z * se < -margin:
        return "worse"
    if exact and equivalent(m, se, margin, z):
        return "no difference"
    return "undecided"


def judge_adam_faster(speed, width, *, z, margins, problems) -> Verdict:
    r"""``speed[p]`` and ``width[p]``: :func:`compare`'s arguments
    ``(d, neither, exact)`` for problem ``p`` against plain SGD: ``d`` the
    log speed-up :math:`\ln(\tau_{SGD}/\tau_{Adam})` per seed, or Adam's
    extra width of the working learning-rate range in decades. ``margins``:
    (speed, width). Holds if Adam is better in both on every problem, does
    not hold if faster on none, else holds with a qualification.
    ``problems[p]``: a short description with convexity and budget."""
    fast = {p: compare(*speed[p], z, margins[0]) for p in problems}
    wide = {p: compare(*width[p], z, margins[1]) for p in problems}
    n_fast = sum(o == "better" for o in fast.values())
    n_wide = sum(o == "better" for o in wide.values())
    if n_fast == len(problems) and n_wide == len(problems):
        verdict = "holds"
    elif n_fast == 0:
        verdict = "does not hold"
    else:
        verdict = "holds with a qualification"
    rows = "; ".join(
        f"{p}: {mean_se(speed[p][0])[0]:+.2f} ({fast[p]}), "
        f"{mean_se(width[p][0])[0]:+.2f} dec ({wide[p]})" for p in problems)
    return Verdict(
        key="adam-faster-than-sgd",
        claim="Adam often converges faster and more reliably than "
        "stochastic gradient descent.",
        verdict=verdict,
        proved=f"With each learning rate tuned on separate seeds, Adam "
        f"reached the target in fewer steps than plain SGD on {n_fast} of "
        f"{len(problems)} problems and worked over a wider learning-rate "
        f"range on {n_wide}; margins of one grid step, z = {z:.2f}.",
        scope="Fixed budgets, losses started from random points: "
        + "; ".join(f"{p}, {d}" for p, d in problems.items()) + ".",
        measured="mean log speed-up ln(τ(SGD)/τ(Adam)) and extra width of "
        "the working lr range: " + rows,
        section="sec-adam-vs-sgd-results",
    )
