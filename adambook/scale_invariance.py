r"""Scale-invariant weights: angular updates and their equilibria.

A weight group :math:`w` feeding a normalization layer is *scale-invariant*:
:math:`L(cw) = L(w)` for :math:`c > 0`. Its direction :math:`w/\lVert w\rVert`
is all the loss sees, so what matters is the angle it turns per step, the
*angular update*. Used by ``chapters/normalization``, which derives each
formula below.
"""

from __future__ import annotations

import math

import torch


def angles(before, after):
    r"""Angle :math:`\angle(w_t, w_{t+1})` per row, in radians.

    ``before``, ``after``: ``(..., n)``; by ``atan2``, accurate for tiny
    angles too.

    >>> a = torch.tensor([[1.0, 0.0]]); b = torch.tensor([[1.0, 1.0]])
    >>> round(angles(a, b).item(), 6) == round(math.pi / 4, 6)
    True
    """
    unit = before / before.norm(dim=-1, keepdim=True)
    along = (after * unit).sum(-1, keepdim=True)
    return torch.atan2((after - along * unit).norm(dim=-1), along[..., 0])


def sgd_angular_update(lr, wd, momentum=0.0):
    r"""Equilibrium RMS angular update of SGD (L2 decay, torch momentum).

    :math:`\sqrt{2\eta\lambda/(1+\mu)}`; for :math:`\mu = 0` the exact
    :math:`\tan\theta = \sqrt{\eta\lambda(2-\eta\lambda)}/(1-\eta\lambda)`.
    """
    if momentum == 0:
        return math.atan(math.sqrt(lr * wd * (2 - lr * wd)) / (1 - lr * wd))
    return math.sqrt(2 * lr * wd / (1 + momentum))


def adamw_angular_update(lr, wd, beta1):
    r"""AdamW's equilibrium RMS angular update,
    :math:`\sqrt{2\eta\lambda\,(1-\beta_1)/(1+\beta_1)}`, for every group."""
    return math.sqrt(2 * lr * wd * (1 - beta1) / (1 + beta1))


def adam_l2_effective_decay(w, v_hat, wd, eps):
    r"""Radial decay rate of L2 through Adam's preconditioner, per row:
    :math:`\lambda_{\mathrm{eff}} = \lambda\sum_i w_i^2/(\sqrt{\hat v_i} +
    \epsilon)\,/\sum_i w_i^2`. ``w``, ``v_hat``: ``(..., n)``."""
    w2 = w.square()
    return wd * (w2 / (v_hat.sqrt() + eps)).sum(-1) / w2.sum(-1)


def paired_log_ratio(a, b):
    r"""Mean and standard error over seeds of :math:`\log(a/b)`, paired
    by seed (``a``, ``b``: one value per seed)."""
    d = torch.as_tensor(a).log() - torch.as_tensor(b).log()
    return d.mean().item(), d.std().item() / math.sqrt(d.numel())


def different(diff, se, margin, z):
    r"""A difference beyond the margin shown: :math:`|d| - z\,se > m`
    (the counterpart of :func:`adambook.stats.equivalent`)."""
    return bool(abs(diff) - z * se > margin)
