"""adambook.online: Reddi et al.'s problems, the game loop, and the closed forms."""

import math

import numpy as np
import pytest
import torch

import adambook
from adambook import online
from adambook.stats import mean_se, z_bound

U64 = torch.finfo(torch.float64).eps
CS = np.array([2.05, 2.2, 2.5, 3.0, 5.0, 10.0, 30.0, 100.0, 1000.0])


# ------------------------------------------------------------------- problems


def test_reddi_gradient_pattern(device):
    problem = online.ReddiProblem(torch.tensor([3.0, 10.0]), device=device)
    pattern = torch.stack([problem.gradient(t) for t in range(1, 7)]).cpu()
    expected = torch.tensor([[3.0, 10.0], [-1, -1], [-1, -1]] * 2, dtype=torch.float64)
    assert torch.equal(pattern, expected)
    assert problem.gradient(1).device.type == torch.device(device).type


def test_reddi_problem_needs_c_above_two():
    with pytest.raises(ValueError, match="C > 2"):
        online.ReddiProblem(2.0)


def test_stochastic_problem_mean_and_common_draws(device):
    gen = torch.Generator().manual_seed(0)
    problem = online.StochasticReddiProblem(10.0, 1.0, (200_000,),
                                            generator=gen, device=device)
    g = problem.gradient(1).clone()
    assert g.device.type == torch.device(device).type
    assert torch.equal(problem.gradient(1), g)  # one step, one draw
    assert g.dtype == torch.float64
    assert set(g.unique().tolist()) == {-1.0, 10.0}
    m, se = mean_se(g.cpu().numpy())
    # E g = pC - (1-p) = delta; one test at family-wise alpha = 1e-3.
    assert abs(m - 1.0) <= z_bound(1e-3) * se
    assert not torch.equal(problem.gradient(2), g)


def test_stochastic_draws_do_not_depend_on_the_device(device):
    draws = []
    for dev in ("cpu", device):
        gen = torch.Generator().manual_seed(5)
        problem = online.StochasticReddiProblem(
            10.0, 1.0, (1000,), generator=gen, device=dev)
        draws.append(torch.stack([problem.gradient(t) for t in (1, 2)]).cpu())
    assert torch.equal(*draws)


def test_stochastic_problem_validates():
    with pytest.raises(ValueError):
        online.StochasticReddiProblem(1.0, 1.0, (3,), generator=torch.Generator())


# ----------------------------------------------------------------- the game


def test_play_projects_and_counts_regret(device):
    x = torch.linspace(-1, 1, 7, dtype=torch.float64, device=device).requires_grad_()
    problem = online.ReddiProblem(3.0, (7,), device=device)
    opt = adambook.Adam([x], lr=0.7, betas=(0.0, 0.1))
    (traj,) = online.play(opt, [(x, problem)], 30, lr=None, warmup=0,
                          record_every=1, track_regret=True)
    xs = traj.x.cpu()
    assert xs.shape == (31, 7) and traj.steps.tolist() == list(range(31))
    assert ((xs >= -1) & (xs <= 1)).all()
    # The regret, summed directly from the recorded points played.
    g = torch.stack([problem.gradient(t).cpu() for t in range(1, 31)])
    loss = (g * xs[:-1]).sum(0)
    best = torch.minimum(g.sum(0) * -1.0, g.sum(0) * 1.0)
    # Sums of 30 terms of size <= 3: rounding below 30 * 3 * U64 per run.
    torch.testing.assert_close(traj.regret.cpu(), loss - best, rtol=0, atol=90 * U64)
    assert opt.param_groups[0]["lr"] == 0.7 and x.grad is None  # left as found


def test_play_warmup_keeps_points_and_fills_state():
    x = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    problem = online.ReddiProblem(4.0, (3,))
    opt = adambook.Adam([x], lr=0.1, betas=(0.0, 0.5))
    (traj,) = online.play(opt, [(x, problem)], 9, lr=None, warmup=9,
                          record_every=9, track_regret=True)
    zero = torch.zeros(3, dtype=torch.float64)
    assert torch.equal(traj.x[-1], zero) and traj.steps.tolist() == [0, 9]
    assert opt.state[x]["step"] == 9
    assert (opt.state[x]["exp_avg_sq"] > 0).all()
    assert torch.equal(traj.loss_sum, zero)  # the warm-up costs no regret


def test_play_refuses_a_foreign_tensor():
    x = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    opt = adambook.Adam([torch.zeros(2, requires_grad=True)])
    with pytest.raises(ValueError, match="parameter of the optimizer"):
        online.play(opt, [(x, online.ReddiProblem(3.0, (2,)))], 3, lr=None,
                    warmup=0, record_every=1, track_regret=False)


def test_torch_adam_fails_the_same_way(device):
    """The failure is Adam's, not adambook's: torch.optim.Adam plays the same points."""
    runs = {}
    for name, cls in (("adambook", adambook.Adam), ("torch", torch.optim.Adam)):
        xs = [torch.zeros(3, dtype=torch.float64, device=device, requires_grad=True)
              for _ in range(2)]
        opt = cls([{"params": [xs[0]], "amsgrad": False}, {"params": [xs[1]], "amsgrad": True}],
                  lr=0.5, betas=(0.0, 0.1), eps=1e-8)
        problem = online.ReddiProblem(3.0, (3,), device=device)
        trajs = online.play(opt, [(x, problem) for x in xs], 600,
                            lr=lambda t: 0.5 / math.sqrt(t), warmup=0,
                            record_every=1, track_regret=False)
        runs[name] = [t.x.cpu() for t in trajs]
    for a, b in zip(runs["adambook"], runs["torch"]):
        # beta1 = 0: the step does not depend on x, and projection is 1-Lipschitz, so
        # the gap is at most the sum over steps of 8 roundings of the step (<= 0.5).
        assert (a - b).abs().max() <= 600 * 8 * U64 * 0.5
    assert (runs["torch"][0][-1] == 1.0).all()  # Adam at the worst point
    assert (runs["torch"][1][-1] < -0.9).all()  # AMSGrad near the optimum


# ------------------------------------------------------------ closed forms


@pytest.mark.parametrize("beta2", [0.0, 1e-3, 0.1, 0.5, 0.9, 0.99])
def test_periodic_moments_are_the_fixed_point(beta2):
    vA, vB, vC = online.periodic_second_moments(beta2, CS)
    # One more period of the recursion returns the same values (a few roundings).
    np.testing.assert_allclose(beta2 * vC + (1 - beta2) * CS**2, vA, rtol=8 * U64)
    np.testing.assert_allclose(beta2 * vA + (1 - beta2), vB, rtol=8 * U64)
    np.testing.assert_allclose(beta2 * vB + (1 - beta2), vC, rtol=8 * U64)


def test_periodic_moments_match_adam_state():
    """Adam's own v after many periods is the closed form (bias correction gone)."""
    beta2, C = 0.6, 4.0
    x = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = adambook.Adam([x], lr=0.0, betas=(0.0, beta2))
    online.play(opt, [(x, online.ReddiProblem(C, (1,)))], 300, lr=None,
                warmup=0, record_every=300, track_regret=False)
    vA, vB, vC = online.periodic_second_moments(beta2, C)
    # Recursion rounding: <= 3 U64 per step, decaying like beta2^k: 3 U64/(1-beta2).
    assert abs(opt.state[x]["exp_avg_sq"].item() - vC) <= (3 / (1 - beta2) + 12) * U64 * vC


def test_drift_limits():
    # beta2 = 0: each step is -sign(g), so a period moves +1.
    np.testing.assert_allclose(online.drift_per_period(0.0, CS), 1.0, rtol=4 * U64)
    # beta2 -> 1: all three v equal (C^2 + 2)/3, drift (2 - C)/sqrt(v).
    b = 1 - 1e-9
    expected = (2 - CS) / np.sqrt((CS**2 + 2) / 3)
    np.testing.assert_allclose(online.drift_per_period(b, CS), expected, rtol=1e-7)


def test_drift_decreases_in_beta2_so_the_boundary_is_unique():
    b = np.linspace(0.0, 1 - 1e-9, 20_001)[:, None]
    d = online.drift_per_period(b, CS[None, :])
    assert (np.diff(d, axis=0) < 0).all()


def test_boundary_is_the_sign_change():
    bstar = online.boundary_beta2(CS)
    assert ((bstar > 0) & (bstar < 1)).all()
    assert (online.drift_per_period(bstar * (1 - 1e-9), CS) > 0).all()
    assert (online.drift_per_period(bstar * (1 + 1e-9), CS) < 0).all()
    assert (np.diff(bstar) < 0).all()  # larger C, smaller threshold


def test_beta2_below_the_lower_bound_drifts_up():
    # failures.ipynb, eq-bstar-lower: Delta > 0 for beta2 <= 1 - (C-2)(C^2+2)
    # /(C^2-1), so no beta2 < 1 serves every C; C = 2 + (1-beta2)/2 beats it.
    C = 2 + np.geomspace(0.5, 1e-6, 30)[:, None]
    lower = 1 - (C - 2) * (C**2 + 2) / (C**2 - 1)
    b = np.clip(lower, 0, None) * np.linspace(0, 1, 201)[None, :]
    assert (online.drift_per_period(b, C) > 0).all()
    b2 = np.array([0.0, 0.5, 0.9, 0.99, 0.999, 0.9999])
    assert (online.drift_per_period(b2, 2 + (1 - b2) / 2) > 0).all()


def test_reddi_beta2_lies_on_the_failing_side():
    b = online.reddi_beta2(CS)
    assert (b < online.boundary_beta2(CS)).all()
    down_most, up_least = online.reddi_step_bounds(CS)
    # The exact steady drift respects the bound from the single-step bounds.
    assert (online.drift_per_period(b, CS) >= 2 * up_least - down_most).all()
    assert (2 * up_least - down_most > 0).all()


@pytest.mark.parametrize("stochastic", [False, True])
def test_step_bounds_hold_along_real_runs(stochastic, device):
    C, eps = 5.0, 1e-8
    gen = torch.Generator().manual_seed(1)
    problem = (online.StochasticReddiProblem(C, 1.0, (64,), generator=gen, device=device)
               if stochastic else online.ReddiProblem(C, (64,), device=device))
    xs = [torch.zeros(64, dtype=torch.float64, device=device, requires_grad=True)
          for _ in range(2)]
    opt = adambook.Adam([{"params": [xs[0]]}, {"params": [xs[1]], "amsgrad": True}],
                        lr=1.0, betas=(0.0, online.reddi_beta2(C)), eps=eps)
    down_most, up_least = online.reddi_step_bounds(C, eps)
    ams_down, ams_up = online.amsgrad_step_bounds(C, eps)
    seen_big = torch.zeros(64, dtype=torch.bool, device=device)
    slack = 8 * U64  # a step is formed with a few roundings, each <= U64 relative
    with torch.no_grad():
        for t in range(1, 400):
            g = problem.gradient(t)
            before = [x.detach().clone() for x in xs]
            for x in xs:
                x.grad = g
            opt.step()  # no projection here: the bounds are about single steps
            big = g > 0
            seen_big |= big
            sa, sm = xs[0] - before[0], xs[1] - before[1]
            assert (-sa[big] <= down_most * (1 + slack)).all()
            assert (sa[~big] >= up_least * (1 - slack)).all()
            assert (-sm[big] >= ams_down * (1 - slack)).all()
            after = ~big & seen_big
            assert (sm[after] <= ams_up * (1 + slack)).all()


def test_kingman_bound_on_a_simple_walk():
    # Steps +1 with probability q, -1 otherwise: the stationary W is geometric with
    # ratio r = q/(1-q), so E W = q/(1-2q); Kingman gives 2q(1-q)/(1-2q), which is larger.
    for q in (0.1, 0.3, 0.45):
        exact = q / (1 - 2 * q)
        assert exact <= online.lindley_mean_bound(1.0, 1.0, q)
    with pytest.raises(ValueError, match="drift towards the wall"):
        online.lindley_mean_bound(1.0, 1.0, 0.5)


def test_kingman_bound_against_simulation():
    gen = np.random.default_rng(3)
    up, down, q, n = 1.0, 0.3, 0.15, 20_000
    w = np.zeros(n)
    for _ in range(400):  # long past the start: E(start + S_n)^+ is negligible here
        w = np.maximum(0.0, w + np.where(gen.random(n) < q, up, -down))
    m, se = mean_se(w)
    assert m - z_bound(1e-3) * se <= online.lindley_mean_bound(up, down, q)


def test_hoeffding_tail():
    assert online.hoeffding_tail(2.0, 1.0, 1.0, 0.4, 5) == 1.0  # n|mu| = 1 < w0
    tails = [online.hoeffding_tail(2.0, 1.0, 1.0, 0.4, n) for n in (100, 200, 400)]
    assert 0 < tails[2] < tails[1] < tails[0] < 1


def test_schedule_bounds_reach_and_refuse_short_runs():
    b = online.schedule_bounds(3.0, 0.5, 3000, 1e-8)
    assert 0 < b["adam_reach"] < 1000 and 0 < b["ams_reach"] < 1000
    assert (b["adam_lb"][b["adam_reach"]:] > 0).all()
    short = online.schedule_bounds(3.0, 0.5, 6, 1e-8)
    assert short["adam_reach"] is None
