r"""Optimizers as chains of small gradient transformations, in the style of optax.

An optimizer step turns a gradient into an update in several small stages. optax
(google-deepmind/optax) writes each stage as a *gradient transformation*, a pair of
functions ``init(params) -> state`` and ``update(updates, state, params) ->
(updates, state)``, and builds optimizers by chaining them. This module does the same
on torch tensors, so that the book can show where weight decay sits in each method:

.. math::

    \text{Adam + L2} &= \text{chain}(\text{add\_decayed\_weights}(\lambda),\;
        \text{scale\_by\_adam},\; \text{scale\_by\_learning\_rate}(\eta)) \\
    \text{AdamW} &= \text{chain}(\text{scale\_by\_adam},\;
        \text{add\_decayed\_weights}(\lambda),\; \text{scale\_by\_learning\_rate}(\eta))

The two chains hold the same three links; only the position of the decay differs.
Before ``scale_by_adam`` the decay :math:`\lambda\theta` enters the moments and is
divided by :math:`\sqrt{\hat v}+\epsilon`; after it, the decay bypasses them.

Parameters and updates are a tensor or a list of tensors. Hyperparameters may be
numbers or tensors that broadcast against each parameter, so that many runs with
different learning rates and decay strengths can be stacked as the rows of one
tensor. ``tests/test_transforms.py`` holds the chains equal to :class:`adambook.Adam`
and :class:`adambook.AdamW` to rounding.

>>> import torch
>>> opt = adamw(learning_rate=0.1, weight_decay=0.5)
>>> theta = torch.tensor([1.0, -2.0])
>>> state = opt.init(theta)
>>> updates, state = opt.update(torch.tensor([3.0, 0.5]), state, theta)
>>> apply_updates(theta, updates)  # -0.1 * (sign(g) + 0.5 * theta) at the first step
tensor([ 0.8500, -2.0000])
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import torch
from torch import Tensor

__all__ = [
    "GradientTransformation",
    "ScaleByAdamState",
    "chain",
    "scale_by_adam",
    "add_decayed_weights",
    "scale",
    "scale_by_learning_rate",
    "scale_by_schedule",
    "apply_updates",
    "adam",
    "adam_l2",
    "adamw",
    "adamw_paper",
]


class GradientTransformation(NamedTuple):
    """A pair of pure functions, as in optax.

    ``init(params) -> state`` builds the state; ``update(updates, state, params)
    -> (new_updates, new_state)`` transforms the incoming updates (at the start of a
    chain, the gradient). Neither modifies its arguments in place.
    """

    init: Callable[[Any], Any]
    update: Callable[..., tuple[Any, Any]]


def _map(fn, *trees):
    """Apply ``fn`` leaf by leaf to a tensor or to parallel lists of tensors."""
    if isinstance(trees[0], Tensor):
        return fn(*trees)
    return [fn(*leaves) for leaves in zip(*trees)]


def _value(h, count: int):
    """A hyperparameter's value at step ``count``: call it if it is a schedule."""
    return h(count) if callable(h) else h


def chain(*transforms: GradientTransformation) -> GradientTransformation:
    """Apply ``transforms`` one after the other; the state is the tuple of their states."""

    def init(params):
        return tuple(t.init(params) for t in transforms)

    def update(updates, state, params=None):
        new_state = []
        for t, s in zip(transforms, state):
            updates, s = t.update(updates, s, params)
            new_state.append(s)
        return updates, tuple(new_state)

    return GradientTransformation(init, update)


class ScaleByAdamState(NamedTuple):
    """``count`` (steps taken), ``mu`` (:math:`m`) and ``nu`` (:math:`v`)."""

    count: int
    mu: Any
    nu: Any


def scale_by_adam(
    b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8, bias_correction: bool = True
) -> GradientTransformation:
    r"""Adam's preconditioning: the update becomes :math:`\hat m_t/(\sqrt{\hat v_t}+\epsilon)`.

    .. math::

        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t, \quad
        v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2, \quad
        \text{out} = \frac{m_t/(1-\beta_1^t)}{\sqrt{v_t/(1-\beta_2^t)}+\epsilon}

    The learning rate and the sign are left to a later link.
    """

    def init(params):
        zeros = _map(torch.zeros_like, params)
        return ScaleByAdamState(0, zeros, _map(torch.zeros_like, params))

    def update(updates, state, params=None):
        t = state.count + 1
        mu = _map(lambda g, m: b1 * m + (1 - b1) * g, updates, state.mu)
        nu = _map(lambda g, v: b2 * v + (1 - b2) * g * g, updates, state.nu)
        c1 = 1 - b1**t if bias_correction else 1.0
        c2 = 1 - b2**t if bias_correction else 1.0
        out = _map(lambda m, v: (m / c1) / ((v / c2).sqrt() + eps), mu, nu)
        return out, ScaleByAdamState(t, mu, nu)

    return GradientTransformation(init, update)


def add_decayed_weights(weight_decay) -> GradientTransformation:
    r"""Add :math:`\lambda\theta` to the updates (``weight_decay`` may be a tensor or a
    schedule ``count -> value``).

    Placed first in a chain, this is L2 regularisation (the gradient of
    :math:`\frac\lambda2\lVert\theta\rVert^2`); placed after a preconditioner, it is
    decoupled weight decay.
    """

    def init(params):
        return 0

    def update(updates, count, params=None):
        if params is None:
            raise ValueError("add_decayed_weights needs the parameters")
        wd = _value(weight_decay, count)
        return _map(lambda u, p: u + wd * p, updates, params), count + 1

    return GradientTransformation(init, update)


def scale(step_size) -> GradientTransformation:
    """Multiply the updates by ``step_size`` (a number or a broadcastable tensor)."""

    def init(params):
        return None

    def update(updates, state, params=None):
        return _map(lambda u: step_size * u, updates), state

    return GradientTransformation(init, update)


def scale_by_schedule(schedule: Callable[[int], Any]) -> GradientTransformation:
    """Multiply the updates by ``schedule(count)``, ``count = 0, 1, ...``."""

    def init(params):
        return 0

    def update(updates, count, params=None):
        factor = schedule(count)
        return _map(lambda u: factor * u, updates), count + 1

    return GradientTransformation(init, update)


def scale_by_learning_rate(learning_rate, *, flip_sign: bool = True) -> GradientTransformation:
    """Multiply by :math:`-\\eta` (by :math:`+\\eta` with ``flip_sign=False``).

    ``learning_rate`` is a number, a broadcastable tensor, or a schedule
    ``count -> value``.
    """
    sign = -1.0 if flip_sign else 1.0
    if callable(learning_rate):
        return scale_by_schedule(lambda count: sign * learning_rate(count))
    return scale(sign * learning_rate)


def apply_updates(params, updates):
    """Return ``params + updates``, leaf by leaf (new tensors)."""
    return _map(lambda p, u: p + u, params, updates)


# ------------------------------------------------------------------ named chains


def adam(learning_rate, b1=0.9, b2=0.999, eps=1e-8) -> GradientTransformation:
    """Adam without weight decay."""
    return chain(scale_by_adam(b1, b2, eps), scale_by_learning_rate(learning_rate))


def adam_l2(learning_rate, weight_decay, b1=0.9, b2=0.999, eps=1e-8) -> GradientTransformation:
    """Adam with L2 regularisation, as ``torch.optim.Adam(weight_decay=...)``:
    the decay is added to the gradient *before* the moments."""
    return chain(
        add_decayed_weights(weight_decay),
        scale_by_adam(b1, b2, eps),
        scale_by_learning_rate(learning_rate),
    )


def adamw(learning_rate, weight_decay, b1=0.9, b2=0.999, eps=1e-8) -> GradientTransformation:
    r"""AdamW as ``torch.optim.AdamW``: the decay is added *after* the preconditioner,
    then multiplied by the learning rate, :math:`-\eta(\hat m/(\sqrt{\hat v}+\epsilon)
    + \lambda\theta)`."""
    return chain(
        scale_by_adam(b1, b2, eps),
        add_decayed_weights(weight_decay),
        scale_by_learning_rate(learning_rate),
    )


def adamw_paper(
    alpha, weight_decay, schedule: Callable[[int], Any] = lambda count: 1.0,
    b1=0.9, b2=0.999, eps=1e-8,
) -> GradientTransformation:
    r"""AdamW as Algorithm 2 of Loshchilov & Hutter (2019):
    :math:`\theta_t = \theta_{t-1} - \eta_t(\alpha\,\hat m_t/(\sqrt{\hat v_t}+\epsilon) +
    \lambda\theta_{t-1})`.

    The learning rate :math:`\alpha` scales Adam's step *before* the decay is added,
    so :math:`\lambda` is multiplied only by the schedule multiplier :math:`\eta_t`.
    torch's AdamW is this chain with :math:`\lambda_{\text{torch}} = \lambda/\alpha`.
    """
    return chain(
        scale_by_adam(b1, b2, eps),
        scale(alpha),
        add_decayed_weights(weight_decay),
        scale_by_learning_rate(schedule),
    )
