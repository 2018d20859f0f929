"""Judges of the chapter "Adam: momentum plus per-coordinate step sizes".

Both take what ``chapters/adam.ipynb`` measured and return a
:class:`~adambook.verdicts.Verdict`; neither runs anything.
"""

from __future__ import annotations

import numpy as np

from ..verdicts import Verdict


def judge_momentum_smooths_noise(betas, measured, se, predicted, sigma, z,
                                 n_streams, steps):
    r"""Var(m_T) of i.i.d. gradients against eq-ema-var, with a z-bound.

    Holds when every sample variance is within ``z * se`` of
    :math:`\sigma^2\frac{1-\beta_1}{1+\beta_1}(1-\beta_1^{2T})`, is below
    :math:`\sigma^2`, and the same bound rejects the wrong formula
    :math:`(1-\beta_1)\sigma^2` at every :math:`\beta_1` (the test's power).
    """
    b, m, s, p = (np.asarray(x, dtype=float)
                  for x in (betas, measured, se, predicted))
    matches = bool(np.all(np.abs(m - p) <= z * s))
    reduces = bool(np.all(m < sigma**2))
    rejects_wrong = bool(np.all(np.abs(m - sigma**2 * (1 - b)) > z * s))
    i = int(np.argmin(np.abs(b - 0.9)))  # the default β1, or the nearest
    worst = float(np.max(np.abs(m - p) / s))
    return Verdict(
        key="momentum-smooths-noise",
        claim="Averaging past gradients with weight β1 damps minibatch noise.",
        verdict=("holds" if matches and reduces and rejects_wrong
                 else "does not hold"),
        proved="For i.i.d. gradients of variance σ², Var(m_t) = "
        "σ²(1-β1)/(1+β1)(1-β1^{2t}): a 19-fold reduction at β1 = 0.9, "
        "bought with a lag of about 1/(1-β1) steps.",
        scope=f"An open-loop Gaussian gradient stream (no objective), "
        f"{n_streams:,} independent streams per β1 through adambook.Adam "
        f"with lr = 0 for T = {steps} steps, β1 = "
        f"{', '.join(f'{x:g}' for x in b)}.",
        measured=f"Var(m_T)/σ² = {m[i] / sigma**2:.4f} at β1 = {b[i]:g} "
        f"(theory {p[i] / sigma**2:.4f}); largest deviation over the "
        f"{len(b)} β1: {worst:.2f} SE (bound z = {z:.2f})",
        section="sec-adam-noise",
    )


def _e(x):
    """A float as the book writes it: 1e-8, not 1e-08."""
    return f"{x:g}".replace("e-0", "e-").replace("e+0", "e+")


def judge_per_coordinate_steps(gap0, rounding0, gap_eps, budget_eps,
                               rounding_eps, eps, d, steps, decades):
    r"""Adam's step under coordinate rescaling, against eq-adam-scale.

    ``gap0``/``rounding0``: total difference of the two runs with
    :math:`\epsilon = 0` and its rounding bound :math:`8u` times the path.
    ``gap_eps``, ``budget_eps``, ``rounding_eps``: the same with
    :math:`\epsilon =` ``eps``, and the :math:`\epsilon` budget of
    eq-adam-scale. Holds when the first gap is rounding and the second within
    budget plus rounding; qualified when :math:`\epsilon` measurably enters.
    """
    exact = gap0 <= rounding0
    within_eps = gap_eps <= budget_eps + rounding_eps
    eps_matters = gap_eps > rounding_eps
    if exact and within_eps:
        verdict = "holds with a qualification" if eps_matters else "holds"
    else:
        verdict = "does not hold"
    return Verdict(
        key="per-coordinate-steps",
        claim="Dividing by the root of the squared-gradient average gives "
        "every coordinate its own step size, small where gradients are "
        "large.",
        verdict=verdict,
        proved="Multiplying coordinate i's gradients by c_i > 0 changes "
        "Adam's step only through ε/c_i; with ε = 0 the trajectory is "
        "unchanged to rounding. The qualification: where √v̂ is not large "
        "against ε/c_i, ε sets the step.",
        scope=f"An open-loop Gaussian gradient stream of d = {d} "
        f"coordinates, {steps} steps of adambook.functional.adam, with "
        f"each coordinate rescaled by c_i spread over ±{decades:g} decades.",
        measured=f"gap {gap0:.1e} with ε = 0 (rounding bound "
        f"{rounding0:.1e}); {gap_eps:.1e} with ε = {_e(eps)} (bound "
        f"{budget_eps + rounding_eps:.1e}) over {2 * decades:g} decades of c",
        section="sec-adam-scale",
    )
