r"""Measurement helpers: standard errors, z-bounds, fitted slopes.

Every tolerance in the book is one of three kinds: float rounding, a
standard error times a stated z-bound, or a theoretical bound. This module
supplies the second kind.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np


def z_bound(alpha: float = 1e-3, n_tests: int = 1) -> float:
    r"""Two-sided normal quantile for a family-wise false-alarm rate ``alpha``.

    Šidák: each of ``n_tests`` gets the level :math:`1-(1-\alpha)^{1/n}`
    (conservative for dependent two-sided tests).

    >>> round(z_bound(0.05), 3)
    1.96
    """
    if not 0 < alpha < 1 or n_tests < 1:
        raise ValueError("need 0 < alpha < 1 and n_tests >= 1")
    per_test = -math.expm1(math.log1p(-alpha) / n_tests)  # 1-(1-alpha)^(1/n)
    return NormalDist().inv_cdf(1 - per_test / 2)


def mean_se(x, axis: int = 0):
    """Sample mean and its standard error along ``axis``."""
    x = np.asarray(x, dtype=float)
    n = x.shape[axis]
    return x.mean(axis), x.std(axis, ddof=1) / math.sqrt(n)


def variance_se(x, axis: int = 0):
    r"""Unbiased sample variance and its standard error along ``axis``.

    :math:`\operatorname{Var}(s^2) = \frac{1}{n}(\mu_4 - \frac{n-3}{n-1}
    \sigma^4)`, with the sample fourth central moment: any distribution.
    """
    x = np.asarray(x, dtype=float)
    n = x.shape[axis]
    d = x - x.mean(axis, keepdims=True)
    s2 = (d**2).sum(axis) / (n - 1)
    m4 = (d**4).mean(axis)
    return s2, np.sqrt(np.maximum(m4 - (n - 3) / (n - 1) * s2**2, 0.0) / n)


def linear_fit(x, y):
    """Least-squares line ``y ≈ a + b x``: ``(b, a, se_b)``, slope first,
    ``se_b`` from the residual variance."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    A = np.stack([np.ones_like(x), x], axis=1)
    coef, *_ = np.linalg.lstsq(A, y, rcond=None)
    resid = y - A @ coef
    dof = len(x) - 2
    s2 = (resid @ resid) / dof if dof > 0 else float("nan")
    se_b = math.sqrt(s2 / ((x - x.mean()) ** 2).sum())
    return float(coef[1]), float(coef[0]), se_b


def equivalent(estimate, se, margin: float, z: float):
    r"""Two one-sided tests: is the true value within ``±margin`` of zero?

    True where :math:`\hat d \pm z\,\mathrm{se}` lies inside
    :math:`(-\delta, \delta)`: "no difference" at the level of ``z``.

    >>> bool(equivalent(0.01, 0.01, 0.05, z=3.0))
    True
    >>> bool(equivalent(0.01, 0.02, 0.05, 3.0))
    False
    """
    estimate, se = np.asarray(estimate, float), np.asarray(se, float)
    return np.abs(estimate) + z * se < margin


def equivalence_power(se, margin: float, z: float, true: float = 0.0):
    r"""Probability that :func:`equivalent` says "within the margin" when
    the true value is ``true`` and the estimate is normal with SE ``se``:
    :math:`\Phi((\delta - z\,\mathrm{se} - t)/\mathrm{se}) - \Phi((-\delta
    + z\,\mathrm{se} - t)/\mathrm{se})`, or zero.

    >>> round(float(equivalence_power(0.01, 0.05, 3.0)), 3)
    0.954
    """
    se = np.asarray(se, float)
    cdf = np.vectorize(NormalDist().cdf)
    hi = (margin - z * se - true) / se
    lo = (-margin + z * se - true) / se
    return np.where(hi > lo, cdf(hi) - cdf(lo), 0.0)


def t_bound(alpha: float, n_tests: int, dof: int) -> float:
    r"""Student-t version of :func:`z_bound` for a mean over ``dof + 1``
    samples: the two-sided quantile of Student's t with ``dof`` degrees of
    freedom at the Šidák level of :func:`z_bound`.

    Cornish–Fisher expansion (Abramowitz & Stegun 26.7.5),
    :math:`t = z + g_1/\nu + g_2/\nu^2 + g_3/\nu^3`; error below
    :math:`10^{-3}` for :math:`\nu \ge 15`, :math:`z \le 4.5`.

    >>> round(t_bound(0.05, 1, 30), 3)  # tables: t(0.975, 30) = 2.042
    2.042
    >>> t_bound(0.05, 1, 30) > z_bound(0.05)
    True
    """
    z, v = z_bound(alpha, n_tests), float(dof)
    g1 = (z**3 + z) / 4
    g2 = (5 * z**5 + 16 * z**3 + 3 * z) / 96
    g3 = (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384
    return z + g1 / v + g2 / v**2 + g3 / v**3
