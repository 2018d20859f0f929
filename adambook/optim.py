r"""SGD, Adam and AdamW as ``torch.optim.Optimizer`` subclasses.

Signatures and defaults follow ``torch.optim`` so that habits carry over, and
so do the error messages (``Invalid learning rate: -1.0``). The arithmetic of
a step is in :mod:`adambook.functional`; these classes validate
hyperparameters, keep the state and hand lists of tensors to it.

Unusual input: a sparse gradient raises ``RuntimeError``, a complex
parameter ``TypeError`` (the post's equations are for real numbers), every
parameter group is validated, NaN and infinity refused; a parameter whose
``.grad`` is ``None`` is skipped and gets no state.
"""

from __future__ import annotations

import math
import numbers

import torch
from torch.optim import Optimizer

from . import functional as F


def _check_finite_nonneg(value, message: str) -> None:
    """Raise ``ValueError(message)`` unless ``0 <= value < inf``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{message} (expected a real number, got "
                        f"{type(value).__name__})")
    if not 0.0 <= value < math.inf:
        raise ValueError(message)


class _ValidatedOptimizer(Optimizer):
    """An Optimizer that validates every parameter group as it is added
    (torch.optim checks only the constructor's defaults)."""

    def _validate_group(self, group: dict) -> None:
        """torch.optim's checks, in its order and wording."""
        _check_finite_nonneg(group["lr"],
                             f"Invalid learning rate: {group['lr']}")
        if "eps" in group:
            _check_finite_nonneg(group["eps"],
                                 f"Invalid epsilon value: {group['eps']}")
        if "momentum" in group:
            _check_finite_nonneg(
                group["momentum"],
                f"Invalid momentum value: {group['momentum']}")
        if "betas" in group:
            _check_betas(group)
        _check_finite_nonneg(
            group["weight_decay"],
            f"Invalid weight_decay value: {group['weight_decay']}")
        _check_params_are_real(group, type(self).__name__)

    def add_param_group(self, param_group: dict) -> None:
        super().add_param_group(param_group)
        try:
            self._validate_group(self.param_groups[-1])
        except Exception:
            self.param_groups.pop()
            raise

    #: torch.optim options that adambook does not implement; a checkpoint
    #: that turns one on would otherwise be followed with the option off.
    _UNSUPPORTED = {"maximize": False, "capturable": False,
                    "differentiable": False, "fused": None,
                    "nesterov": False, "dampening": 0}

    def __setstate__(self, state: dict) -> None:
        # load_state_dict: take keys a torch.optim checkpoint lacks from
        # the defaults; refuse options this class would silently ignore.
        super().__setstate__(state)
        for group in self.param_groups:
            for key, off in self._UNSUPPORTED.items():
                if group.get(key, off) not in (off, False, None, 0):
                    raise ValueError(
                        f"adambook.{type(self).__name__} does not "
                        f"implement {key}={group[key]!r}")
            for key, value in getattr(self, "defaults", {}).items():
                group.setdefault(key, value)
            if "betas" in group:
                group["betas"] = tuple(float(b) for b in group["betas"])


def _evaluate(closure):
    """The loss from ``closure`` with autograd on, or None."""
    if closure is None:
        return None
    with torch.enable_grad():
        return closure()


def _check_betas(group: dict) -> None:
    """Check ``group["betas"]`` is a pair in [0, 1); store it as floats."""
    betas = group["betas"]
    if len(betas) != 2:
        raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
    for i, beta in enumerate(betas):
        _check_finite_nonneg(beta, f"Invalid beta parameter at index {i}: "
                             f"{beta}")
        if not beta < 1.0:
            raise ValueError(f"Invalid beta parameter at index {i}: {beta}")
    group["betas"] = (float(betas[0]), float(betas[1]))


def _check_params_are_real(group: dict, name: str) -> None:
    for p in group["params"]:
        if torch.is_complex(p):
            raise TypeError(
                f"adambook.{name} does not support complex parameters (got "
                f"{p.dtype}); the book's equations are for real numbers. "
                "torch.optim handles complex parameters by viewing them as "
                "pairs of reals.")


def _default_foreach(params) -> bool:
    """The multi-tensor path when every parameter is on CUDA, as torch."""
    return bool(params) and all(p.is_cuda for p in params)


def _grads_of(group: dict, name: str):
    """Parameters of ``group`` that have a gradient, and those gradients."""
    params, grads = [], []
    for p in group["params"]:
        if p.grad is None:
            continue
        if p.grad.is_sparse:
            raise RuntimeError(
                f"adambook.{name} does not support sparse gradients; "
                "use torch.optim.SparseAdam for sparse embeddings")
        params.append(p)
        grads.append(p.grad)
    return params, grads


class SGD(_ValidatedOptimizer):
    r"""Stochastic gradient descent with optional momentum and weight decay.

    .. math::

        \theta_{t+1} = \theta_t - \eta\, (g_t + \lambda\theta_t)

    With ``momentum`` :math:`\mu > 0` the step uses the buffer
    :math:`b_t = \mu b_{t-1} + g_t` (torch's convention, :math:`b_1 = g_1`),
    kept as ``momentum_buffer``. ``decoupled_weight_decay=True`` multiplies
    the parameters by :math:`1-\eta\lambda` instead (the same update for
    plain SGD). ``foreach=None``: the multi-tensor path on CUDA.
    """

    def __init__(self, params, lr: float = 1e-3, momentum: float = 0.0,
                 weight_decay: float = 0.0,
                 decoupled_weight_decay: bool = False, *,
                 foreach: bool | None = None) -> None:
        defaults = dict(lr=lr, momentum=momentum, weight_decay=weight_decay,
                        decoupled_weight_decay=decoupled_weight_decay,
                        foreach=foreach)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        """Perform one optimization step; ``closure`` re-evaluates the loss."""
        loss = _evaluate(closure)
        for group in self.param_groups:
            params, grads = _grads_of(group, type(self).__name__)
            momentum = group["momentum"]
            bufs = [self.state[p].get("momentum_buffer") for p in params]
            foreach = group["foreach"]
            F.sgd(params, grads, bufs, lr=group["lr"], momentum=momentum,
                  weight_decay=group["weight_decay"],
                  decoupled_weight_decay=group["decoupled_weight_decay"],
                  foreach=_default_foreach(params) if foreach is None
                  else foreach)
            if momentum != 0:
                for p, b in zip(params, bufs):
                    self.state[p]["momentum_buffer"] = b
        return loss


class Adam(_ValidatedOptimizer):
    r"""Adam (Kingma & Ba 2015), with L2 weight decay added to the gradient.

    .. math::

        g_t &\leftarrow g_t + \lambda\theta_{t-1} \\
        m_t &= \beta_1 m_{t-1} + (1-\beta_1)\, g_t \\
        v_t &= \beta_2 v_{t-1} + (1-\beta_2)\, g_t \odot g_t \\
        \theta_t &= \theta_{t-1} - \eta\,
            \frac{m_t/(1-\beta_1^t)}{\sqrt{v_t/(1-\beta_2^t)} + \epsilon}

    State: ``step`` (an ``int``), ``exp_avg``, ``exp_avg_sq``, and
    ``max_exp_avg_sq`` with ``amsgrad`` (Reddi et al. 2018, torch's form).
    ``bias_correction=False`` drops both :math:`1/(1-\beta^t)`;
    ``decoupled_weight_decay=True`` is :class:`AdamW`.
    """

    def __init__(self, params, lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0,
                 amsgrad: bool = False, *, bias_correction: bool = True,
                 decoupled_weight_decay: bool = False,
                 foreach: bool | None = None) -> None:
        defaults = dict(lr=lr, betas=betas, eps=eps,
                        weight_decay=weight_decay, amsgrad=amsgrad,
                        bias_correction=bias_correction,
                        decoupled_weight_decay=decoupled_weight_decay,
                        foreach=foreach)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        """Perform one optimization step; ``closure`` re-evaluates the loss."""
        loss = _evaluate(closure)
        for group in self.param_groups:
            params, grads = _grads_of(group, type(self).__name__)
            exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps = [], [], [], []
            for p in params:
                state = self.state[p]
                if len(state) == 0:  # lazily, on the parameter's device
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(
                        p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(
                        p, memory_format=torch.preserve_format)
                if group["amsgrad"] and "max_exp_avg_sq" not in state:
                    state["max_exp_avg_sq"] = torch.zeros_like(
                        p, memory_format=torch.preserve_format)
                # int() also reads the 0-d tensor that torch.optim.Adam stores.
                state["step"] = int(state["step"]) + 1
                steps.append(state["step"])
                exp_avgs.append(state["exp_avg"])
                exp_avg_sqs.append(state["exp_avg_sq"])
                if group["amsgrad"]:
                    max_exp_avg_sqs.append(state["max_exp_avg_sq"])

            beta1, beta2 = group["betas"]
            foreach = group["foreach"]
            F.adam(params, grads, exp_avgs, exp_avg_sqs, steps,
                   lr=group["lr"], beta1=beta1, beta2=beta2, eps=group["eps"],
                   weight_decay=group["weight_decay"],
                   weight_decay_mode="decoupled"
                   if group["decoupled_weight_decay"] else "l2",
                   bias_correction=group["bias_correction"],
                   amsgrad=group["amsgrad"], max_exp_avg_sqs=max_exp_avg_sqs,
                   foreach=_default_foreach(params) if foreach is None
                   else foreach)
        return loss


class AdamW(Adam):
    r"""AdamW (Loshchilov & Hutter 2019): Adam with decoupled weight decay.

    .. math::

        \theta_t = (1-\eta\lambda)\,\theta_{t-1}
                   - \eta\, \frac{\hat m_t}{\sqrt{\hat v_t} + \epsilon}

    The decay never passes through :math:`m`, :math:`v` or the
    preconditioner. As in ``torch.optim.AdamW``, :math:`\lambda` is
    multiplied by the current learning rate and defaults to ``1e-2``.
    """

    def __init__(self, params, lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2,
                 amsgrad: bool = False, *, bias_correction: bool = True,
                 foreach: bool | None = None) -> None:
        super().__init__(params, lr=lr, betas=betas, eps=eps,
                         weight_decay=weight_decay, amsgrad=amsgrad,
                         bias_correction=bias_correction,
                         decoupled_weight_decay=True, foreach=foreach)
