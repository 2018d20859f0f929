r"""SGD, Adam and AdamW as ``torch.optim.Optimizer`` subclasses.

Signatures and defaults follow ``torch.optim`` so that habits carry over, and so do the
error messages (``Invalid learning rate: -1.0``). The arithmetic of a step is in
:mod:`adambook.functional`; these classes validate hyperparameters, keep the state and
hand lists of tensors to it.

What the classes do with unusual input:

* a parameter whose ``.grad`` is ``None`` is skipped: it is not changed and gets no state;
* a sparse gradient raises ``RuntimeError`` (the step would otherwise be silently dense);
* a complex parameter raises ``TypeError`` when it is given to the optimizer: the post's
  equations are written for real numbers, and ``torch.optim`` handles complex numbers by
  treating them as pairs of reals, a choice the book does not make for the reader;
* hyperparameters are validated for every parameter group, not only for the defaults,
  and NaN or infinite values are refused.
"""

from __future__ import annotations

import math
import numbers

import torch
from torch.optim import Optimizer

from . import functional as F

__all__ = ["SGD", "Adam", "AdamW"]


def _check_finite_nonneg(value, message: str) -> None:
    """Raise ``ValueError(message)`` unless ``0 <= value < inf`` (NaN fails too).

    ``message`` is torch.optim's wording, e.g. ``"Invalid learning rate: -1.0"``.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{message} (expected a real number, got {type(value).__name__})")
    if not 0.0 <= value < math.inf:
        raise ValueError(message)


class _ValidatedOptimizer(Optimizer):
    """An Optimizer that validates every parameter group as it is added.

    torch.optim checks only the constructor's defaults; a group added later, or one
    that overrides ``lr``, is not checked there. Here a bad group raises and is not
    kept.
    """

    def _validate_group(self, group: dict) -> None:
        """torch.optim's checks, in its order and wording, for each option the group has."""
        _check_finite_nonneg(group["lr"], f"Invalid learning rate: {group['lr']}")
        if "eps" in group:
            _check_finite_nonneg(group["eps"], f"Invalid epsilon value: {group['eps']}")
        if "momentum" in group:
            _check_finite_nonneg(group["momentum"], f"Invalid momentum value: {group['momentum']}")
        if "betas" in group:
            _check_betas(group)
        _check_finite_nonneg(
            group["weight_decay"], f"Invalid weight_decay value: {group['weight_decay']}"
        )
        _check_params_are_real(group, type(self).__name__)

    def add_param_group(self, param_group: dict) -> None:
        super().add_param_group(param_group)
        try:
            self._validate_group(self.param_groups[-1])
        except Exception:
            self.param_groups.pop()
            raise

    #: torch.optim options that adambook does not implement; a checkpoint that turns
    #: one of them on would otherwise be followed silently with the option off.
    _UNSUPPORTED = {"maximize": False, "capturable": False, "differentiable": False,
                    "fused": None, "nesterov": False, "dampening": 0}

    def __setstate__(self, state: dict) -> None:
        # Called by load_state_dict with the checkpoint's groups. A torch.optim
        # checkpoint lacks adambook's own keys: take them from this optimizer's
        # defaults, and refuse options this implementation would silently ignore.
        super().__setstate__(state)
        for group in self.param_groups:
            for key, off in self._UNSUPPORTED.items():
                if group.get(key, off) not in (off, False, None, 0):
                    raise ValueError(
                        f"adambook.{type(self).__name__} does not implement {key}={group[key]!r}"
                    )
            for key, value in getattr(self, "defaults", {}).items():
                group.setdefault(key, value)
            if "betas" in group:
                group["betas"] = tuple(float(b) for b in group["betas"])


def _evaluate(closure):
    """The loss from ``closure`` with autograd on, as torch.optim's ``step`` does; or None."""
    if closure is None:
        return None
    with torch.enable_grad():
        return closure()


def _check_betas(group: dict) -> None:
    """Check ``group["betas"]`` is a pair in [0, 1), and store it as a tuple of floats."""
    betas = group["betas"]
    if len(betas) != 2:
        raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
    for i, beta in enumerate(betas):
        _check_finite_nonneg(beta, f"Invalid beta parameter at index {i}: {beta}")
        if not beta < 1.0:
            raise ValueError(f"Invalid beta parameter at index {i}: {beta}")
    group["betas"] = (float(betas[0]), float(betas[1]))


def _check_params_are_real(group: dict, name: str) -> None:
    for p in group["params"]:
        if torch.is_complex(p):
            raise TypeError(
                f"adambook.{name} does not support complex parameters (got {p.dtype}); "
                "the book's equations are for real numbers. torch.optim handles complex "
                "parameters by viewing them as pairs of reals."
            )


def _default_foreach(params) -> bool:
    """Use the multi-tensor path when every parameter is on CUDA, as torch.optim does."""
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
                "use torch.optim.SparseAdam for sparse embeddings"
            )
        params.append(p)
        grads.append(p.grad)
    return params, grads


class SGD(_ValidatedOptimizer):
    r"""Stochastic gradient descent with optional momentum and weight decay.

    .. math::

        \theta_{t+1} = \theta_t - \eta\, (g_t + \lambda\theta_t)

    With ``momentum`` :math:`\mu > 0` the step uses the buffer
    :math:`b_t = \mu b_{t-1} + g_t` (torch's convention, :math:`b_1 = g_1`). With
    ``decoupled_weight_decay=True`` the parameters are first multiplied by
    :math:`1-\eta\lambda` and the gradient is left alone; for plain SGD the two forms
    are the same update.

    State per parameter: nothing, or ``momentum_buffer`` when ``momentum > 0``.

    Args:
        params: parameters or parameter groups, as for any ``torch.optim.Optimizer``.
        lr: learning rate :math:`\eta`.
        momentum: :math:`\mu \in [0, \infty)`.
        weight_decay: :math:`\lambda \geq 0`.
        decoupled_weight_decay: multiply by :math:`1-\eta\lambda` instead of adding
            :math:`\lambda\theta` to the gradient.
        foreach: use the multi-tensor path; ``None`` picks it when all parameters are
            on CUDA.
    """

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        decoupled_weight_decay: bool = False,
        *,
        foreach: bool | None = None,
    ) -> None:
        defaults = dict(
            lr=lr,
            momentum=momentum,
            weight_decay=weight_decay,
            decoupled_weight_decay=decoupled_weight_decay,
            foreach=foreach,
        )
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        """Perform one optimization step; ``closure`` re-evaluates the loss, as in torch."""
        loss = _evaluate(closure)
        for group in self.param_groups:
            params, grads = _grads_of(group, type(self).__name__)
            momentum = group["momentum"]
            bufs = [self.state[p].get("momentum_buffer") for p in params]
            foreach = group["foreach"]
            F.sgd(
                params,
                grads,
                bufs,
                lr=group["lr"],
                momentum=momentum,
                weight_decay=group["weight_decay"],
                decoupled_weight_decay=group["decoupled_weight_decay"],
                foreach=_default_foreach(params) if foreach is None else foreach,
            )
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
        \theta_t &= \theta_{t-1} - \eta\, \frac{m_t/(1-\beta_1^t)}{\sqrt{v_t/(1-\beta_2^t)} + \epsilon}

    State per parameter: ``step`` (an ``int``), ``exp_avg`` (:math:`m`) and
    ``exp_avg_sq`` (:math:`v`), plus ``max_exp_avg_sq`` when ``amsgrad=True``; tensors
    live on the parameter's device and dtype.

    Args:
        params: parameters or parameter groups.
        lr: learning rate :math:`\eta \geq 0`.
        betas: :math:`(\beta_1, \beta_2)`, each in :math:`[0, 1)`.
        eps: :math:`\epsilon \geq 0`, added to :math:`\sqrt{\hat v_t}`.
        weight_decay: :math:`\lambda \geq 0`.
        amsgrad: divide by :math:`\sqrt{\max_{s \le t} \hat v_s}` (Reddi et al. 2018),
            in torch's form.
        bias_correction: keep the :math:`1/(1-\beta^t)` factors (``False`` drops both,
            so that the book can show what they do).
        decoupled_weight_decay: apply :math:`\theta \leftarrow (1-\eta\lambda)\theta`
            instead of L2, which is :class:`AdamW`.
        foreach: use the multi-tensor path; ``None`` picks it when all parameters are
            on CUDA, as ``torch.optim`` does.
    """

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
        *,
        bias_correction: bool = True,
        decoupled_weight_decay: bool = False,
        foreach: bool | None = None,
    ) -> None:
        defaults = dict(
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            amsgrad=amsgrad,
            bias_correction=bias_correction,
            decoupled_weight_decay=decoupled_weight_decay,
            foreach=foreach,
        )
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        """Perform one optimization step; ``closure`` re-evaluates the loss, as in torch."""
        loss = _evaluate(closure)
        for group in self.param_groups:
            params, grads = _grads_of(group, type(self).__name__)
            exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps = [], [], [], []
            for p in params:
                state = self.state[p]
                if len(state) == 0:  # lazy initialisation, on the parameter's device
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                if group["amsgrad"] and "max_exp_avg_sq" not in state:
                    state["max_exp_avg_sq"] = torch.zeros_like(
                        p, memory_format=torch.preserve_format
                    )
                # int() also reads the 0-d tensor that torch.optim.Adam stores.
                state["step"] = int(state["step"]) + 1
                steps.append(state["step"])
                exp_avgs.append(state["exp_avg"])
                exp_avg_sqs.append(state["exp_avg_sq"])
                if group["amsgrad"]:
                    max_exp_avg_sqs.append(state["max_exp_avg_sq"])

            beta1, beta2 = group["betas"]
            foreach = group["foreach"]
            F.adam(
                params,
                grads,
                exp_avgs,
                exp_avg_sqs,
                steps,
                lr=group["lr"],
                beta1=beta1,
                beta2=beta2,
                eps=group["eps"],
                weight_decay=group["weight_decay"],
                weight_decay_mode="decoupled" if group["decoupled_weight_decay"] else "l2",
                bias_correction=group["bias_correction"],
                amsgrad=group["amsgrad"],
                max_exp_avg_sqs=max_exp_avg_sqs,
                foreach=_default_foreach(params) if foreach is None else foreach,
            )
        return loss


class AdamW(Adam):
    r"""AdamW (Loshchilov & Hutter 2019): Adam with decoupled weight decay.

    .. math::

        \theta_t = (1-\eta\lambda)\,\theta_{t-1}
                   - \eta\, \frac{\hat m_t}{\sqrt{\hat v_t} + \epsilon}

    The decay multiplies the parameters and never passes through :math:`m`, :math:`v`
    or the preconditioner. As in ``torch.optim.AdamW``, :math:`\lambda` is multiplied
    by the current learning rate, and the default is ``weight_decay=1e-2``. Arguments
    and state are those of :class:`Adam`.
    """

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        *,
        bias_correction: bool = True,
        foreach: bool | None = None,
    ) -> None:
        super().__init__(
            params,
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            amsgrad=amsgrad,
            bias_correction=bias_correction,
            decoupled_weight_decay=True,
            foreach=foreach,
        )
