"""Judges of the chapter "When Adam fails" (``chapters/failures.ipynb``).

Both take what the chapter measured and the bounds it derived, and return a
:class:`~adambook.verdicts.Verdict`; neither runs anything.
"""

from __future__ import annotations

import numpy as np

from ..stats import equivalent
from ..verdicts import Verdict


def judge_adam_nonconvergence(det, sto, z, *, margin, alpha, steps, n_starts,
                              sto_setup) -> Verdict:
    r"""Adam at +1, AMSGrad at -1, on Reddi's problem and its stochastic form.

    ``det``, one dict per :math:`C`: Adam's period ends exactly +1,
    AMSGrad's within ``band`` above -1, per-step regrets within their
    bounds and ``slack``, ``regret_gap <= regret_slack``. ``sto``: name ->
    (mean, se, bound);
    ``mean_gradient`` equivalent to :math:`\delta` within ``margin``, the
    rest :math:`m - z\,se \le` bound < 1.
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
        equivalent(m - b, se, margin, z) if name == "mean_gradient"
        else m - z * se <= b < 1 for name, (m, se, b) in sto.items())
    r = det[0]
    Cs = ", ".join(f"{d['C']:g}" for d in det)
    C, delta, eta, n_runs, steps_sto = sto_setup
    return Verdict(
        key="adam-nonconvergence",
        claim="With β₁ = 0 and β₂ = 1/(1 + C²), Adam settles at the worst "
        "point of Reddi et al.'s one-dimensional convex problem, while "
        "AMSGrad finds the optimum.",
        verdict="holds" if det_ok and sto_ok else "does not hold",
        proved="Each −1 step is at least αₜ/√2 long and each C step at "
        "most αₜ√(1 + 1/C²), so Adam gains in every period, ends each "
        "at exactly +1, and R(T)/T → 2(C − 2)/3; AMSGrad ends each period "
        "within two small steps of −1. In the stochastic form (E f = δx) "
        "both stay within Kingman's bound of those ends.",
        scope=f"Reddi et al.'s convex online problem on [−1, 1] (linear "
        f"losses), β₁ = 0, β₂ = 1/(1 + C²), on a fixed budget: C in "
        f"{{{Cs}}}, {n_starts} starts, T = {steps:,} steps of α/√t with α "
        f"= {alpha:g}; stochastic C = {C:g}, δ = {delta:g}, constant η = "
        f"{eta:g}, {n_runs:,} runs of {steps_sto:,} steps, z = {z:.2f}.",
        measured=f"C = {r['C']:g}: x(T) = {np.min(r['x_T_adam']):+.3f} "
        f"(Adam, every start), {np.max(r['x_T_ams']):+.3f} (AMSGrad); "
        f"R(T)/T = "
        f"{np.mean(r['regret_adam']):.3f} vs {np.mean(r['regret_ams']):.3f}",
        section="sec-failures-reddi",
    )


def judge_large_beta2_converges(betas2, Cs, x_end, predicted, tol, decided,
                                delta, v_end, v_pred, v_rtol, x_warm,
                                boundary, counter, near_two, *, eta,
                                periods, eps_gap=None) -> Verdict:
    r"""Problem first: each :math:`C` converges above :math:`\beta_2^\star(C)`.

    Arrays ``[beta2, C]``: ``x_end`` within ``tol`` of ``predicted`` where
    ``decided``, ``v_end`` within ``v_rtol`` of ``v_pred``, ``x_warm`` 0,
    a decided run with ``delta`` < 0 for every C; ``counter``:
    :math:`\Delta > 0` at :math:`C = 2 + (1-\beta_2)/2`; ``near_two``:
    :math:`\beta_2^\star \ge` its lower bound; ``eps_gap``: the smallest
    :math:`1-\beta_2` down to which the bound proves :math:`\Delta > 0`
    there with the runs' :math:`\epsilon` (None: not computed).
    """
    off = np.abs(x_end - predicted)
    match = (off <= tol) | ~decided
    b_first, drift_bad = counter
    C_near, bstar, lower = near_two
    ok = (bool(match.all()) and bool(np.all(x_warm == 0))
          and bool(np.all(np.abs(v_end - v_pred) <= v_rtol * v_pred))
          and bool(np.all((decided & (delta < 0) & match).any(axis=0)))
          and bool(np.all(drift_bad > 0)) and bool(np.all(bstar >= lower)))
    return Verdict(
        key="large-beta2-converges",
        claim="With the problem fixed before β₂ (Zhang et al.'s order, not "
        "Reddi et al.'s), a large enough β₂ makes Adam converge on it.",
        verdict="holds" if ok else "does not hold",
        proved="With β₁ = 0 a period moves x by ηΔ(β₂, C), Δ in closed "
        "form; every grid run with time to cross ends where the sign of Δ "
        "puts it, and for each C the runs above β₂*(C) < 1 end in the cycle "
        "next to −1. In the other order no β₂ < 1 is safe: C = 2 + "
        "(1 − β₂)/2 has Δ > 0 (proved for ε = 0"
        + (f", and for the ε used down to 1 − β₂ = {eps_gap:.0e}"
           if eps_gap is not None else "")
        + "; computed at each β₂ tried), and β₂*(C) ≥ 1 − "
        "(C − 2)(C² + 2)/(C² − 1) → 1 as C → 2.",
        scope=f"Reddi et al.'s deterministic convex problem on [−1, 1], "
        f"β₁ = 0, constant η = {eta:g}, each C fixed before β₂ is varied: "
        f"{len(betas2)} β₂ in [{betas2[0]:.3g}, {betas2[-1]:.3g}] × "
        f"{len(Cs)} C in [{Cs[0]:g}, {Cs[-1]:g}], runs on a fixed budget of "
        f"{periods:,} periods after a warm-up at rate 0 (converged means the "
        f"steady cycle within 2η of −1); the other order from the closed "
        f"form, for {len(b_first)} β₂ up to {max(b_first):g} and C − 2 "
        f"down to {min(C_near) - 2:.0e}.",
        measured=f"β₂* = {boundary[0]:.2f} at C = {Cs[0]:.1f}, "
        f"{boundary[-1]:.4f} at C = {Cs[-1]:.0f}, {bstar[-1]:.6f} at C − 2 "
        f"= {C_near[-1] - 2:.0e} (bound {lower[-1]:.6f}); "
        f"{int((~match).sum())} of {int(decided.sum())} decided runs off the "
        f"prediction; smallest Δ at C = 2 + (1 − β₂)/2: "
        f"{min(drift_bad):.1e}",
        section="sec-failures-boundary",
    )
