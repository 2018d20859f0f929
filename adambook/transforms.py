r"""Optimizers as chains of gradient transformations, in optax's style.

A *gradient transformation* is a pair of pure functions, ``init(params) ->
state`` and ``update(updates, state, params) -> (updates, state)``; an
optimizer is a chain of them. Adam + L2 is ``chain(add_decayed_weights(λ),
scale_by_adam(), scale_by_learning_rate(η))``; AdamW moves the decay link
after ``scale_by_adam``.

Parameters and updates are a tensor or a list of tensors. A hyperparameter is
a number, a tensor that broadcasts against each parameter (e.g. a column: one
value per row, many runs as the rows of one tensor), or, where stated, a
schedule ``count -> value``.

>>> import torch
>>> opt = adamw(learning_rate=0.1, weight_decay=0.5)
>>> theta = torch.tensor([1.0, -2.0])
>>> state = opt.init(theta)
>>> updates, state = opt.update(torch.tensor([3.0, 0.5]), state, theta)
>>> apply_updates(theta, updates)  # -0.1 (sign(g) + 0.5 theta) at step 1
tensor([ 0.8500, -2.0000])
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import torch
from torch import Tensor


class GradientTransformation(NamedTuple):
    """``init(params) -> state``, ``update(updates, state, params) ->
    (updates, state)``; neither modifies its arguments."""

    init: Callable[[Any], Any]
    update: Callable[..., tuple[Any, Any]]


def _map(fn, *trees):
    """``fn`` leaf by leaf, on a tensor or on parallel lists of them."""
    if isinstance(trees[0], Tensor):
        return fn(*trees)
    return [fn(*leaves) for leaves in zip(*trees)]


def chain(*transforms: GradientTransformation) -> GradientTransformation:
    """Apply ``transforms`` in order; the state is the tuple of theirs."""

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
    """Steps taken, :math:`m` and :math:`v`."""

    count: int
    mu: Any
    nu: Any


def scale_by_adam(b1=0.9, b2=0.999, eps=1e-8) -> GradientTransformation:
    r""":math:`g_t \mapsto \hat m_t/(\sqrt{\hat v_t}+\epsilon)`, with
    :math:`m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t`, :math:`v_t = \beta_2
    v_{t-1} + (1-\beta_2) g_t^2`, :math:`\hat m_t = m_t/(1-\beta_1^t)`,
    :math:`\hat v_t = v_t/(1-\beta_2^t)`; the operations of
    :func:`adambook.functional.adam`."""

    def init(params):
        return ScaleByAdamState(0, _map(torch.zeros_like, params),
                                _map(torch.zeros_like, params))

    def update(updates, state, params=None):
        t = state.count + 1
        c1, c2_sqrt = 1 - b1**t, math.sqrt(1 - b2**t)
        mu = _map(lambda g, m: torch.lerp(m, g, 1 - b1), updates, state.mu)
        nu = _map(lambda g, v: v.mul(b2).addcmul_(g, g, value=1 - b2),
                  updates, state.nu)
        out = _map(lambda m, v: (m / c1).div_(
            v.sqrt().div_(c2_sqrt).add_(eps)), mu, nu)
        return out, ScaleByAdamState(t, mu, nu)

    return GradientTransformation(init, update)


def add_decayed_weights(weight_decay) -> GradientTransformation:
    r"""Add :math:`\lambda\theta`: first in a chain, L2 regularisation (the
    gradient of :math:`\frac\lambda2\lVert\theta\rVert^2`); after a
    preconditioner, decoupled weight decay."""

    def add(u, p):
        if isinstance(weight_decay, Tensor):
            return torch.addcmul(u, weight_decay, p)
        return u.add(p, alpha=weight_decay)

    def update(updates, state, params=None):
        if params is None:
            raise ValueError("add_decayed_weights needs the parameters")
        return _map(add, updates, params), state

    return GradientTransformation(lambda params: None, update)


def scale(step_size) -> GradientTransformation:
    """Multiply the updates by ``step_size``."""
    return GradientTransformation(lambda params: None, lambda u, s, p=None: (
        _map(lambda x: step_size * x, u), s))


def scale_by_schedule(schedule) -> GradientTransformation:
    """Multiply the updates by ``schedule(count)``, ``count = 0, 1, ...``."""

    def update(updates, count, params=None):
        factor = schedule(count)
        return _map(lambda u: factor * u, updates), count + 1

    return GradientTransformation(lambda params: 0, update)


def scale_by_learning_rate(learning_rate, flip_sign=True
                           ) -> GradientTransformation:
    r"""Multiply by :math:`-\eta` (:math:`+\eta` with ``flip_sign=False``);
    ``learning_rate`` may be a schedule."""
    sign = -1.0 if flip_sign else 1.0
    if callable(learning_rate):
        return scale_by_schedule(lambda count: sign * learning_rate(count))
    return scale(sign * learning_rate)


def apply_updates(params, updates):
    """``params + updates``, leaf by leaf (new tensors)."""
    return _map(torch.add, params, updates)


def adam(learning_rate, b1=0.9, b2=0.999, eps=1e-8):
    """Adam without weight decay."""
    return chain(scale_by_adam(b1, b2, eps),
                 scale_by_learning_rate(learning_rate))


def adam_l2(learning_rate, weight_decay, b1=0.9, b2=0.999, eps=1e-8
            ) -> GradientTransformation:
    """``torch.optim.Adam(weight_decay=λ)``: the decay joins the gradient."""
    return chain(
        add_decayed_weights(weight_decay),
        scale_by_adam(b1, b2, eps),
        scale_by_learning_rate(learning_rate),
    )


def adamw(learning_rate, weight_decay, b1=0.9, b2=0.999, eps=1e-8
          ) -> GradientTransformation:
    r"""``torch.optim.AdamW``: :math:`-\eta(\hat m/(\sqrt{\hat v}+\epsilon)
    + \lambda\theta)`."""
    return chain(
        scale_by_adam(b1, b2, eps),
        add_decayed_weights(weight_decay),
        scale_by_learning_rate(learning_rate),
    )


def adam_decay(learning_rate, l2, decoupled, b1=0.9, b2=0.999, eps=1e-8
               ) -> GradientTransformation:
    r"""A decay link on each side of ``scale_by_adam``. A row whose
    ``decoupled`` is 0 is :func:`adam_l2` with λ = ``l2``, one whose ``l2``
    is 0 is :func:`adamw`, bit for bit (:math:`u + 0\cdot\theta = u` for
    finite θ), so one chain runs both methods' rows."""
    return chain(add_decayed_weights(l2), scale_by_adam(b1, b2, eps),
                 add_decayed_weights(decoupled),
                 scale_by_learning_rate(learning_rate))


def adamw_paper(alpha, weight_decay, schedule=lambda count: 1.0, b1=0.9,
                b2=0.999, eps=1e-8) -> GradientTransformation:
    r"""Algorithm 2 of Loshchilov & Hutter (2019), :math:`\theta_t =
    \theta_{t-1} - \eta_t(\alpha\,\hat m_t/(\sqrt{\hat v_t}+\epsilon) +
    \lambda\theta_{t-1})`, :math:`\eta_t` = ``schedule(t-1)``: torch's AdamW
    with :math:`\lambda_{\text{torch}} = \lambda/\alpha`."""
    return chain(scale_by_adam(b1, b2, eps), scale(alpha),
                 add_decayed_weights(weight_decay),
                 scale_by_learning_rate(schedule))
