"""adambook.regularization: rounding bounds, certificates, ℓ∞ solutions."""

import itertools

import pytest
import torch

from adambook import SGD
from adambook import regularization as reg
from adambook.problems import LeastSquares, scaled_regression


def small_problem(d=3, n=40, seed=0):
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=gen, dtype=torch.float64)
    X = X * torch.tensor([1.0, 3.0, 0.5][:d])
    y = X @ torch.tensor([1.5, -0.7, 2.0][:d], dtype=torch.float64)
    noise = torch.randn(n, generator=gen, dtype=torch.float64)
    return LeastSquares(X, y + 0.1 * noise)


def test_rounding_bound_covers_the_float32_error():
    """The float32 gradient is within the float32 bound of the float64 one."""
    P64 = scaled_regression(n=500, seed=3)
    P32 = LeastSquares(P64.X.float(), P64.y.float())
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        theta = torch.randn(2, generator=gen) * torch.tensor([1.0, 1e-3])
        P = LeastSquares(P32.X.double(), P32.y.double())
        exact = reg.penalized_gradient(P, theta.double(), 0.3)
        got = reg.penalized_gradient(P32, theta, 0.3).double()
        bound = reg.gradient_rounding_bound(P32, theta, 0.3).double()
        assert ((got - exact).abs() <= bound).all()
        # ... and the bound is not vacuous
        assert (bound < 1e-2 * (exact.abs() + bound)).any()


def test_ridge_solution_is_at_the_rounding_floor_and_certified():
    P = scaled_regression()
    theta = P.ridge_solution(0.1)
    c = reg.certify(P, theta, 0.1)
    assert c["at_floor"]
    assert c["upper"] < 1e-12


@pytest.mark.parametrize("seed", range(5))
def test_certificate_brackets_the_distance(seed):
    P = scaled_regression(seed=seed)
    gen = torch.Generator().manual_seed(seed)
    star = P.ridge_solution(0.1)
    delta = torch.randn(2, generator=gen, dtype=torch.float64)
    delta = delta * torch.tensor([1e-3, 1e-7])
    c = reg.certify(P, star + delta, 0.1)
    assert c["lower"] <= delta.norm().item() <= c["upper"]
    assert c["upper"] - c["lower"] < 1e-3 * delta.norm().item()


def test_adamw_fixed_point_is_ridge_with_its_penalty():
    """At ridge with penalty λ(s+ε), AdamW's residual ∇f + λ(s+ε)θ is zero."""
    P = small_problem()
    s = torch.tensor([0.3, 2.0, 0.01], dtype=torch.float64)
    pen = 0.5 * (s + 1e-8)
    theta = P.ridge_solution(pen)
    r = reg.penalized_gradient(P, theta, pen)
    assert (r.abs() <= reg.gradient_rounding_bound(P, theta, pen)).all()


def test_minibatch_grad_matches_problem_grad():
    P = small_problem()
    gen = torch.Generator().manual_seed(1)
    theta = torch.randn(4, 3, generator=gen, dtype=torch.float64)
    idx = torch.randint(0, P.n, (4, 5), generator=gen)
    got = reg.minibatch_grad(P, theta, idx)
    for r in range(4):
        want = P.grad(theta[r], idx[r])
        assert torch.allclose(got[r], want, rtol=1e-13, atol=1e-15)


def test_decoupled_momentum_settles_at_the_rescaled_ridge():
    """Decoupled decay λ, momentum μ: ridge((1-μ)λ); L2: ridge(λ)."""
    P = small_problem()
    lam, mu = 0.5, 0.9
    lr = 1.0 / torch.linalg.eigvalsh(P.hessian).max().item()
    for decoupled, want in ((False, P.ridge_solution(lam)),
                            (True, P.ridge_solution((1 - mu) * lam))):
        p = torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))
        opt = SGD([p], lr=lr, momentum=mu, weight_decay=lam,
                  decoupled_weight_decay=decoupled)
        for _ in range(3000):
            p.grad = P.grad(p.detach())
            opt.step()
        assert torch.allclose(p.detach(), want, rtol=1e-10, atol=0)


def test_heavy_ball_converges_at_its_rate():
    P = scaled_regression()
    lr, mu = reg.heavy_ball(P, 0.1)
    p = torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))
    opt = SGD([p], lr=lr, momentum=mu, weight_decay=0.1)
    for _ in range(15_000):
        p.grad = P.grad(p.detach())
        opt.step()
    assert reg.certify(P, p.detach(), 0.1)["upper"] < 1e-12


def brute_force_box(P, radius):
    """Minimise over every assignment of each coordinate to -R, free, +R."""
    H, b = P.hessian, P.X.T @ P.y / P.n
    d = H.shape[0]
    best, best_val = None, float("inf")
    for pattern in itertools.product((-1, 0, 1), repeat=d):
        fixed = torch.tensor(pattern, dtype=H.dtype) * radius
        free = torch.tensor([p == 0 for p in pattern])
        theta = fixed.clone()
        if free.any():
            rhs = b[free] - H[free][:, ~free] @ fixed[~free]
            theta[free] = torch.linalg.solve(H[free][:, free], rhs)
        if (theta.abs() > radius * (1 + 1e-12)).any():
            continue
        val = (0.5 * theta @ H @ theta - b @ theta).item()
        if val < best_val:
            best, best_val = theta, val
    return best


@pytest.mark.parametrize("radius", [10.0, 1.2, 0.8, 0.3, 0.05])
@pytest.mark.parametrize("seed", [0, 1])
def test_linf_lstsq_matches_brute_force(radius, seed):
    P = small_problem(seed=seed)
    theta, active = reg.linf_lstsq(P, radius)
    want = brute_force_box(P, radius)
    assert torch.allclose(theta, want, rtol=1e-10, atol=1e-12)
    assert torch.equal(active, theta.abs() >= radius)
