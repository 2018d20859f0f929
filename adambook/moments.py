r"""The moments of Adam's moving averages: closed forms, Monte Carlo, ε forms.

From :math:`m_0 = v_0 = 0` the EMA weights sum to :math:`1-\beta^t`, so
:math:`\mathbb E[m_t] = (1-\beta_1^t)\mu` and
:math:`\mathbb E[v_t] = (1-\beta_2^t)\mathbb E[g^2]`. Closed forms (also
for drifting streams), a Monte Carlo through :func:`adambook.functional.adam`,
step sizes with and without the correction, and the "efficient" ε̂ form.
Explained in ``chapters/bias_correction``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from . import functional as F

U64 = torch.finfo(torch.float64).eps  # 2^-52: one unit in the last place of 1


def ema_mass(t, beta):
    r"""Weight :math:`\sum_{i=1}^t (1-\beta)\beta^{t-i} = 1-\beta^t` of a
    zero-started EMA, as ``-expm1(t log beta)``.

    >>> float(ema_mass(1, 0.9))
    0.09999999999999998
    """
    t, beta = np.asarray(t, dtype=float), np.asarray(beta, dtype=float)
    with np.errstate(divide="ignore"):  # beta = 0: log 0 = -inf, mass 1
        return -np.expm1(t * np.log(beta))


def ema_mean(t, beta, mean):
    r""":math:`\mathbb E[\text{EMA}_t] = (1-\beta^t)\,\mathbb E[x]` for inputs
    of constant mean (:math:`\mathbb E[m_t]`, or :math:`\mathbb E[v_t]` with
    ``mean`` :math:`=\mathbb E[g^2]`)."""
    return ema_mass(t, beta) * mean


def ema_variance(t, beta, variance):
    r""":math:`\operatorname{Var}(\text{EMA}_t) =
    \sigma^2\frac{1-\beta}{1+\beta}(1-\beta^{2t})` for independent inputs
    (the squared weights :math:`(1-\beta)^2\beta^{2k}` are geometric)."""
    t = np.asarray(t, dtype=float)
    return variance * (1 - beta) / (1 + beta) * ema_mass(2 * t, beta)


def corrected_variance(t, beta, variance):
    r""":math:`\operatorname{Var}(\hat m_t) =
    \operatorname{Var}(m_t)/(1-\beta^t)^2`: ``variance`` at :math:`t = 1`,
    falling to :math:`\sigma^2(1-\beta)/(1+\beta)`."""
    return ema_variance(t, beta, variance) / ema_mass(t, beta) ** 2


def gaussian_square_variance(mu, sigma):
    r""":math:`\operatorname{Var}(g^2) = 4\mu^2\sigma^2 + 2\sigma^4` for
    :math:`g \sim N(\mu, \sigma^2)`."""
    return 4 * mu**2 * sigma**2 + 2 * sigma**4


def ema_moments(means, variances, beta):
    r"""Exact ``(mean, variance)`` of a zero-started EMA of independent
    inputs of (possibly drifting) ``means[i]``, ``variances[i]`` at
    :math:`t=i+1`, by :math:`\mathbb E[e_t] = \beta\mathbb E[e_{t-1}]
    + (1-\beta)\mathbb E[x_t]` and the same with squared weights."""
    means = np.asarray(means, dtype=float)
    variances = np.broadcast_to(np.asarray(variances, float), means.shape)
    e_mean, e_var = np.empty_like(means), np.empty_like(means)
    m = s = 0.0
    for i, (a, b) in enumerate(zip(means, variances)):
        m = beta * m + (1 - beta) * a
        s = beta**2 * s + (1 - beta) ** 2 * b
        e_mean[i], e_var[i] = m, s
    return e_mean, e_var


def zeta(means, beta):
    r"""Kingma & Ba's residual
    :math:`\zeta_t = \mathbb E[e_t] - (1-\beta^t)\mathbb E[x_t]`.

    ``means[i]`` is :math:`\mathbb E[x_{i+1}]`; zero if stationary."""
    means = np.asarray(means, dtype=float)
    t = np.arange(1, len(means) + 1)
    e_mean = ema_moments(means, np.zeros_like(means), beta)[0]
    return e_mean - ema_mass(t, beta) * means


#: Columns of the per-step statistics that :func:`simulate_moments` returns.
STAT_NAMES = ("mean_m", "se_m", "var_m", "se_var_m", "mean_v", "se_v",
              "var_v", "se_var_v", "mean_m_hat", "se_m_hat", "mean_v_hat",
              "se_v_hat", "step_rel_err")


def _mean_var_se(x: Tensor) -> list[Tensor]:
    r"""Per row: mean, its standard error, unbiased variance, and its SE
    :math:`\sqrt{(\mu_4 - \frac{n-3}{n-1}\sigma^4)/n}` (any distribution)."""
    n = x.shape[-1]
    mean = x.mean(-1, keepdim=True)
    d2 = (x - mean).square_()
    var = d2.sum(-1) / (n - 1)
    m4 = d2.square_().mean(-1)
    se_var = ((m4 - (n - 3) / (n - 1) * var**2).clamp_min(0) / n).sqrt()
    return [mean.squeeze(-1), (var / n).sqrt(), var, se_var]


def simulate_moments(betas: Sequence[tuple[float, float]], n_streams: int,
                     steps: int, *, mu, sigma, eps: float, seed: int,
                     device, dtype=torch.float64) -> list[dict]:
    r"""Run ``n_streams`` independent Gaussian gradient streams through Adam.

    :math:`g_t = \mu_t + \sigma_t\xi`, :math:`\xi` from a CPU generator
    seeded with ``seed``; ``mu``, ``sigma``: numbers or arrays of length
    ``steps``. Each pair of ``betas`` steps its own streams with
    :func:`adambook.functional.adam` (``lr = 1``). Returns one dict per
    pair: :data:`STAT_NAMES` arrays over the streams per step (the last,
    the step's largest relative gap from
    :math:`\hat m_t/(\sqrt{\hat v_t}+\epsilon)`), ``t``, ``mu``, ``sigma``,
    ``beta1``, ``beta2``.
    """
    mu_t = np.broadcast_to(np.asarray(mu, dtype=float), (steps,))
    sigma_t = np.broadcast_to(np.asarray(sigma, dtype=float), (steps,))
    b1 = np.array([b[0] for b in betas], dtype=float)
    b2 = np.array([b[1] for b in betas], dtype=float)
    kw = dict(dtype=dtype, device=torch.device(device))
    gen = torch.Generator().manual_seed(seed)
    P = len(betas)
    theta, m, v = (torch.zeros(P, n_streams, **kw) for _ in range(3))
    xi = torch.empty(P, n_streams, dtype=dtype)  # on the CPU
    stats = torch.empty(steps, len(STAT_NAMES), P, **kw)
    for t in range(1, steps + 1):
        torch.randn(P, n_streams, generator=gen, out=xi, dtype=dtype)
        g = xi.to(kw["device"]).mul_(sigma_t[t - 1]).add_(mu_t[t - 1])
        theta.zero_()
        for k in range(P):
            F.adam([theta[k]], [g[k]], [m[k]], [v[k]], [t], lr=1.0,
                   beta1=b1[k], beta2=b2[k], eps=eps)
        c1 = torch.as_tensor(ema_mass(t, b1), **kw)  # 1 − β1^t, per pair
        c2 = torch.as_tensor(ema_mass(t, b2), **kw)
        sm, sv = _mean_var_se(m), _mean_var_se(v)
        step = (m / c1[:, None]) / (v / c2[:, None]).sqrt_().add_(eps)
        rel_err = (theta + step).abs_().div_(step.abs()).amax(-1)
        # m̂ = m/c1 is m scaled: its mean and SE are those of m, scaled
        stats[t - 1] = torch.stack(sm + sv + [sm[0] / c1, sm[1] / c1,
                                              sv[0] / c2, sv[1] / c2, rel_err])
    stats = stats.cpu().numpy()
    return [dict(zip(STAT_NAMES, stats[:, :, k].T.copy()),
                 t=np.arange(1, steps + 1), mu=mu_t.copy(),
                 sigma=sigma_t.copy(), beta1=float(b1[k]), beta2=float(b2[k]))
            for k in range(P)]


def step_tolerance(t, beta1, beta2, base=10):
    r"""Rounding bound on the relative gap between two computations of
    :math:`\hat m_t/(\sqrt{\hat v_t}+\epsilon)`:
    :math:`U(b + 2\beta_1^t/(1-\beta_1^t) + 2\beta_2^t/(1-\beta_2^t))`.

    ``base`` :math:`b`: the counted roundings; ``1 - beta**t`` magnifies
    the one-ulp error of ``pow`` by :math:`\beta^t/(1-\beta^t)`.
    """
    t = np.asarray(t, dtype=float)
    amp = lambda b: b**t / ema_mass(t, b)  # noqa: E731
    return U64 * (base + 2 * amp(beta1) + 2 * amp(beta2))


def first_step(grad, *, lr, beta1, beta2, eps, bias_correction=True):
    r"""Adam's first step :math:`\theta_1 - \theta_0` from
    :math:`m_0 = v_0 = 0`: :math:`-\eta\,g/(|g|+\epsilon)` with the
    correction, :math:`-\eta(1-\beta_1)g/(\sqrt{1-\beta_2}|g|+\epsilon)`
    without.

    >>> round(float(first_step(1.0, lr=1.0, beta1=0.9, beta2=0.999, eps=0.0,
    ...                        bias_correction=False)), 4)
    -3.1623
    """
    g = np.asarray(grad, dtype=float)
    if bias_correction:
        return -lr * g / (np.abs(g) + eps)
    return -lr * (1 - beta1) * g / (math.sqrt(1 - beta2) * np.abs(g) + eps)


def uncorrected_step_ratio(t, beta1, beta2):
    r"""Uncorrected over corrected step, constant gradient, :math:`\epsilon=0`:
    :math:`(1-\beta_1^t)/\sqrt{1-\beta_2^t}`."""
    return ema_mass(t, beta1) / np.sqrt(ema_mass(t, beta2))


def step_bound(t, beta1, beta2, bias_correction=True):
    r"""Largest :math:`|\text{step}_t|/\eta` of Adam, :math:`\epsilon = 0`,
    any gradients, :math:`\gamma = \beta_1^2/\beta_2<1`:
    :math:`|m_t|/\sqrt{v_t} \le \frac{1-\beta_1}{\sqrt{1-\beta_2}}
    \sqrt{(1-\gamma^t)/(1-\gamma)}` (Cauchy–Schwarz), times
    :math:`\sqrt{1-\beta_2^t}/(1-\beta_1^t)` if corrected.
    """
    gamma = beta1**2 / beta2
    if not gamma < 1:
        raise ValueError("the bound needs beta1**2 < beta2")
    t = np.asarray(t, dtype=float)
    bound = ((1 - beta1) / math.sqrt(1 - beta2)
             * np.sqrt(ema_mass(t, gamma) / (1 - gamma)))
    if bias_correction:
        bound = bound * np.sqrt(ema_mass(t, beta2)) / ema_mass(t, beta1)
    return bound


def effective_eps(t, beta2, eps_hat):
    r"""The Algorithm-1 :math:`\epsilon_t = \hat\epsilon/\sqrt{1-\beta_2^t}`
    that the efficient form with a constant ``eps_hat`` amounts to."""
    return eps_hat / np.sqrt(ema_mass(t, beta2))


def adam_eps_hat(params: Sequence[Tensor], grads: Sequence[Tensor],
                 exp_avgs: Sequence[Tensor], exp_avg_sqs: Sequence[Tensor],
                 steps: Sequence[int], *, lr: float, beta1: float,
                 beta2: float, eps_hat: float) -> None:
    r"""One Adam step in Kingma & Ba's "efficient" form, in place (Keras):
    :math:`\theta_t = \theta_{t-1} - \alpha_t m_t/(\sqrt{v_t}+\hat\epsilon)`,
    :math:`\alpha_t = \eta\sqrt{1-\beta_2^t}/(1-\beta_1^t)`; Algorithm 1's
    step with ``eps`` iff ``eps_hat = eps * sqrt(1-beta2**t)``.

    >>> p, g = torch.zeros(2), torch.tensor([1.0, -2.0])
    >>> m, v = torch.zeros(2), torch.zeros(2)
    >>> adam_eps_hat([p], [g], [m], [v], [1], lr=0.1, beta1=0.9, beta2=0.999,
    ...              eps_hat=0.0)
    >>> p
    tensor([-0.1000,  0.1000])
    """
    for theta, g, m, v, t in zip(params, grads, exp_avgs, exp_avg_sqs,
                                 steps):
        m.lerp_(g, 1 - beta1)  # m_t = β1 m_{t-1} + (1 − β1) g_t
        v.mul_(beta2).addcmul_(g, g, value=1 - beta2)  # v_t, likewise
        alpha_t = lr * math.sqrt(1 - beta2**t) / (1 - beta1**t)
        theta.addcdiv_(m, v.sqrt().add_(eps_hat), value=-alpha_t)
