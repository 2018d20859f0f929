r"""The arithmetic of one optimizer step, as functions on tensors.

The classes in :mod:`adambook.optim` own the bookkeeping (parameter groups,
lazy state, validation); the mathematics lives here, so that a chapter can
call the very same step on a tensor of its own, for example one row per
independent run.

A *readable* ``_single_tensor_*`` loop matches the post's equations line
for line; a *fast* ``_multi_tensor_*`` one (``torch._foreach_*``) must
agree with it. Adam, at step :math:`t`:

.. math::

    m_t &= \beta_1 m_{t-1} + (1-\beta_1)\, g_t \\
    v_t &= \beta_2 v_{t-1} + (1-\beta_2)\, g_t \odot g_t \\
    \hat m_t &= m_t / (1-\beta_1^t), \qquad \hat v_t = v_t / (1-\beta_2^t) \\
    \theta_t &= \theta_{t-1} - \eta\, \hat m_t / (\sqrt{\hat v_t} + \epsilon)

``weight_decay_mode``: ``"l2"`` adds :math:`\lambda\theta_{t-1}` to
:math:`g_t` (``torch.optim.Adam``), ``"l2_after_moments"`` to
:math:`\hat m_t` (the post's form), and ``"decoupled"`` first multiplies
:math:`\theta` by :math:`1-\eta\lambda` (``torch.optim.AdamW``).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence

import torch
from torch import Tensor

WEIGHT_DECAY_MODES = ("l2", "l2_after_moments", "decoupled")


def _bias_corrections(beta1: float, beta2: float, t: int,
                      enabled: bool) -> tuple[float, float]:
    r""":math:`(1-\beta_1^t, \sqrt{1-\beta_2^t})`, or ``(1, 1)``."""
    if not enabled:
        return 1.0, 1.0
    return 1 - beta1**t, math.sqrt(1 - beta2**t)


def adam(params: Sequence[Tensor], grads: Sequence[Tensor],
         exp_avgs: Sequence[Tensor], exp_avg_sqs: Sequence[Tensor],
         steps: Sequence[int], *, lr: float, beta1: float, beta2: float,
         eps: float, weight_decay: float = 0.0,
         weight_decay_mode: str = "l2", bias_correction: bool = True,
         amsgrad: bool = False,
         max_exp_avg_sqs: Sequence[Tensor] | None = None,
         foreach: bool = False) -> None:
    r"""Apply one Adam step in place to every tensor in ``params``.

    ``steps[i]`` is :math:`t \geq 1` of ``params[i]``, this step counted.
    ``exp_avgs``, ``exp_avg_sqs`` (:math:`m`, :math:`v`) are updated in
    place; with ``amsgrad=True`` the step divides by the root of
    ``max_exp_avg_sqs``, :math:`\max_{s\le t} v_s` (Reddi et al. 2018).
    Tensors may have any shape, e.g. one row per independent run.

    >>> import torch
    >>> p, g = torch.zeros(3), torch.tensor([1.0, -2.0, 0.5])
    >>> m, v = torch.zeros(3), torch.zeros(3)
    >>> adam([p], [g], [m], [v], [1], lr=0.1, beta1=0.9, beta2=0.999,
    ...      eps=0.0)
    >>> p  # the first bias-corrected step is -lr * sign(g)
    tensor([-0.1000,  0.1000, -0.1000])
    """
    if weight_decay_mode not in WEIGHT_DECAY_MODES:
        raise ValueError(f"Invalid weight_decay_mode: {weight_decay_mode!r}; "
                         f"expected one of {WEIGHT_DECAY_MODES}")
    if amsgrad and max_exp_avg_sqs is None:
        raise ValueError("amsgrad=True needs max_exp_avg_sqs")
    impl = _multi_tensor_adam if foreach else _single_tensor_adam
    impl(list(params), list(grads), list(exp_avgs), list(exp_avg_sqs),
         list(steps), list(max_exp_avg_sqs) if amsgrad else [], lr=lr,
         beta1=beta1, beta2=beta2, eps=eps, weight_decay=weight_decay,
         weight_decay_mode=weight_decay_mode,
         bias_correction=bias_correction, amsgrad=amsgrad)


def _single_tensor_adam(params, grads, exp_avgs, exp_avg_sqs, steps,
                        max_exp_avg_sqs, *, lr, beta1, beta2, eps,
                        weight_decay, weight_decay_mode, bias_correction,
                        amsgrad):
    """Readable Adam: one tensor at a time, one line per equation."""
    for i, (theta, g, m, v, t) in enumerate(
            zip(params, grads, exp_avgs, exp_avg_sqs, steps)):
        decay = weight_decay != 0

        if decay and weight_decay_mode == "decoupled":  # AdamW
            theta.mul_(1 - lr * weight_decay)  # θ ← (1 − ηλ) θ
        if decay and weight_decay_mode == "l2":  # Adam + L2
            g = g.add(theta, alpha=weight_decay)  # g_t ← g_t + λ θ

        # m_t = β1 m_{t-1} + (1 − β1) g_t   [= m + (1 − β1)(g − m)]
        m.lerp_(g, 1 - beta1)
        # v_t = β2 v_{t-1} + (1 − β2) g_t ⊙ g_t
        v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
        if amsgrad:  # v ← max_s v_s
            v = torch.maximum(max_exp_avg_sqs[i], v, out=max_exp_avg_sqs[i])

        bc1, bc2_sqrt = _bias_corrections(beta1, beta2, t, bias_correction)
        # √v̂_t + ε,  with v̂_t = v_t / (1 − β2^t)
        denom = (v.sqrt() / bc2_sqrt).add_(eps)

        if decay and weight_decay_mode == "l2_after_moments":  # post's L2
            # θ ← θ − η (m̂_t + λθ) / (√v̂_t + ε)
            theta.addcdiv_(m / bc1 + weight_decay * theta, denom, value=-lr)
        else:  # θ ← θ − η m̂_t / (√v̂_t + ε)
            theta.addcdiv_(m, denom, value=-lr / bc1)


def _group_by_device_and_dtype(*lists):
    """Split parallel tensor lists into groups of one device and dtype, as
    ``torch._foreach_*`` needs: ``[(indices, [sublist per list])]``."""
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, p in enumerate(lists[0]):
        groups[(p.device, p.dtype)].append(i)
    return [(idx, [[lst[i] for i in idx] if lst else [] for lst in lists])
            for idx in groups.values()]


def _multi_tensor_adam(params, grads, exp_avgs, exp_avg_sqs, steps,
                       max_exp_avg_sqs, *, lr, beta1, beta2, eps,
                       weight_decay, weight_decay_mode, bias_correction,
                       amsgrad):
    """Fast Adam: the readable one's operations, over lists of tensors."""
    if not params:
        return
    for idx, (theta, g, m, v, vmax) in _group_by_device_and_dtype(
            params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs):
        t = [steps[i] for i in idx]
        decay = weight_decay != 0
        if decay and weight_decay_mode == "decoupled":
            torch._foreach_mul_(theta, 1 - lr * weight_decay)
        if decay and weight_decay_mode == "l2":
            g = torch._foreach_add(g, theta, alpha=weight_decay)

        torch._foreach_lerp_(m, g, 1 - beta1)
        torch._foreach_mul_(v, beta2)
        torch._foreach_addcmul_(v, g, g, value=1 - beta2)
        del g
        if amsgrad:
            torch._foreach_maximum_(vmax, v)
            v = vmax

        corrections = [_bias_corrections(beta1, beta2, s, bias_correction)
                       for s in t]
        denom = torch._foreach_sqrt(v)
        torch._foreach_div_(denom, [c[1] for c in corrections])
        torch._foreach_add_(denom, eps)

        if decay and weight_decay_mode == "l2_after_moments":
            numer = torch._foreach_div(m, [c[0] for c in corrections])
            torch._foreach_add_(numer, theta, alpha=weight_decay)
            torch._foreach_addcdiv_(theta, numer, denom, value=-lr)
        else:
            torch._foreach_addcdiv_(theta, m, denom,
                                    [-lr / c[0] for c in corrections])


def sgd(params: Sequence[Tensor], grads: Sequence[Tensor],
        momentum_buffers: list[Tensor | None], *, lr: float,
        momentum: float = 0.0, weight_decay: float = 0.0,
        decoupled_weight_decay: bool = False, foreach: bool = False) -> None:
    r"""Apply one SGD step in place, in torch's conventions.

    .. math::

        g_t &\leftarrow g_t + \lambda\theta_{t-1} \quad\text{(L2)} \\
        b_t &= \mu\, b_{t-1} + g_t, \qquad b_1 = g_1 \quad\text{(if } \mu>0) \\
        \theta_t &= \theta_{t-1} - \eta\, b_t

    ``decoupled_weight_decay=True`` replaces the L2 line by
    :math:`\theta \leftarrow (1-\eta\lambda)\theta`. A ``None`` in
    ``momentum_buffers`` (before the first step) is filled in.
    """
    impl = _multi_tensor_sgd if foreach else _single_tensor_sgd
    impl(list(params), list(grads), momentum_buffers, lr=lr,
         momentum=momentum, weight_decay=weight_decay,
         decoupled_weight_decay=decoupled_weight_decay)


def _single_tensor_sgd(params, grads, bufs, *, lr, momentum, weight_decay,
                       decoupled_weight_decay):
    """Readable SGD: one tensor at a time."""
    for i, (theta, g) in enumerate(zip(params, grads)):
        if weight_decay != 0:
            if decoupled_weight_decay:
                theta.mul_(1 - lr * weight_decay)  # θ ← (1 − ηλ) θ
            else:
                g = g.add(theta, alpha=weight_decay)  # g_t ← g_t + λ θ
        if momentum != 0:
            if bufs[i] is None:
                bufs[i] = g.detach().clone()  # b_1 = g_1
            else:
                bufs[i].mul_(momentum).add_(g)  # b_t = μ b_{t-1} + g_t
            g = bufs[i]
        theta.add_(g, alpha=-lr)  # θ ← θ − η g


def _multi_tensor_sgd(params, grads, bufs, *, lr, momentum, weight_decay,
                      decoupled_weight_decay):
    """Fast SGD: the same operations over lists of tensors."""
    if not params:
        return
    for idx, (theta, g) in _group_by_device_and_dtype(params, grads):
        if weight_decay != 0:
            if decoupled_weight_decay:
                torch._foreach_mul_(theta, 1 - lr * weight_decay)
            else:
                g = torch._foreach_add(g, theta, alpha=weight_decay)
        if momentum != 0:
            old = [bufs[i] for i in idx if bufs[i] is not None]
            if old and len(old) == len(idx):
                torch._foreach_mul_(old, momentum)
                torch._foreach_add_(old, g)
            else:  # first step, or a mix of new and old buffers: one by one
                for k, i in enumerate(idx):
                    if bufs[i] is None:
                        bufs[i] = g[k].detach().clone()
                    else:
                        bufs[i].mul_(momentum).add_(g[k])
            g = [bufs[i] for i in idx]
        torch._foreach_add_(theta, g, alpha=-lr)
