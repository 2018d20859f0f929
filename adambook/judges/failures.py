"""Judges of the chapter "When Adam fails" (``chapters/failures.ipynb``).

Both take what the chapter measured and the bounds it derived, and return a
:class:`~adambook.verdicts.Verdict`; neither runs anything.
"""

from __future__ import annotations

import numpy as np

from ..verdicts import Verdict


def judge_adam_nonconvergence(det, sto, z, *, alpha, steps, n_starts,
                              sto_setup) -> Verdict:
    r"""Adam at +1, AMSGrad at -1, on Reddi's problem and its stochastic form.

    ``det``, one dict per :math:`C`: ``ends_adam``/``ends_ams``, the points
    after each period from the derived reach periods on (must be exactly +1,
    and within ``band`` above -1); ``tail_adam``/``tail_ams``, the regret per
    step after both arrived, within ``adam_bounds``/``ams_bounds`` and
    ``slack``; ``regret_gap`` <= ``regret_slack`` (the loop's regret against
    the recorded points); ``regret_*``, ``x_T_*`` for the text. ``sto``:
    name -> (mean, se, bound); ``mean_gradient`` two-sided
    (:math:`|m - \delta| \le z\,se`), the rest one-sided
    (:math:`m - z\,se \le` bound < 1).
    """
    det_ok = all(
        np.size(r["ends_adam"]) * np.size(r["ends_ams"]) > 0
        and np.all(r["ends_adam"] == 1.0)
        and np.all((r["ends_ams"] + 1 >= 0) & (r["ends_ams"] + 1 <= r["band"]))
        and all(lo - r["slack"] <= x.min() and x.max() <= hi + r["slack"]
                for x, (lo, hi) in ((r["tail_adam"], r["adam_bounds"]),
                                    (r["tail_ams"], r["ams_bounds"])))
        and r["regret_gap"] <= r["regret_slack"] for r in det)
    sto_ok = all(
        abs(m - b) <= z * se if name == "mean_gradient"
        else m - z * se <= b < 1 for name, (m, se, b) in sto.items())
    r = det[0]
    Cs = ", ".join(f"{d['C']:g}" for d in det)
    C, delta, eta, n_runs, steps_sto = sto_setup
    return Verdict(
        key="adam-nonconvergence",
        claim="Adam can fail on a one-dimensional convex problem: with β1 = 0 "
        "and β2 = 1/(1+C²) it settles at the worst point of Reddi et al.'s "
        "online problem, while AMSGrad, which divides by the running maximum "
        "of v, finds the optimum.",
        verdict="holds" if det_ok and sto_ok else "does not hold",
        proved="Each −1 step is at least α_t/√2 long and each C step at most "
        "α_t√(1+1/C²), so Adam gains in every period, ends each at exactly "
        "+1, and R_T/T → 2(C−2)/3; AMSGrad ends each period within two small "
        "steps of −1. In the stochastic form (E f = δx) both stay within "
        "Kingman's bound of those ends.",
        scope=f"Reddi et al.'s convex online problem on [−1, 1] (linear "
        f"losses), β1 = 0, β2 = 1/(1+C²), on a fixed budget: C in {{{Cs}}}, "
        f"{n_starts} starts, T = {steps:,} steps of α/√t with α = {alpha:g}; "
        f"stochastic C = {C:g}, δ = {delta:g}, constant η = {eta:g}, "
        f"{n_runs:,} runs of {steps_sto:,} steps, z = {z:.2f}.",
        measured=f"C = {r['C']:g}: x_T = {np.min(r['x_T_adam']):+.3f} (Adam, "
        f"every start), {np.max(r['x_T_ams']):+.3f} (AMSGrad); R_T/T = "
        f"{np.mean(r['regret_adam']):.3f} vs {np.mean(r['regret_ams']):.3f}",
        section="sec-failures-reddi",
    )


def judge_large_beta2_converges(betas2, Cs, x_end, predicted, tol, decided,
                                delta, v_end, v_pred, v_rtol, x_warm,
                                boundary, *, eta, periods) -> Verdict:
    r"""Every decided run of the :math:`(\beta_2, C)` grid ends as predicted.

    Arrays indexed ``[beta2, C]``: ``x_end`` within ``tol`` of ``predicted``
    where ``decided``; ``v_end`` within relative ``v_rtol`` of ``v_pred``;
    the points after the warm-up, ``x_warm``, exactly 0; both signs of the
    drift ``delta`` among decided runs; the largest :math:`\beta_2` ends
    below 0 for every :math:`C`.
    """
    off = np.abs(x_end - predicted)
    match = (off <= tol) | ~decided
    v_ok = bool(np.all(np.abs(v_end - v_pred) <= v_rtol * v_pred))
    both = bool((decided & (delta > 0)).any()
                and (decided & (delta < 0)).any())
    ok = (bool(match.all()) and v_ok and bool(np.all(x_warm == 0)) and both
          and bool(np.all(x_end[-1] < 0)))
    return Verdict(
        key="large-beta2-converges",
        claim="Reddi et al. chose β2 after the problem's constant C. Fix the "
        "problem first and a large enough β2 makes Adam converge on it "
        "(Zhang et al.).",
        verdict="holds" if ok else "does not hold",
        proved="With β1 = 0 Adam's drift per period is ηΔ(β2, C), Δ in "
        "closed form, and every grid run that had time to cross ends where "
        "the sign of Δ puts it. Δ < 0 above a threshold β2*(C) < 1, which "
        "tends to 1 as C → 2: how large is large enough depends on the "
        "problem.",
        scope=f"Reddi et al.'s deterministic convex problem on [−1, 1], "
        f"β1 = 0, constant η = {eta:g}, a grid of {len(betas2)} β2 in "
        f"[{betas2[0]:.3g}, {betas2[-1]:.3g}] × {len(Cs)} C in "
        f"[{Cs[0]:g}, {Cs[-1]:g}], each run {periods:,} periods after a "
        f"warm-up at rate 0.",
        measured=f"β2* = {boundary[0]:.2f} at C = {Cs[0]:.1f}, "
        f"{boundary[-1]:.4f} at C = {Cs[-1]:.0f}; {int((~match).sum())} of "
        f"{int(decided.sum())} decided runs off the prediction",
        section="sec-failures-boundary",
    )
