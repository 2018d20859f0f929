r"""Test problems with closed-form answers.

Every generator is seeded and returns float64 tensors unless asked
otherwise, so a chapter can compare an optimizer's end point with the exact
answer.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class Quadratic:
    r""":math:`f(\theta) = \tfrac12\sum_i h_i(\theta_i-\theta^\star_i)^2`.

    ``curvatures`` :math:`h_i > 0`, ``minimizer`` :math:`\theta^\star` (zero
    by default). Methods accept points ``(..., d)``, one row per run.
    """

    curvatures: Tensor
    minimizer: Tensor | None = None

    @classmethod
    def from_scales(cls, scales, dtype=torch.float64,
                    device=None) -> "Quadratic":
        r"""Curvatures :math:`h_i = s_i^2`: the loss
        :math:`\tfrac12\sum_i (s_i\theta_i)^2` of columns of scale
        :math:`s_i`."""
        s = torch.as_tensor(scales, dtype=dtype, device=device)
        return cls(s * s)

    @property
    def theta_star(self) -> Tensor:
        if self.minimizer is None:
            return torch.zeros_like(self.curvatures)
        return self.minimizer

    def loss(self, theta: Tensor) -> Tensor:
        d = theta - self.theta_star
        return 0.5 * (self.curvatures * d * d).sum(-1)

    def grad(self, theta: Tensor) -> Tensor:
        return self.curvatures * (theta - self.theta_star)

    @property
    def lipschitz(self) -> float:
        """:math:`L = \\max_i h_i`, the largest curvature."""
        return float(self.curvatures.max())

    @property
    def condition_number(self) -> float:
        """:math:`\\kappa = \\max_i h_i / \\min_i h_i`."""
        return float(self.curvatures.max() / self.curvatures.min())

    @property
    def gd_max_stable_lr(self) -> float:
        r"""Gradient descent converges iff :math:`0 < \eta < 2/L`."""
        return 2.0 / self.lipschitz


@dataclass(frozen=True)
class LeastSquares:
    r"""Linear regression :math:`\frac{1}{2n}\lVert X\theta - y\rVert^2`.

    With a penalty :math:`\frac{\lambda}{2}\lVert\theta\rVert^2` the
    minimiser is :math:`(X^\top X/n + \lambda I)^{-1} X^\top y / n`.
    """

    X: Tensor
    y: Tensor

    @property
    def n(self) -> int:
        return self.X.shape[0]

    def loss(self, theta: Tensor, weight_decay: float = 0.0) -> Tensor:
        r = theta @ self.X.T - self.y
        return (0.5 * (r * r).mean(-1)
                + 0.5 * weight_decay * (theta * theta).sum(-1))

    def grad(self, theta: Tensor, idx: Tensor | None = None) -> Tensor:
        """Gradient of the unpenalised loss; on the rows ``idx`` if given."""
        X, y = (self.X, self.y) if idx is None else (self.X[idx], self.y[idx])
        return (theta @ X.T - y) @ X / X.shape[0]

    @property
    def hessian(self) -> Tensor:
        return self.X.T @ self.X / self.n

    def ridge_solution(self, weight_decay) -> Tensor:
        r"""Minimiser of :math:`f(\theta) + \frac12\sum_i \lambda_i\theta_i^2`;
        ``weight_decay``: a number or one :math:`\lambda_i` per coordinate."""
        lam = torch.as_tensor(weight_decay, dtype=self.X.dtype,
                              device=self.X.device)
        A = self.hessian + torch.diag(lam.expand(self.X.shape[1]))
        return torch.linalg.solve(A, self.X.T @ self.y / self.n)

    def lstsq_solution(self) -> Tensor:
        """The unpenalised minimiser."""
        return self.ridge_solution(0.0)


def scaled_regression(n: int = 200, scales=(1.0, 1000.0),
                      noise: float = 0.1, theta_true=None, seed: int = 0,
                      dtype=torch.float64, device=None) -> LeastSquares:
    r"""The post's ridge example: standard-normal columns times ``scales``.

    :math:`y = X\theta_{\text{true}} + \sigma\xi`, :math:`\xi \sim N(0, I)`;
    by default :math:`\theta_{\text{true}} = 1/s`, so that both features
    contribute equally to :math:`y`.
    """
    gen = torch.Generator().manual_seed(seed)
    s = torch.as_tensor(scales, dtype=dtype)
    X = torch.randn(n, len(s), generator=gen, dtype=dtype) * s
    theta = ((1.0 / s) if theta_true is None
             else torch.as_tensor(theta_true, dtype=dtype))
    y = X @ theta + noise * torch.randn(n, generator=gen, dtype=dtype)
    return LeastSquares(X.to(device), y.to(device))
