"""The verdict of chapters/adam_vs_sgd.ipynb: right when the code is, and
changed when what the claim rests on is broken; the chapter's guards refuse
parameters that would make its comparison meaningless.

The experiment here is a small copy of the chapter's loop, on two of its
problems (the post's axis-aligned quadratic and the kappa = 100 one), judged
by adambook.judges.adam_vs_sgd.
"""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import adambook.functional
from adambook.judges.adam_vs_sgd import compare, judge_adam_faster
from adambook.stats import z_bound

ROOT = Path(__file__).resolve().parents[1]
CHAPTER = ROOT / "chapters" / "adam_vs_sgd.ipynb"
N_LR, DECADES, N_TUNE, N_EVAL, STEPS, TARGET = 25, 6.0, 4, 30, 1000, 1e-3
STEP_DEC = DECADES / (N_LR - 1)


def race(scales, sgd_per_L=True, seed=1):
    """Adam (row 0) and plain SGD (row 1) on the quadratic with these
    scales, every lr of the grids, N_TUNE + N_EVAL starts; returns tau.
    SGD's grid is in units of 1/L, or Adam's if not ``sgd_per_L``."""
    s = torch.tensor(scales, dtype=torch.float64)
    h, S = s * s, N_TUNE + N_EVAL
    gen = torch.Generator().manual_seed(seed)
    theta = (torch.randn(S, 2, generator=gen, dtype=torch.float64) / s
             ).expand(2, N_LR, S, 2).clone()
    grid = torch.logspace(0, DECADES, N_LR, dtype=torch.float64)
    low = 1e-4 / float(h.max()) if sgd_per_L else 1e-4
    lr = torch.stack([1e-4 * grid, low * grid])[..., None, None]
    m, v = torch.zeros_like(theta[0]), torch.zeros_like(theta[0])
    f0 = 0.5 * (h * theta * theta).sum(-1)
    tau = torch.full(f0.shape, STEPS + 1)
    for t in range(1, STEPS + 1):
        g, u = h * theta, torch.zeros_like(theta)
        adambook.functional.adam([u[0]], [g[0]], [m], [v], [t], lr=1.0,
                                 beta1=0.9, beta2=0.999, eps=1e-8)
        adambook.functional.sgd([u[1]], [g[1]], [None], lr=1.0)
        theta.addcmul_(lr, u)
        hit = (0.5 * (h * theta * theta).sum(-1) <= TARGET * f0) & (
            tau > STEPS)
        tau = torch.where(hit, t, tau)
    return tau.numpy()


def verdict(sgd_per_L=True):
    problems = {"post": (1.0, 1000.0), "kappa 100": (1.0, 10.0)}
    speed, width = {}, {}
    for name, scales in problems.items():
        tau = race(scales, sgd_per_L)
        k = [int(np.argmin(np.median(tau[o, :, :N_TUNE], -1)))
             for o in range(2)]
        ta, ts = tau[0, k[0], N_TUNE:], tau[1, k[1], N_TUNE:]
        speed[name] = (np.log(ts / ta),
                       np.mean((ta > STEPS) & (ts > STEPS)) > 0.5,
                       not ((ta > STEPS) | (ts > STEPS)).any())
        w = (tau[:, :, N_TUNE:] <= STEPS).sum(1) * STEP_DEC
        width[name] = (w[0] - w[1], np.mean((w[0] == 0) & (w[1] == 0)) > .5,
                       False)
    return judge_adam_faster(
        speed, width, z=z_bound(1e-3, 4),
        margins=(STEP_DEC * math.log(10), STEP_DEC),
        problems={n: "convex, exact gradients" for n in problems})


def test_right_code_holds_on_the_axis_aligned_quadratics():
    v = verdict()
    assert v.verdict == "holds", v.measured


def test_adam_without_its_second_moment_is_not_faster(monkeypatch):
    def no_second_moment(params, grads, exp_avgs, exp_avg_sqs, steps, *,
                         lr, beta1, beta2, eps, **_):
        for p, g, m, t in zip(params, grads, exp_avgs, steps):
            m.lerp_(g, 1 - beta1)  # theta <- theta - lr m_hat: no v
            p.add_(m, alpha=-lr / (1 - beta1**t))

    monkeypatch.setattr(adambook.functional, "adam", no_second_moment)
    v = verdict()
    assert v.verdict != "holds", v.measured
    assert "post: +0.00 (neither reaches)" in v.measured


def test_sgd_given_adams_scaling_loses_the_difference(monkeypatch):
    state, adam = {}, adambook.functional.adam

    def scaled_sgd(params, grads, bufs, *, lr, **_):
        """SGD given Adam's per-coordinate scaling, and with it Adam's
        moving average: the real Adam step, with state of its own."""
        for i, (p, g) in enumerate(zip(params, grads)):
            m, v, t = state.get(i, (torch.zeros_like(g), torch.zeros_like(g),
                                    0))
            adam([p], [g], [m], [v], [t + 1], lr=lr, beta1=0.9, beta2=0.999,
                 eps=1e-8)
            state[i] = (m, v, t + 1) if t + 1 < STEPS else (
                torch.zeros_like(g), torch.zeros_like(g), 0)  # next race

    monkeypatch.setattr(adambook.functional, "sgd", scaled_sgd)
    v = verdict(sgd_per_L=False)  # its steps have Adam's size: Adam's grid
    assert v.verdict == "does not hold", v.measured


def test_compare_follows_the_rule():
    d = np.full(30, 1.0) + np.linspace(-0.1, 0.1, 30)
    assert compare(d, False, True, 3.0, 0.5) == "better"
    assert compare(-d, False, True, 3.0, 0.5) == "worse"
    assert compare(d - 1, False, True, 3.0, 0.5) == "no difference"
    assert compare(d - 1, False, False, 3.0, 0.5) == "undecided"
    assert compare(d, True, True, 3.0, 0.5) == "neither reaches"


# The chapter's guards: run its cells with one parameter changed.

def chapter_cells():
    cells = json.loads(CHAPTER.read_text())["cells"]
    return ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]


def run_chapter_until(text, **changes):
    """Execute the chapter's code cells, with ``changes`` applied after the
    parameters cell, up to the cell that contains ``text``."""
    import matplotlib
    matplotlib.use("Agg")
    ns = {}
    for k, src in enumerate(chapter_cells()):
        exec(compile(src, f"cell {k}", "exec"), ns)
        if "DEVICE = adambook.pick_device()" in src:
            ns.update(changes)
        if text in src:
            return ns
    raise AssertionError(f"no cell contains {text!r}")


SMALL = {"N_EVAL": 30, "N_TUNE": 4, "STEPS": 400, "MLP_STEPS": 80}


@pytest.mark.parametrize("change, message", [
    ({"N_LR": 5}, "at least 9 points"),
    ({"N_EVAL": 10}, "N_EVAL must be at least 30"),
    ({"N_TUNE": 2}, "N_TUNE must be at least 4"),
    ({"TARGET": 1.5}, "between 0 and 1"),
    ({"MLP_EVERY": 3}, "multiple of MLP_EVERY"),
    ({"MLP_HIDDEN": 2}, "teacher's units"),
    ({"ANGLE": math.pi}, "axis-aligned"),
])
def test_guards_before_running(change, message):
    with pytest.raises(ValueError, match=message):
        run_chapter_until("require(N_LR", **change)


@pytest.mark.parametrize("change, message", [
    ({"ADAM_LOW": 1.0}, "best learning rate\\s+lies at the edge"),
    ({"MLP_SGD_LOW": 0.1}, "reaches the target at an end of its grid"),
])
def test_guards_after_tuning(change, message):
    with pytest.raises(ValueError, match=message):
        run_chapter_until("best, plan = {}, []", **SMALL, **change)
