r"""Where each form of weight decay settles: fixed points, certificates, closed forms.

The chapters on weight decay compare the end points of optimizers with the solutions
of regularised least-squares problems (:class:`adambook.problems.LeastSquares`,
:math:`f(\theta) = \frac1{2n}\lVert X\theta-y\rVert^2`, :math:`H = X^\top X/n`,
:math:`b = X^\top y/n`). This module holds what they share:

* the fixed-point equation of each method, written as a residual that vanishes at
  the method's stationary points:

  - L2 (SGD, Adam in both forms): :math:`\nabla f(\theta) + \lambda\theta`;
  - SGD with momentum :math:`\mu` and decoupled decay:
    :math:`\nabla f(\theta) + (1-\mu)\lambda\theta`;
  - AdamW: :math:`\nabla f(\theta) + \lambda(\sqrt{\hat v}+\epsilon)\odot\theta`;

* a rounding bound for the computed gradient, so that "the residual is zero" can be
  asserted to the accuracy float64 allows, and the certificate it gives: for
  :math:`A = H + \operatorname{diag}(\lambda)` and any :math:`\theta`,
  :math:`\theta - \theta^\star = A^{-1}(A\theta - b)`, known up to the rounding
  of the residual;
* the solutions AdamW is drawn to: ridge with a per-coordinate penalty, and least
  squares in the :math:`\ell_\infty` ball of radius :math:`1/\lambda`
  (Xie & Li 2024).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .problems import LeastSquares

__all__ = [
    "UNIT_ROUNDOFF",
    "gamma",
    "penalized_gradient",
    "gradient_rounding_bound",
    "at_rounding_floor",
    "certify",
    "minibatch_grad",
    "effective_decay",
    "adamw_penalty",
    "adamw_residual",
    "adamw_ridge",
    "momentum_equivalent_decay",
    "heavy_ball",
    "linf_lstsq",
    "box_kkt_violation",
]

#: :math:`u = 2^{-53}`, the unit roundoff of float64.
UNIT_ROUNDOFF = 2.0**-53


def gamma(k: int, u: float = UNIT_ROUNDOFF) -> float:
    r""":math:`\gamma_k = ku/(1-ku)`, the factor that bounds the rounding error of ``k``
    successive float operations (Higham, *Accuracy and Stability of Numerical
    Algorithms*, §3.1)."""
    if k * u >= 1:
        raise ValueError("k u must be below 1")
    return k * u / (1 - k * u)


def _penalty(weight_decay, theta: Tensor) -> Tensor:
    return torch.as_tensor(weight_decay, dtype=theta.dtype, device=theta.device)


def penalized_gradient(problem: LeastSquares, theta: Tensor, weight_decay=0.0) -> Tensor:
    r""":math:`\nabla f(\theta) + \lambda\odot\theta`; ``weight_decay`` is a number or
    one :math:`\lambda_i` per coordinate. Zero exactly at
    ``problem.ridge_solution(weight_decay)``."""
    return problem.grad(theta) + _penalty(weight_decay, theta) * theta


def gradient_rounding_bound(
    problem: LeastSquares, theta: Tensor, weight_decay=0.0, u: float | None = None
) -> Tensor:
    r"""Componentwise bound on the rounding error of :func:`penalized_gradient`.

    ``problem.grad`` computes :math:`r = X\theta - y` (inner products of length
    :math:`d`, then a subtraction), then :math:`X^\top r` (inner products of length
    :math:`n`), then divides by :math:`n`; adding :math:`\lambda\theta` costs two more
    roundings. The standard inner-product bound, valid for any order of summation and
    with or without fused multiply-adds, gives

    .. math::

        \lvert \mathrm{fl}(g) - g\rvert \le \gamma_{n+d+3}
        \Bigl(\tfrac1n\lvert X\rvert^\top(\lvert X\rvert\lvert\theta\rvert + \lvert y\rvert)
        + \lvert\lambda\rvert\lvert\theta\rvert\Bigr).

    ``u`` is the unit roundoff, by default that of the data's dtype.
    """
    n, d = problem.X.shape
    u = torch.finfo(problem.X.dtype).eps / 2 if u is None else u
    X, y = problem.X.abs(), problem.y.abs()
    scale = (theta.abs() @ X.T + y) @ X / n
    return gamma(n + d + 3, u) * (scale + _penalty(weight_decay, theta).abs() * theta.abs())


def at_rounding_floor(problem: LeastSquares, theta: Tensor, weight_decay=0.0) -> bool:
    """Whether every component of the computed penalized gradient is within its rounding
    bound, i.e. ``theta`` is a zero of the gradient as far as float arithmetic can tell."""
    r = penalized_gradient(problem, theta, weight_decay)
    return bool((r.abs() <= gradient_rounding_bound(problem, theta, weight_decay)).all())


def certify(problem: LeastSquares, theta: Tensor, weight_decay=0.0) -> dict:
    r"""How far ``theta`` is from :math:`\theta^\star`, the minimiser of
    :math:`f + \frac12\sum_i\lambda_i\theta_i^2`, certified from the residual.

    With :math:`A = H + \operatorname{diag}(\lambda)` and :math:`r = A\theta - b`,
    :math:`\theta - \theta^\star = A^{-1}r` exactly. The computed residual
    :math:`\hat r` differs from :math:`r` by at most :math:`\rho`
    (:func:`gradient_rounding_bound`) in each component, so
    :math:`\lVert\theta-\theta^\star\rVert_2` lies within
    ``error_bound`` :math:`= \lVert\,\lvert A^{-1}\rvert\rho\,\rVert_2` of
    ``distance`` :math:`= \lVert A^{-1}\hat r\rVert_2`. Solving with :math:`A`
    rather than dividing by its smallest eigenvalue keeps the bound sharp when the
    columns have very different scales. (:math:`A^{-1}` is formed in float64; its
    relative error, about :math:`\kappa(A)u`, changes the bounds by far less than
    they are used for.)

    Returns a dict with ``residual``, ``rounding``, ``at_floor`` (every
    :math:`\lvert\hat r_i\rvert \le \rho_i`), ``distance``, ``error_bound``,
    ``lower`` and ``upper``.
    """
    lam = _penalty(weight_decay, theta).expand(theta.shape[-1])
    A_inv = torch.linalg.inv(problem.hessian + torch.diag(lam))
    r = penalized_gradient(problem, theta, weight_decay)
    rho = gradient_rounding_bound(problem, theta, weight_decay)
    distance = (A_inv @ r).norm().item()
    error = (A_inv.abs() @ rho).norm().item()
    return {
        "residual": r,
        "rounding": rho,
        "at_floor": bool((r.abs() <= rho).all()),
        "distance": distance,
        "error_bound": error,
        "lower": max(distance - error, 0.0),
        "upper": distance + error,
    }


def minibatch_grad(problem: LeastSquares, theta: Tensor, idx: Tensor) -> Tensor:
    r"""Minibatch gradients for many runs at once.

    ``theta`` has shape ``(R, d)``, one run per row; ``idx`` has shape ``(R, B)``, the
    rows of :math:`X` in each run's minibatch. Returns
    :math:`\frac1B\sum_{j\in\mathcal B_r} x_j(x_j^\top\theta_r - y_j)` for every run
    :math:`r`, shape ``(R, d)``.
    """
    Xb, yb = problem.X[idx], problem.y[idx]  # (R, B, d), (R, B)
    resid = (Xb @ theta.unsqueeze(-1)).squeeze(-1) - yb
    return (resid.unsqueeze(-1) * Xb).mean(-2)


def effective_decay(weight_decay, sqrt_vhat: Tensor, eps: float, mode: str) -> Tensor:
    r"""The factor that multiplies :math:`-\eta\,\theta_i` in one step, per coordinate.

    ``"l2_after_moments"`` (the post's form of Adam + L2): the step contains
    :math:`-\eta\lambda\theta_i/(\sqrt{\hat v_i}+\epsilon)`, so the factor is
    :math:`\lambda/(\sqrt{\hat v_i}+\epsilon)`. ``"decoupled"`` (AdamW): :math:`\lambda`
    for every coordinate.
    """
    if mode == "l2_after_moments":
        return weight_decay / (sqrt_vhat + eps)
    if mode == "decoupled":
        return torch.full_like(sqrt_vhat, float(weight_decay))
    raise ValueError(f"mode must be 'l2_after_moments' or 'decoupled', got {mode!r}")


def adamw_penalty(weight_decay, sqrt_vhat: Tensor, eps: float) -> Tensor:
    r"""AdamW's per-coordinate ridge penalty :math:`\lambda(\sqrt{\hat v_i}+\epsilon)`.

    AdamW stops moving, :math:`\lambda\theta + \hat m/(\sqrt{\hat v}+\epsilon) = 0`, where
    :math:`\hat m = -\lambda(\sqrt{\hat v}+\epsilon)\odot\theta`; with :math:`\hat m`
    equal to the (mean) gradient that is the ridge equation with this penalty.
    """
    return weight_decay * (sqrt_vhat + eps)


def adamw_residual(problem: LeastSquares, theta: Tensor, weight_decay, sqrt_vhat, eps) -> Tensor:
    r"""AdamW's fixed-point residual :math:`\nabla f(\theta) + \lambda(\sqrt{\hat v}+\epsilon)\odot\theta`."""
    return penalized_gradient(problem, theta, adamw_penalty(weight_decay, sqrt_vhat, eps))


def adamw_ridge(problem: LeastSquares, weight_decay, sqrt_vhat, eps) -> Tensor:
    """The ridge solution with AdamW's per-coordinate penalty (:func:`adamw_penalty`)."""
    return problem.ridge_solution(adamw_penalty(weight_decay, sqrt_vhat, eps))


def momentum_equivalent_decay(weight_decay: float, momentum: float) -> float:
    r"""The L2 strength that decoupled decay acts like under momentum, :math:`(1-\mu)\lambda`.

    In torch's convention (:math:`b_t = \mu b_{t-1} + g_t`,
    :math:`\theta_{t+1} = (1-\eta\lambda)\theta_t - \eta b_t`), a fixed point has
    :math:`b = \nabla f(\theta)/(1-\mu)` and :math:`\eta\lambda\theta + \eta b = 0`,
    that is :math:`\nabla f(\theta) + (1-\mu)\lambda\theta = 0`.
    """
    return (1.0 - momentum) * weight_decay


def heavy_ball(problem: LeastSquares, weight_decay=0.0) -> tuple[float, float]:
    r"""Polyak's heavy-ball parameters for :math:`f + \frac\lambda2\lVert\theta\rVert^2`.

    With :math:`L` and :math:`m` the extreme eigenvalues of :math:`H + \lambda I`,
    :math:`\eta = 4/(\sqrt L+\sqrt m)^2` and
    :math:`\mu = \bigl((\sqrt L-\sqrt m)/(\sqrt L+\sqrt m)\bigr)^2` give the fastest
    linear rate, :math:`\sqrt\mu` per step, for torch's momentum SGD
    (:math:`b_t = \mu b_{t-1} + g_t`, :math:`\theta_{t+1} = \theta_t - \eta b_t`).
    Returns ``(lr, momentum)``.
    """
    eig = torch.linalg.eigvalsh(problem.hessian) + weight_decay
    L, m = math.sqrt(eig.max().item()), math.sqrt(eig.min().item())
    return 4.0 / (L + m) ** 2, ((L - m) / (L + m)) ** 2


def box_kkt_violation(problem: LeastSquares, theta: Tensor, radius: float) -> Tensor:
    r"""How far ``theta`` is from the optimality conditions of
    :math:`\min f(\theta)` subject to :math:`\lVert\theta\rVert_\infty \le R`.

    Per coordinate: how far :math:`\lvert\theta_i\rvert` exceeds :math:`R`; for a free
    coordinate (:math:`\lvert\theta_i\rvert < R`) the gradient :math:`\lvert g_i\rvert`;
    for one on the boundary the part of :math:`g_i` that points outward,
    :math:`\max(0, g_i\operatorname{sign}\theta_i)`. All zero exactly at the solution.
    """
    g = problem.grad(theta)
    on_bound = theta.abs() >= radius
    outside = (theta.abs() - radius).clamp(min=0)
    kkt = torch.where(on_bound, (g * theta.sign()).clamp(min=0), g.abs())
    return torch.maximum(kkt, outside)


def linf_lstsq(problem: LeastSquares, radius: float, max_sweeps: int = 10_000) -> tuple[Tensor, Tensor]:
    r"""Least squares in the box :math:`\lVert\theta\rVert_\infty \le R`: the point
    full-batch AdamW approaches when :math:`R = 1/\lambda` binds (Xie & Li 2024).

    Cyclic coordinate descent with exact minimisation along each coordinate and
    clipping to :math:`[-R, R]` (insensitive to the scale of each column), then an
    exact solve of the free coordinates with the clipped ones held at :math:`\pm R`,
    accepted once the KKT conditions (:func:`box_kkt_violation`) hold to rounding.
    Returns ``(theta, on_boundary)``.

    >>> import torch
    >>> from adambook.problems import LeastSquares
    >>> P = LeastSquares(torch.eye(2, dtype=torch.float64) * 2 ** 0.5, torch.tensor([3.0, 0.2], dtype=torch.float64))
    >>> theta, active = linf_lstsq(P, radius=1.0)
    >>> theta.tolist(), active.tolist()
    ([1.0, 0.1414213562373095], [True, False])
    """
    H, b = problem.hessian, problem.X.T @ problem.y / problem.n
    d = H.shape[0]
    theta = torch.zeros(d, dtype=H.dtype, device=H.device)
    for _ in range(max_sweeps):
        for i in range(d):  # exact minimisation along coordinate i, then clip
            resid = b[i] - H[i] @ theta + H[i, i] * theta[i]
            theta[i] = (resid / H[i, i]).clamp(-radius, radius)
        active = theta.abs() >= radius
        free = ~active
        polished = theta.clone()
        if free.any():
            rhs = b[free] - H[free][:, active] @ theta[active]
            polished[free] = torch.linalg.solve(H[free][:, free], rhs)
        viol = box_kkt_violation(problem, polished, radius)
        tol = gradient_rounding_bound(problem, polished) + 4 * UNIT_ROUNDOFF * radius
        if (viol <= tol).all():
            return polished, active
    raise RuntimeError("linf_lstsq did not satisfy the KKT conditions; raise max_sweeps")
