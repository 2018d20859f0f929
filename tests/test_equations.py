"""The step matches the post's equations, written out by hand, where torch has no twin.

torch.optim has no switch for the three cases below, so each is checked against the
equations computed directly in float64. Tolerance: float rounding of a few
operations per step over 50 steps, 1e-12 relative.
"""

import math

import pytest
import torch

import adambook
from adambook import functional as F

RTOL = 1e-12


def reference_adam(theta, grads, lr, b1, b2, eps, wd, mode, bias_correction):
    """The post's equations, term by term, in plain tensor arithmetic."""
    m = torch.zeros_like(theta)
    v = torch.zeros_like(theta)
    for t, g in enumerate(grads, start=1):
        if mode == "l2":
            g = g + wd * theta
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        c1 = 1 - b1**t if bias_correction else 1.0
        c2 = 1 - b2**t if bias_correction else 1.0
        m_hat, v_hat = m / c1, v / c2
        if mode == "decoupled":
            theta = (1 - lr * wd) * theta - lr * m_hat / (v_hat.sqrt() + eps)
        elif mode == "l2_after_moments":
            theta = theta - lr * (m_hat + wd * theta) / (v_hat.sqrt() + eps)
        else:
            theta = theta - lr * m_hat / (v_hat.sqrt() + eps)
    return theta


def grad_stream(n=50, d=6, seed=0):
    gen = torch.Generator().manual_seed(seed)
    scales = torch.logspace(-3, 3, d, dtype=torch.float64)
    return [torch.randn(d, generator=gen, dtype=torch.float64) * scales for _ in range(n)]


@pytest.mark.parametrize("mode", F.WEIGHT_DECAY_MODES)
@pytest.mark.parametrize("bias_correction", [True, False])
@pytest.mark.parametrize("foreach", [False, True])
def test_functional_adam_is_the_post_equations(mode, bias_correction, foreach):
    grads = grad_stream()
    theta0 = torch.linspace(-1, 1, 6, dtype=torch.float64)
    want = reference_adam(theta0.clone(), grads, 0.01, 0.9, 0.999, 1e-8, 0.1, mode, bias_correction)
    p, m, v = theta0.clone(), torch.zeros(6, dtype=torch.float64), torch.zeros(6, dtype=torch.float64)
    for t, g in enumerate(grads, start=1):
        F.adam([p], [g], [m], [v], [t], lr=0.01, beta1=0.9, beta2=0.999, eps=1e-8,
               weight_decay=0.1, weight_decay_mode=mode, bias_correction=bias_correction,
               foreach=foreach)
    torch.testing.assert_close(p, want, rtol=RTOL, atol=0)


@pytest.mark.parametrize("cls,mode", [(adambook.Adam, "l2"), (adambook.AdamW, "decoupled")])
def test_bias_correction_false_drops_both_factors(cls, mode):
    grads = grad_stream()
    theta0 = torch.linspace(-1, 1, 6, dtype=torch.float64)
    want = reference_adam(theta0.clone(), grads, 0.01, 0.9, 0.999, 1e-8, 0.1, mode, False)
    p = torch.nn.Parameter(theta0.clone())
    opt = cls([p], lr=0.01, weight_decay=0.1, bias_correction=False)
    for g in grads:
        p.grad = g.clone()
        opt.step()
    torch.testing.assert_close(p.detach(), want, rtol=RTOL, atol=0)


def test_first_step_sizes_with_and_without_bias_correction():
    """t = 1: the corrected step is lr·sign(g); the uncorrected one (1−β1)/√(1−β2) times that."""
    g = torch.tensor([3.0, -0.02, 1e3], dtype=torch.float64)
    for bias_correction, factor in ((True, 1.0), (False, (1 - 0.9) / math.sqrt(1 - 0.999))):
        p = torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))
        opt = adambook.Adam([p], lr=1e-3, eps=0.0, bias_correction=bias_correction)
        p.grad = g.clone()
        opt.step()
        torch.testing.assert_close(p.detach(), -1e-3 * factor * g.sign(), rtol=RTOL, atol=0)


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_sgd_decoupled_weight_decay(momentum):
    grads = grad_stream()
    theta = torch.linspace(-1, 1, 6, dtype=torch.float64)
    lr, wd = 1e-4, 0.5
    buf = None
    want = theta.clone()
    for g in grads:
        want = (1 - lr * wd) * want
        buf = g.clone() if buf is None else momentum * buf + g
        want = want - lr * (buf if momentum else g)
    p = torch.nn.Parameter(theta.clone())
    opt = adambook.SGD([p], lr=lr, momentum=momentum, weight_decay=wd, decoupled_weight_decay=True)
    for g in grads:
        p.grad = g.clone()
        opt.step()
    torch.testing.assert_close(p.detach(), want, rtol=RTOL, atol=0)
