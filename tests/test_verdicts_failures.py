"""The verdicts of chapters/failures.ipynb: right when the code is, and wrong
when what each claim rests on is broken; the chapter's guards refuse
parameters that would make its tests meaningless.

The experiments here are small copies of the chapter's cells, built from
adambook.online and judged by adambook.judges.failures.
"""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import adambook
import adambook.functional
from adambook import online
from adambook.judges.failures import (judge_adam_nonconvergence,
                                      judge_large_beta2_converges)
from adambook.stats import mean_se, z_bound

ROOT = Path(__file__).resolve().parents[1]
U64 = torch.finfo(torch.float64).eps
EPS = 1e-8


def nonconvergence(Cs=(3.0, 10.0), n_starts=5, steps=1500, alpha=0.5,
                   C_sto=10.0, delta=1.0, eta=0.1, steps_sto=4000,
                   n_runs=400):
    """The chapter's sec-failures-reddi and sec-failures-stochastic, small."""
    starts = torch.linspace(-1, 1, n_starts, dtype=torch.float64)
    groups, games = [], []
    for C in Cs:
        problem = online.ReddiProblem(C, (n_starts,))
        for amsgrad in (False, True):
            x = starts.clone().requires_grad_()
            groups.append({"params": [x], "amsgrad": amsgrad,
                           "betas": (0.0, online.reddi_beta2(C))})
            games.append((x, problem))
    trajs = online.play(adambook.Adam(groups, lr=alpha, eps=EPS), games,
                        steps, lr=lambda t: alpha / math.sqrt(t), warmup=0,
                        record_every=1, track_regret=True)
    det = []
    first = np.arange(1, steps + 1) % 3 == 1
    for C, adam, ams in zip(Cs, trajs[0::2], trajs[1::2]):
        b = online.schedule_bounds(C, alpha, steps, EPS)
        ka, km = b["adam_reach"], b["ams_reach"]
        xa, xm = adam.x.numpy(), ams.x.numpy()
        g = np.where(first, C, -1.0)[:, None]
        r_a, r_m = g * (xa[:-1] + 1), g * (xm[:-1] + 1)
        k = max(ka, km) + 1
        ra, rm = (adam.regret / steps).numpy(), (ams.regret / steps).numpy()
        det.append({
            "C": C, "x_T_adam": xa[-1], "x_T_ams": xm[-1],
            "ends_adam": xa[3::3][ka:], "ends_ams": xm[3::3][km:],
            "band": b["ams_band"][km:, None] + 2 * U64,
            "tail_adam": r_a[3 * k:].mean(0), "tail_ams": r_m[3 * k:].mean(0),
            "adam_bounds": (2 * (C - 2) / 3,
                            2 * (C - 2) / 3 + 2 / 3 * b["adam_s_A_max"][k]),
            "ams_bounds": (-b["alpha_t"][3 * k + 1] * b["ams_up"] / 3,
                           C * b["ams_band"][k - 1] / 3),
            "slack": (steps - 3 * k) * 2 * C * U64,
            "regret_adam": ra, "regret_ams": rm,
            "regret_gap": max(np.abs(ra - r_a.mean(0)).max(),
                              np.abs(rm - r_m.mean(0)).max()),
            "regret_slack": 2 * steps * 2 * C * U64})

    p = (1 + delta) / (C_sto + 1)
    down_most, up_least = online.reddi_step_bounds(C_sto, EPS)
    up_a, down_a = eta * float(down_most), eta * up_least
    ams_down, ams_up = online.amsgrad_step_bounds(C_sto, EPS)
    down_m, up_m = eta * float(ams_down), eta * float(ams_up)

    def bound_adam(t):
        return (online.lindley_mean_bound(up_a, down_a, p)
                + 2 * online.hoeffding_tail(1.0, up_a, down_a, p, t))

    def bound_ams(t):
        return online.lindley_mean_bound(up_m, down_m, 1 - p) + 2 * (
            (1 - p) ** (t // 2)
            + online.hoeffding_tail(2.0, up_m, down_m, 1 - p, t // 2))

    gen = torch.Generator().manual_seed(11)
    problem = online.StochasticReddiProblem(C_sto, delta, (n_runs,),
                                            generator=gen)
    xs = [torch.zeros(n_runs, dtype=torch.float64, requires_grad=True)
          for _ in range(2)]
    opt = adambook.Adam([{"params": [xs[0]], "amsgrad": False},
                         {"params": [xs[1]], "amsgrad": True}], lr=eta,
                        betas=(0.0, online.reddi_beta2(C_sto)), eps=EPS)
    ta, tm = online.play(opt, [(x, problem) for x in xs], steps_sto, lr=None,
                         warmup=0, record_every=10, track_regret=True)
    tail = ta.steps.numpy() >= steps_sto // 2
    d_a, d_m = 1 - ta.x.numpy(), tm.x.numpy() + 1
    sto = {"mean_gradient": (*mean_se((ta.grad_sum / steps_sto).numpy()),
                             delta)}
    for name, d, bound in (
            ("adam_end", d_a[-1], bound_adam(steps_sto)),
            ("adam_tail", d_a[tail].mean(0), bound_adam(steps_sto // 2)),
            ("ams_end", d_m[-1], bound_ams(steps_sto)),
            ("ams_tail", d_m[tail].mean(0), bound_ams(steps_sto // 2))):
        sto[name] = (*mean_se(d), bound)
    return judge_adam_nonconvergence(
        det, sto, z_bound(1e-3, 5), margin=0.1 * delta, alpha=alpha,
        steps=steps,
        n_starts=n_starts, sto_setup=(C_sto, delta, eta, n_runs, steps_sto))


def boundary(n_b=10, n_c=16, eta=0.05, periods=600):
    """The chapter's sec-failures-boundary, on a smaller grid."""
    lg = np.linspace(math.log(1e-3 / (1 - 1e-3)), math.log(0.95 / 0.05), n_b)
    b2 = 1 / (1 + np.exp(-lg))
    Cs = np.geomspace(2.2, 100.0, n_c)
    W = 3 * math.ceil(math.log(1e-13) / math.log(b2.max()) / 3)
    problem = online.ReddiProblem(torch.as_tensor(Cs))
    xs = [torch.zeros(n_c, dtype=torch.float64, requires_grad=True)
          for _ in b2]
    opt = adambook.Adam([{"params": [x], "betas": (0.0, float(b))}
                         for x, b in zip(xs, b2)], lr=eta, eps=EPS)
    steps = W + 3 * periods
    trajs = online.play(opt, [(x, problem) for x in xs], steps, lr=None,
                        warmup=W, record_every=W, track_regret=False)
    x_warm = torch.stack([t.x[1] for t in trajs]).numpy()
    x_end = torch.stack([x.detach() for x in xs]).numpy()
    v_end = torch.stack([opt.state[x]["exp_avg_sq"] for x in xs]).numpy()
    B, CC = np.meshgrid(b2, Cs, indexing="ij")
    drift = online.drift_per_period(B, CC, EPS)
    decided = periods >= 1 / (eta * np.abs(drift)) + 1
    _, vB, vC = online.periodic_second_moments(B, CC)
    s_BC = eta * (1 / (np.sqrt(vB) + EPS) + 1 / (np.sqrt(vC) + EPS))
    predicted = np.where(drift > 0, 1.0, -1.0 + s_BC)
    rel_v = 3 * U64 / (1 - B) + 12 * U64 + B**steps
    tol = np.where(drift > 0, 0.0,
                   s_BC * (rel_v / 2 + 8 * U64 + B**steps) + 2 * U64)
    b_first = np.concatenate([b2, [0.99, 0.999, 0.9999]])
    C_bad = 2 + (1 - b_first) / 2
    C_near = 2 + np.geomspace(1e-1, 1e-6, 6)
    lower = 1 - (C_near - 2) * (C_near**2 + 2) / (C_near**2 - 1)
    return judge_large_beta2_converges(
        b2, Cs, x_end, predicted, tol, decided, drift, v_end, vC, rel_v,
        x_warm, online.boundary_beta2(Cs, EPS),
        (b_first, online.drift_per_period(b_first, C_bad, EPS)),
        (C_near, online.boundary_beta2(C_near, EPS), lower),
        eta=eta, periods=periods)


def _wrap_adam(**change):
    """A broken adambook.functional.adam: keyword arguments changed."""
    original = adambook.functional.adam

    def broken(*args, **kwargs):
        for arg, f in change.items():
            kwargs[arg] = f(kwargs.get(arg))
        if kwargs.get("amsgrad") is False:
            kwargs.pop("max_exp_avg_sqs", None)
        return original(*args, **kwargs)

    return broken


CLAIMS = {
    # AMSGrad forgets its running maximum and becomes Adam
    "adam-nonconvergence": (nonconvergence, {"amsgrad": lambda a: False}),
    # the second moment decays with beta2^2 instead of beta2
    "large-beta2-converges": (boundary, {"beta2": lambda b: b * b}),
}


class _ForgetfulSampler(online.StochasticReddiProblem):
    """The stochastic problem with its mean gradient off by 30 % of delta."""

    def __init__(self, C, delta, shape, **kw):
        super().__init__(C, 0.7 * delta, shape, **kw)


def test_biased_sampler_fails_the_equivalence_test(monkeypatch):
    monkeypatch.setattr(online, "StochasticReddiProblem", _ForgetfulSampler)
    assert nonconvergence().verdict == "does not hold"


def test_near_two_bound_broken_flips_the_verdict(monkeypatch):
    # A threshold that stayed away from 1 as C -> 2 would break the bound.
    real = online.boundary_beta2
    monkeypatch.setattr(online, "boundary_beta2",
                        lambda C, eps=0.0: np.minimum(real(C, eps), 0.99))
    assert boundary().verdict == "does not hold"


@pytest.mark.parametrize("key", sorted(CLAIMS))
def test_claim_holds(key):
    experiment, _ = CLAIMS[key]
    v = experiment()
    assert v.key == key and v.verdict == "holds", v.measured


@pytest.mark.parametrize("key", sorted(CLAIMS))
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_mutant_flips_the_verdict(key, monkeypatch):
    experiment, change = CLAIMS[key]
    monkeypatch.setattr(adambook.functional, "adam", _wrap_adam(**change))
    assert experiment().verdict == "does not hold"


# -------------------------------------------------------- the chapter's guards


def _chapter_cells():
    cells = json.loads((ROOT / "chapters/failures.ipynb").read_text())["cells"]
    code = [c for c in cells if c["cell_type"] == "code"]
    i = next(k for k, c in enumerate(code)
             if "parameters" in c["metadata"].get("tags", []))
    src = ["".join(c["source"]) for c in code]
    bounds = next(s for s in src if "def bound_adam" in s)
    return src[i - 1], src[i], src[i + 1], bounds


@pytest.mark.parametrize("override", [
    "DTYPE = torch.float32",
    "BETA1 = 0.9",
    "C_VALUES = (2.0, 3.0)",
    "C_GRID = np.geomspace(1.5, 100.0, 40)",
    "STEPS = 3001",
    "STEPS = 60",
    "N_RUNS = 10",
    "BETA2_GRID = np.array([1e-3, 2e-3, 3e-3])",
    "BETA2_GRID = np.linspace(1e-3, 0.5, 20)",
    "PERIODS = 5",
    "STEPS_STO = 40",
    "G_MARGIN = 0.001",
    "G_MARGIN = 2.0",
    "BETA2_PRACTICE = (0.999, 1.0)",
    "C_NEAR_TWO = 2 + np.geomspace(1e-1, 1e-12, 6)",
])
def test_chapter_refuses_meaningless_parameters(override):
    imports, parameters, guards, bounds = _chapter_cells()
    env = {}
    exec(imports, env)
    exec(parameters + "\n" + override, env)
    with pytest.raises(ValueError):
        exec(guards, env)
        exec(bounds, env)


def test_chapter_guards_pass_the_chapter_parameters():
    imports, parameters, guards, bounds = _chapter_cells()
    env = {}
    for src in (imports, parameters, guards, bounds):
        exec(src, env)
