r"""The moments of Adam's moving averages: closed forms, Monte Carlo, and the ε forms.

Adam starts its averages at zero, :math:`m_0 = v_0 = 0`, and unrolls to

.. math::

    m_t = (1-\beta_1)\sum_{i=1}^{t} \beta_1^{t-i} g_i, \qquad
    v_t = (1-\beta_2)\sum_{i=1}^{t} \beta_2^{t-i} g_i \odot g_i .

The weights :math:`(1-\beta)\beta^{t-i}` sum to :math:`1-\beta^t`, not to one. So
for gradients with a constant mean :math:`\mu` and second moment :math:`s`,

.. math::

    \mathbb E[m_t] = (1-\beta_1^t)\,\mu, \qquad \mathbb E[v_t] = (1-\beta_2^t)\,s,

and for independent gradients of variance :math:`\sigma^2`

.. math::

    \operatorname{Var}(m_t) = \sigma^2\,\frac{1-\beta_1}{1+\beta_1}\,(1-\beta_1^{2t}).

This module holds those closed forms, their versions for streams whose distribution
changes over time (the residual :math:`\zeta` of Kingma & Ba), a vectorised Monte
Carlo that runs many independent gradient streams through
:func:`adambook.functional.adam` and keeps per-step statistics only, the size of
Adam's steps with and without the correction, and Kingma & Ba's "efficient" form of
the step, which adds :math:`\hat\epsilon` to :math:`\sqrt{v_t}` instead of
:math:`\epsilon` to :math:`\sqrt{\hat v_t}`.

The chapter that uses it is ``chapters/bias_correction.ipynb``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from . import functional as F

__all__ = [
    "ema_mass",
    "ema_mean",
    "ema_variance",
    "corrected_variance",
    "gaussian_square_variance",
    "ema_moments",
    "zeta",
    "simulate_moments",
    "first_step",
    "uncorrected_step_ratio",
    "step_bound",
    "effective_eps",
    "adam_eps_hat",
]


# ------------------------------------------------------------------- closed forms


def ema_mass(t, beta):
    r"""Total weight :math:`\sum_{i=1}^t (1-\beta)\beta^{t-i} = 1-\beta^t` of a zero-started EMA.

    Works elementwise on arrays of ``t >= 1`` and ``beta``. Computed as
    ``-expm1(t log beta)``, which stays accurate when :math:`\beta^t` is close to one.

    >>> float(ema_mass(1, 0.9))
    0.09999999999999998
    """
    t, beta = np.asarray(t, dtype=float), np.asarray(beta, dtype=float)
    with np.errstate(divide="ignore"):  # beta = 0: log 0 = -inf, and the mass is 1
        return -np.expm1(t * np.log(beta))


def ema_mean(t, beta, mean):
    r""":math:`\mathbb E[\text{EMA}_t] = (1-\beta^t)\,\mathbb E[x]` for inputs of constant mean.

    With ``mean`` :math:`=\mu` this is :math:`\mathbb E[m_t]`; with ``mean``
    :math:`=\mathbb E[g^2]` and ``beta`` :math:`=\beta_2` it is :math:`\mathbb E[v_t]`.
    """
    return ema_mass(t, beta) * mean


def ema_variance(t, beta, variance):
    r""":math:`\operatorname{Var}(\text{EMA}_t) = \sigma^2 \frac{1-\beta}{1+\beta}(1-\beta^{2t})`.

    For independent inputs of variance ``variance``. The sum of the squared weights is
    :math:`(1-\beta)^2 \sum_{k=0}^{t-1}\beta^{2k}`, a geometric series.
    """
    t = np.asarray(t, dtype=float)
    return variance * (1 - beta) / (1 + beta) * ema_mass(2 * t, beta)


def corrected_variance(t, beta, variance):
    r""":math:`\operatorname{Var}(\hat m_t) = \operatorname{Var}(m_t)/(1-\beta^t)^2`.

    Equals ``variance`` at :math:`t = 1` (then :math:`\hat m_1 = g_1`) and falls to the
    stationary :math:`\sigma^2(1-\beta)/(1+\beta)`.
    """
    return ema_variance(t, beta, variance) / ema_mass(t, beta) ** 2


def gaussian_square_variance(mu, sigma):
    r""":math:`\operatorname{Var}(g^2) = 4\mu^2\sigma^2 + 2\sigma^4` for
    :math:`g \sim N(\mu, \sigma^2)`."""
    return 4 * mu**2 * sigma**2 + 2 * sigma**4


def ema_moments(means, variances, beta):
    r"""Exact mean and variance of a zero-started EMA of independent inputs, step by step.

    ``means[i]`` and ``variances[i]`` describe the input at step :math:`t = i+1`; they
    may change with :math:`t` (a drifting stream). By linearity and independence,

    .. math::

        \mathbb E[e_t] = \beta\,\mathbb E[e_{t-1}] + (1-\beta)\,\mathbb E[x_t], \qquad
        \operatorname{Var}(e_t) = \beta^2 \operatorname{Var}(e_{t-1})
                                 + (1-\beta)^2 \operatorname{Var}(x_t).

    Returns ``(mean, variance)`` as arrays of the same length. For constant inputs
    they equal :func:`ema_mean` and :func:`ema_variance`.
    """
    means = np.asarray(means, dtype=float)
    variances = np.broadcast_to(np.asarray(variances, dtype=float), means.shape)
    e_mean, e_var = np.empty_like(means), np.empty_like(means)
    m = s = 0.0
    for i, (a, b) in enumerate(zip(means, variances)):
        m = beta * m + (1 - beta) * a
        s = beta**2 * s + (1 - beta) ** 2 * b
        e_mean[i], e_var[i] = m, s
    return e_mean, e_var


def zeta(means, beta):
    r"""Kingma & Ba's residual :math:`\zeta_t = \mathbb E[e_t] - (1-\beta^t)\,\mathbb E[x_t]`.

    ``means[i]`` is :math:`\mathbb E[x_{i+1}]` (for :math:`v_t`, the second moment
    :math:`\mathbb E[g_t^2]`). It is zero for a stationary stream; otherwise the bias
    left in the corrected estimate is :math:`\zeta_t/(1-\beta^t)`.
    """
    means = np.asarray(means, dtype=float)
    t = np.arange(1, len(means) + 1)
    return ema_moments(means, np.zeros_like(means), beta)[0] - ema_mass(t, beta) * means


# -------------------------------------------------------------------- Monte Carlo

#: Columns of the per-step statistics that :func:`simulate_moments` returns.
STAT_NAMES = (
    "mean_m", "se_m", "var_m", "se_var_m",
    "mean_v", "se_v", "var_v", "se_var_v",
    "mean_m_hat", "se_m_hat", "mean_v_hat", "se_v_hat",
    "step_rel_err",
)


def _mean_var_se(x: Tensor) -> list[Tensor]:
    r"""Per row of ``x``: mean, its standard error, unbiased variance and its standard error.

    The standard error of the variance uses the sample fourth central moment,
    :math:`\operatorname{Var}(s^2) = (\mu_4 - \frac{n-3}{n-1}\sigma^4)/n`, as
    :func:`adambook.stats.variance_se` does, so it holds for any distribution.
    """
    n = x.shape[-1]
    mean = x.mean(-1, keepdim=True)
    d2 = (x - mean).square_()
    var = d2.sum(-1) / (n - 1)
    m4 = d2.square_().mean(-1)
    se_var = ((m4 - (n - 3) / (n - 1) * var**2).clamp_min(0) / n).sqrt()
    return [mean.squeeze(-1), (var / n).sqrt(), var, se_var]


def simulate_moments(
    betas: Sequence[tuple[float, float]],
    n_streams: int,
    steps: int,
    mu=0.3,
    sigma=2.0,
    eps: float = 1e-8,
    seed: int = 0,
    device="cpu",
) -> list[dict]:
    r"""Run ``n_streams`` independent Gaussian gradient streams through Adam's step.

    At step :math:`t` every stream receives :math:`g_t = \mu_t + \sigma_t\xi`, with
    :math:`\xi \sim N(0, 1)` independent across streams and steps; ``mu`` and
    ``sigma`` are numbers or sequences of length ``steps`` (a drifting stream). Each
    pair :math:`(\beta_1, \beta_2)` in ``betas`` gets its own independent streams, so
    that tests of different pairs are independent too. The moving averages are those
    of :func:`adambook.functional.adam` itself: the streams are the entries of one
    float64 vector per pair, stepped with ``lr = 1`` from :math:`\theta = 0`, so that
    :math:`-\theta` after the step is the step.

    Nothing is stored per stream across steps. At each :math:`t` the function keeps,
    over the streams, the sample mean of :math:`m_t, v_t, \hat m_t, \hat v_t` with its
    standard error, the sample variance of :math:`m_t, v_t` with its standard error,
    and the largest relative difference between the package's step and
    :math:`\hat m_t/(\sqrt{\hat v_t}+\epsilon)` computed here from
    :math:`\hat m_t = m_t/(1-\beta_1^t)`, :math:`\hat v_t = v_t/(1-\beta_2^t)`.

    Returns one dict per pair, of numpy arrays of length ``steps`` named as in
    :data:`STAT_NAMES`, plus ``t``, ``mu``, ``sigma`` (per step), ``beta1``,
    ``beta2``, ``n_streams`` and ``eps``.
    """
    mu_t = np.broadcast_to(np.asarray(mu, dtype=float), (steps,)).copy()
    sigma_t = np.broadcast_to(np.asarray(sigma, dtype=float), (steps,)).copy()
    b1 = np.array([b[0] for b in betas], dtype=float)
    b2 = np.array([b[1] for b in betas], dtype=float)
    dev = torch.device(device)
    kw = dict(dtype=torch.float64, device=dev)
    gen = torch.Generator(device=dev).manual_seed(seed)
    P = len(betas)
    theta, m, v = (torch.zeros(P, n_streams, **kw) for _ in range(3))
    g = torch.empty(P, n_streams, **kw)
    stats = torch.empty(steps, len(STAT_NAMES), P, **kw)
    for t in range(1, steps + 1):
        torch.randn(P, n_streams, generator=gen, out=g, **kw)
        g.mul_(sigma_t[t - 1]).add_(mu_t[t - 1])
        theta.zero_()
        for k in range(P):
            F.adam([theta[k]], [g[k]], [m[k]], [v[k]], [t], lr=1.0,
                   beta1=b1[k], beta2=b2[k], eps=eps)
        c1 = torch.as_tensor(ema_mass(t, b1), **kw).unsqueeze(1)  # 1 − β1^t, per pair
        c2 = torch.as_tensor(ema_mass(t, b2), **kw).unsqueeze(1)
        m_hat, v_hat = m / c1, v / c2
        step = m_hat / v_hat.sqrt().add_(eps)
        rel_err = (theta + step).abs_().div_(step.abs()).amax(-1)
        stats[t - 1] = torch.stack(
            _mean_var_se(m) + _mean_var_se(v)
            + _mean_var_se(m_hat)[:2] + _mean_var_se(v_hat)[:2] + [rel_err]
        )
    stats = stats.cpu().numpy()
    out = []
    for k in range(P):
        r = dict(zip(STAT_NAMES, stats[:, :, k].T.copy()))
        r.update(
            t=np.arange(1, steps + 1), mu=mu_t, sigma=sigma_t,
            beta1=float(b1[k]), beta2=float(b2[k]), n_streams=n_streams, eps=eps,
        )
        out.append(r)
    return out


# ------------------------------------------------------------------ step sizes


def first_step(grad, *, lr, beta1, beta2, eps, bias_correction=True):
    r"""Adam's first step :math:`\theta_1 - \theta_0` from :math:`m_0 = v_0 = 0`, in closed form.

    :math:`m_1 = (1-\beta_1)g` and :math:`v_1 = (1-\beta_2)g^2`, so with the correction
    the step is :math:`-\eta\, g/(|g|+\epsilon)` (about :math:`\eta` per coordinate),
    and without it

    .. math::

        -\eta\,\frac{(1-\beta_1)\,g}{\sqrt{1-\beta_2}\,|g| + \epsilon}
        \approx -\eta\,\frac{1-\beta_1}{\sqrt{1-\beta_2}}\,\operatorname{sign}(g).

    >>> round(float(first_step(1.0, lr=1.0, beta1=0.9, beta2=0.999, eps=0.0,
    ...                        bias_correction=False)), 4)
    -3.1623
    """
    g = np.asarray(grad, dtype=float)
    if bias_correction:
        return -lr * g / (np.abs(g) + eps)
    return -lr * (1 - beta1) * g / (math.sqrt(1 - beta2) * np.abs(g) + eps)


def uncorrected_step_ratio(t, beta1, beta2):
    r"""Step of uncorrected Adam over the corrected one for a constant gradient, :math:`\epsilon=0`.

    With :math:`g_t = g` for all :math:`t`, :math:`m_t = (1-\beta_1^t)g` and
    :math:`v_t = (1-\beta_2^t)g^2`, so the uncorrected step is
    :math:`\eta\,(1-\beta_1^t)/\sqrt{1-\beta_2^t}` while the corrected one is
    :math:`\eta`. At :math:`t = 1` it is :math:`(1-\beta_1)/\sqrt{1-\beta_2}`.
    """
    return ema_mass(t, beta1) / np.sqrt(ema_mass(t, beta2))


def step_bound(t, beta1, beta2, bias_correction=True):
    r"""Largest :math:`|\text{step}_t|/\eta` of Adam with :math:`\epsilon = 0`, for any gradients.

    By Cauchy–Schwarz on the unrolled sums, with :math:`\gamma = \beta_1^2/\beta_2 < 1`,

    .. math::

        \frac{|m_t|}{\sqrt{v_t}} \le \frac{1-\beta_1}{\sqrt{1-\beta_2}}
            \sqrt{\frac{1-\gamma^t}{1-\gamma}},

    with equality for gradients :math:`g_{t-k} \propto (\beta_1/\beta_2)^k`. The
    corrected step multiplies this by :math:`\sqrt{1-\beta_2^t}/(1-\beta_1^t)`. A
    positive :math:`\epsilon` only makes the step smaller.
    """
    gamma = beta1**2 / beta2
    if not gamma < 1:
        raise ValueError("the bound needs beta1**2 < beta2")
    t = np.asarray(t, dtype=float)
    bound = (1 - beta1) / math.sqrt(1 - beta2) * np.sqrt(ema_mass(t, gamma) / (1 - gamma))
    if bias_correction:
        bound = bound * np.sqrt(ema_mass(t, beta2)) / ema_mass(t, beta1)
    return bound


# ------------------------------------------------------------- the two ε forms


def effective_eps(t, beta2, eps_hat):
    r"""The Algorithm-1 :math:`\epsilon` that the efficient form with ``eps_hat`` amounts to.

    The efficient step :math:`\eta\frac{\sqrt{1-\beta_2^t}}{1-\beta_1^t}\,
    \frac{m_t}{\sqrt{v_t}+\hat\epsilon}` equals
    :math:`\eta\,\frac{\hat m_t}{\sqrt{\hat v_t} + \hat\epsilon/\sqrt{1-\beta_2^t}}`,
    so a constant :math:`\hat\epsilon` acts as :math:`\epsilon_t = \hat\epsilon/\sqrt{1-\beta_2^t}`,
    :math:`1/\sqrt{1-\beta_2} \approx 31.6` times :math:`\hat\epsilon` at the first step
    for :math:`\beta_2 = 0.999`, and :math:`\hat\epsilon` once :math:`\beta_2^t \ll 1`.
    """
    return eps_hat / np.sqrt(ema_mass(t, beta2))


def adam_eps_hat(
    params: Sequence[Tensor],
    grads: Sequence[Tensor],
    exp_avgs: Sequence[Tensor],
    exp_avg_sqs: Sequence[Tensor],
    steps: Sequence[int],
    *,
    lr: float,
    beta1: float,
    beta2: float,
    eps_hat: float,
) -> None:
    r"""One Adam step in Kingma & Ba's "efficient" form, in place (Keras and TensorFlow use it).

    .. math::

        \alpha_t = \eta\,\frac{\sqrt{1-\beta_2^t}}{1-\beta_1^t}, \qquad
        \theta_t = \theta_{t-1} - \alpha_t\,\frac{m_t}{\sqrt{v_t} + \hat\epsilon}.

    The moments are updated exactly as in :func:`adambook.functional.adam`. The step
    equals Algorithm 1's (``functional.adam`` with ``eps``) when
    ``eps_hat = eps * sqrt(1 - beta2**t)``, and not otherwise (:func:`effective_eps`).

    >>> p, g = torch.zeros(2), torch.tensor([1.0, -2.0])
    >>> m, v = torch.zeros(2), torch.zeros(2)
    >>> adam_eps_hat([p], [g], [m], [v], [1], lr=0.1, beta1=0.9, beta2=0.999, eps_hat=0.0)
    >>> p
    tensor([-0.1000,  0.1000])
    """
    for theta, g, m, v, t in zip(params, grads, exp_avgs, exp_avg_sqs, steps):
        m.lerp_(g, 1 - beta1)  # m_t = β1 m_{t-1} + (1 − β1) g_t
        v.mul_(beta2).addcmul_(g, g, value=1 - beta2)  # v_t = β2 v_{t-1} + (1 − β2) g_t²
        alpha_t = lr * math.sqrt(1 - beta2**t) / (1 - beta1**t)  # corrections in the step size
        theta.addcdiv_(m, v.sqrt().add_(eps_hat), value=-alpha_t)  # θ ← θ − α_t m_t/(√v_t + ε̂)
