r"""Where each form of weight decay settles, to the accuracy float64 allows.

For :class:`adambook.problems.LeastSquares`, :math:`H = X^\top X/n`,
:math:`b = X^\top y/n`: rounding bounds for the penalized gradient,
certificates of distance to a regularized solution, Polyak's heavy ball,
and least squares in an :math:`\ell_\infty` ball (Xie & Li 2024).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .problems import LeastSquares

#: :math:`u = 2^{-53}`, the unit roundoff of float64.
UNIT_ROUNDOFF = 2.0**-53


def gamma(k: int, u: float = UNIT_ROUNDOFF) -> float:
    r""":math:`\gamma_k = ku/(1-ku)`, which bounds the rounding error of ``k``
    successive float operations (Higham 2002, §3.1)."""
    if k * u >= 1:
        raise ValueError("k u must be below 1")
    return k * u / (1 - k * u)


def _penalty(weight_decay, theta: Tensor) -> Tensor:
    return torch.as_tensor(weight_decay, dtype=theta.dtype,
                           device=theta.device)


def penalized_gradient(problem: LeastSquares, theta: Tensor,
                       weight_decay=0.0) -> Tensor:
    r""":math:`\nabla f(\theta) + \lambda\odot\theta`; ``weight_decay`` is a
    number or one :math:`\lambda_i` per coordinate."""
    return problem.grad(theta) + _penalty(weight_decay, theta) * theta


def gradient_rounding_bound(problem: LeastSquares, theta: Tensor,
                            weight_decay=0.0, u: float | None = None
                            ) -> Tensor:
    r"""Componentwise bound on the rounding error of
    :func:`penalized_gradient` (``theta`` may hold one run per row),

    .. math::

        \gamma_{n+d+3}\Bigl(\tfrac1n\lvert X\rvert^\top(\lvert X\rvert
        \lvert\theta\rvert + \lvert y\rvert) + \lvert\lambda\theta\rvert\Bigr)

    (inner products in any order, fused or not; ``u``: the data's).
    """
    n, d = problem.X.shape
    u = torch.finfo(problem.X.dtype).eps / 2 if u is None else u
    X, y = problem.X.abs(), problem.y.abs()
    scale = (theta.abs() @ X.T + y) @ X / n
    lam = _penalty(weight_decay, theta).abs()
    return gamma(n + d + 3, u) * (scale + lam * theta.abs())


def certify(problem: LeastSquares, theta: Tensor, weight_decay=0.0) -> dict:
    r"""How far ``theta`` is from :math:`\theta^\star`, the minimiser of
    :math:`f + \frac12\sum_i\lambda_i\theta_i^2`, certified from the residual.

    As :math:`\theta - \theta^\star = A^{-1}(A\theta - b)`,
    :math:`A = H + \operatorname{diag}(\lambda)`, it is ``distance``
    :math:`= \lVert A^{-1}\hat r\rVert` give or take ``error_bound``
    :math:`= \lVert\lvert A^{-1}\rvert\rho\rVert`, :math:`\rho` of
    :func:`gradient_rounding_bound`; a dict, also ``lower``, ``upper``.
    """
    lam = _penalty(weight_decay, theta).expand(theta.shape[-1])
    A_inv = torch.linalg.inv(problem.hessian + torch.diag(lam))
    r = penalized_gradient(problem, theta, weight_decay)
    rho = gradient_rounding_bound(problem, theta, weight_decay)
    distance = (A_inv @ r).norm().item()
    error = (A_inv.abs() @ rho).norm().item()
    return {"residual": r, "rounding": rho,
            "at_floor": bool((r.abs() <= rho).all()), "distance": distance,
            "error_bound": error, "lower": max(distance - error, 0.0),
            "upper": distance + error}


def minibatch_grad(problem: LeastSquares, theta: Tensor, idx: Tensor
                   ) -> Tensor:
    r"""Minibatch gradients of many runs: ``theta`` ``(R, d)``, ``idx``
    ``(R, B)`` the rows of :math:`X` in each run's batch; returns
    :math:`\frac1B\sum_{j\in\mathcal B_r} x_j(x_j^\top\theta_r - y_j)`."""
    Xb, yb = problem.X[idx], problem.y[idx]  # (R, B, d), (R, B)
    resid = (Xb @ theta.unsqueeze(-1)).squeeze(-1) - yb
    return (resid.unsqueeze(-1) * Xb).mean(-2)


def heavy_ball(problem: LeastSquares, weight_decay=0.0
               ) -> tuple[float, float]:
    r"""Polyak's heavy-ball ``(lr, momentum)`` for
    :math:`f + \frac\lambda2\lVert\theta\rVert^2`: with :math:`L, m` the
    extreme eigenvalues of :math:`H + \lambda I`,
    :math:`\eta = 4/(\sqrt L+\sqrt m)^2`,
    :math:`\mu = ((\sqrt L-\sqrt m)/(\sqrt L+\sqrt m))^2`; the rate is
    :math:`\sqrt\mu` per step (torch's momentum convention)."""
    eig = torch.linalg.eigvalsh(problem.hessian) + weight_decay
    L, m = math.sqrt(eig.max().item()), math.sqrt(eig.min().item())
    return 4.0 / (L + m) ** 2, ((L - m) / (L + m)) ** 2


def linf_lstsq(problem: LeastSquares, radius: float, max_sweeps: int = 10_000
               ) -> tuple[Tensor, Tensor]:
    r"""Least squares in the box :math:`\lVert\theta\rVert_\infty \le R`:
    where full-batch AdamW goes when :math:`R = 1/\lambda` binds.

    Clipped cyclic coordinate descent, then an exact solve of the free
    coordinates, until the KKT conditions hold to rounding. Returns
    ``(theta, on_boundary)``.

    >>> import torch
    >>> from adambook.problems import LeastSquares
    >>> X = torch.eye(2, dtype=torch.float64) * 2 ** 0.5
    >>> P = LeastSquares(X, torch.tensor([3.0, 0.2], dtype=torch.float64))
    >>> theta, active = linf_lstsq(P, radius=1.0)
    >>> theta.tolist(), active.tolist()
    ([1.0, 0.1414213562373095], [True, False])
    """
    H, b = problem.hessian, problem.X.T @ problem.y / problem.n
    d = H.shape[0]
    theta = torch.zeros(d, dtype=H.dtype, device=H.device)
    for _ in range(max_sweeps):
        for i in range(d):  # exact minimisation along coordinate i, clipped
            resid = b[i] - H[i] @ theta + H[i, i] * theta[i]
            theta[i] = (resid / H[i, i]).clamp(-radius, radius)
        active = theta.abs() >= radius
        free = ~active
        polished = theta.clone()
        if free.any():
            rhs = b[free] - H[free][:, active] @ theta[active]
            polished[free] = torch.linalg.solve(H[free][:, free], rhs)
        g, th = problem.grad(polished), polished
        viol = torch.maximum(torch.where(
            th.abs() >= radius, (g * th.sign()).clamp(min=0), g.abs()),
            (th.abs() - radius).clamp(min=0))
        tol = (gradient_rounding_bound(problem, polished)
               + 4 * UNIT_ROUNDOFF * radius)
        if (viol <= tol).all():
            return polished, active
    raise RuntimeError("linf_lstsq missed the KKT conditions; raise "
                       "max_sweeps")
