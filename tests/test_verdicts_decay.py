"""The weight-decay chapters' verdicts: their experiments at small sizes,
judged, then broken.

Each experiment is a small copy of a chapter's loop (chapters/l2_weight_decay
and chapters/ridge) built from the same package tools; each mutant breaks
what a claim rests on (the place of the decay, the strength of SGD's
decoupled decay) and must change the verdict. The guards of each chapter's
``require`` cell are executed from the notebook itself.
"""

import math
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch

from adambook import decay
from adambook import functional as F
from adambook import regularization as reg
from adambook.judges import decay as J
from adambook.problems import LeastSquares
from adambook.stats import equivalent, z_bound

CHAPTERS = Path(__file__).resolve().parents[1] / "chapters"
LAM, B1, B2, EPS = 0.1, 0.9, 0.999, 1e-8


# ------------------------------------------------ adam_step is the book's Adam


@pytest.mark.parametrize("kind", list(decay.ADAM_MODES))
def test_adam_step_is_functional_adam(kind):
    P = decay.post_problem()
    ref = decay.start_point(P)
    m, v = torch.zeros_like(ref), torch.zeros_like(ref)
    for t in range(1, 301):
        F.adam([ref], [P.grad(ref)], [m], [v], [t], lr=1e-3, beta1=B1,
               beta2=B2, eps=EPS, weight_decay=LAM,
               weight_decay_mode=decay.ADAM_MODES[kind])
    run = decay.run_adam(P, kind, LAM, decay.constant(1e-3, 300),
                         theta0=decay.start_point(P), eps=EPS)
    assert torch.allclose(run["theta"], ref, rtol=1e-12, atol=0)
    assert torch.allclose(run["sqrt_vhat"], (v / (1 - B2**300)).sqrt(),
                          rtol=1e-12, atol=0)


# ------------------------------------------------------------ experiments


def sgd_verdict(device="cpu", steps=300, batch=10):
    """chapters/l2_weight_decay, sec-l2wd-sgd."""
    P = decay.post_problem(device)
    lr = 1.0 / ((P.X * P.X).sum(1).max().item() + LAM)
    gen = torch.Generator().manual_seed(0)
    theta = decay.start_point(P).expand(2, -1).clone()
    gap, budget, total = [], [], 0.0
    for idx in torch.randint(0, P.n, (steps, batch), generator=gen):
        B = LeastSquares(P.X[idx.to(device)], P.y[idx.to(device)])
        g = B.grad(theta)
        err = lr * reg.gradient_rounding_bound(B, theta) + reg.gamma(4) * (
            theta.abs() + lr * g.abs() + lr * LAM * theta.abs())
        total += err.norm(dim=1).sum().item()
        F.sgd([theta[0]], [g[0]], [None], lr=lr, weight_decay=LAM)
        F.sgd([theta[1]], [g[1]], [None], lr=lr, weight_decay=LAM,
              decoupled_weight_decay=True)
        gap.append((theta[0] - theta[1]).norm().item())
        budget.append(total)
    return J.judge_l2_equals_wd_for_sgd(gap, budget, steps, batch, P.n)


def adam_gap_verdict(device="cpu", steps=200, lr=1e-3):
    """chapters/l2_weight_decay, sec-l2wd-adam."""
    P = decay.post_problem(device)
    kinds = ["adamw", "adam_l2", "adam_post"]
    run = decay.run_adam(P, kinds, LAM, decay.constant(lr, steps),
                         theta0=decay.start_point(P), eps=EPS,
                         record_every=1, beta1=B1, beta2=B2)
    w = run["path"][:, 0]
    gaps, budgets = {}, {}
    for k, kind in enumerate(kinds[1:], start=1):
        a = run["path"][:, k]
        gaps[kind] = (a - w).norm(dim=1).cpu().numpy()
        budgets[kind] = torch.cumsum(reg.gamma(8) * (a.abs() + w.abs())
                                     .norm(dim=1), 0).cpu().numpy()
    return J.judge_l2_not_wd_for_adam(gaps, budgets, steps, lr, P.n)


def effective_verdict(device="cpu", steps=3000, lrs=(1e-2, 1e-3), every=20):
    """chapters/l2_weight_decay, sec-l2wd-effective: both regimes."""
    P = decay.post_problem(device)
    kinds = ["adam_post"] * len(lrs) + ["adam_l2"] * len(lrs)
    lr = torch.tensor(list(lrs) * 2, dtype=P.X.dtype, device=device)[:, None]
    run = decay.run_adam(P, kinds, LAM, decay.constant(lr, steps), eps=EPS,
                         record_every=every, measure_decay=True, beta1=B1,
                         beta2=B2)
    conv = decay.run_adam(P, ["adam_post", "adam_l2"], LAM,
                          decay.hold_then_decay(1e-2, 1e-9, 5_000, 40_000),
                          eps=EPS, record_every=every, beta1=B1, beta2=B2)
    d = run["denom"]
    ratio = (d[..., 1] / d[..., 0]).cpu().numpy()
    post = slice(0, len(lrs))
    rel = ((run["decay"][:, post] - LAM / d[:, post]).abs() * d[:, post]
           / LAM - run["decay_rounding"][:, post] - reg.gamma(1))
    cr = (conv["denom"][-1, :, 1] / conv["denom"][-1, :, 0]).tolist()
    ridge = P.ridge_solution(LAM)
    limit = ((LAM * ridge[1] + EPS) / (LAM * ridge[0] + EPS)).item()
    col = (P.X[:, 1].norm() / P.X[:, 0].norm()).item()
    return J.judge_nonuniform_effective_decay(
        ratio.min(), bool((rel <= 0).all()),
        {"post": cr[0], "torch": cr[1]}, limit, col, lrs, steps, 40_000,
        P.n)


def ridge_verdicts(device="cpu", runs=300, steps=10_000, lr=1e-3):
    """chapters/ridge: full batch (a shorter schedule) and minibatches."""
    P = decay.post_problem(device)
    ridge = P.ridge_solution(LAM)
    schedule = decay.hold_then_decay(1e-2, 1e-9, hold=2_000, total=12_000)
    full = decay.run_adam(P, ["adam_l2", "adam_post", "adamw"], LAM,
                          schedule, eps=EPS, beta1=B1, beta2=B2,
                          record_every=100, measure_decay=True)
    tol = decay.relative_accuracy(P, LAM) * ridge.norm().item()
    certs = [reg.certify(P, th, LAM)["upper"] for th in full["theta"][:2]]
    lr_hb, mu = reg.heavy_ball(P, LAM)
    sgd, buf = torch.zeros_like(ridge), [None]
    for _ in range(15_000):
        F.sgd([sgd], [P.grad(sgd)], buf, lr=lr_hb, momentum=mu,
              weight_decay=LAM)
    kinds = list(decay.ADAM_MODES)
    l2, post, dec = (torch.tensor([LAM * (k == p) for k in kinds],
                                  dtype=P.X.dtype, device=device)[:, None,
                                                                  None]
                     for p in kinds)
    theta = torch.zeros(3, runs, 2, dtype=P.X.dtype, device=device)
    m, v, avg = (torch.zeros_like(theta) for _ in range(3))
    gen = torch.Generator().manual_seed(0)
    for t in range(1, steps + 1):
        idx = torch.randint(0, P.n, (runs, 1), generator=gen).to(device)
        g = reg.minibatch_grad(P, theta, idx)
        decay.adam_step(theta, g, m, v, t, lr, l2, post, dec, B1, B2, EPS)
        if t > steps // 2:
            avg += theta
    avg /= steps - steps // 2
    mean, se = avg.mean(1), avg.std(1) / math.sqrt(runs)
    z_ridge = (mean - ridge) / se
    z = z_bound(1e-3, 6)
    margin = (P.ridge_solution(1.1 * LAM) - ridge).abs()[0].item()
    equiv = [bool(equivalent((mean[i] - ridge)[0].item(), se[i, 0].item(),
                             margin, z)) for i in range(2)]
    v_ridge = J.judge_ridge_stationary_point(
        certs, tol, z_ridge[:2].cpu().numpy(), z, equiv, margin, LAM,
        schedule.total, runs, steps, P.n)
    w_ridge = reg.certify(P, full["theta"][2], LAM)
    v_fix = J.judge_adamw_fixes_it(w_ridge,
                                   reg.certify(P, full["theta"][2], 0.0),
                                   tol, LAM, schedule.total, P.n, 0.0)
    v_sgd = J.judge_sgd_converges_to_ridge(
        reg.certify(P, sgd, LAM)["upper"], tol, LAM, 15_000, P.n)
    v_obj = J.judge_adam_l2_same_objective(certs, w_ridge["lower"], tol,
                                           LAM, schedule.total, P.n)
    rel = (full["decay"][1:, 2] / LAM - 1).abs().cpu().numpy()
    bound = (full["decay_rounding"][1:, 2] + 2 * reg.gamma(1)).cpu().numpy()
    v_step = J.judge_adamw_decouples_per_step(rel, bound, (LAM,),
                                              schedule.total, P.n)
    return {v.key: v.verdict for v in (v_ridge, v_fix, v_sgd, v_obj,
                                       v_step)}


# ---------------------------------------------------------------- mutants


def _move_decay(l2_to_decoupled):
    """decay.adam_step with the decay moved: Adam + L2 (both forms) made
    decoupled, or AdamW's decay made L2."""
    original = decay.adam_step

    def broken(theta, g, m, v, t, lr, l2, post, dec, beta1, beta2, eps):
        if l2_to_decoupled:
            l2, post, dec = 0.0, 0.0, dec + l2 + post
        else:
            l2, dec = l2 + dec, 0.0
        return original(theta, g, m, v, t, lr, l2, post, dec, beta1, beta2,
                        eps)

    return broken


def _strong_decoupled_sgd():
    """adambook.functional.sgd with decoupled decay twice as strong."""
    original = F.sgd

    def broken(*args, **kwargs):
        if kwargs.get("decoupled_weight_decay"):
            kwargs["weight_decay"] = 2 * kwargs["weight_decay"]
        return original(*args, **kwargs)

    return broken


def test_l2_equals_wd_for_sgd(device, monkeypatch):
    assert sgd_verdict(device).verdict == "holds"
    monkeypatch.setattr(F, "sgd", _strong_decoupled_sgd())
    assert sgd_verdict().verdict == "does not hold"


def test_l2_not_wd_for_adam(device, monkeypatch):
    assert adam_gap_verdict(device).verdict == "holds"
    monkeypatch.setattr(decay, "adam_step", _move_decay(True))
    assert adam_gap_verdict().verdict == "does not hold"


def _post_sees_penalty():
    """decay.adam_step with the post's form turned into torch's: the
    moments see λθ, so at ridge v̂ vanishes instead of tending to λθ*."""
    original = decay.adam_step

    def broken(theta, g, m, v, t, lr, l2, post, dec, beta1, beta2, eps):
        return original(theta, g, m, v, t, lr, l2 + post, 0.0, dec, beta1,
                        beta2, eps)

    return broken


def _decoupled_sgd():
    """adambook.functional.sgd with every weight decay made decoupled."""
    original = F.sgd

    def broken(*args, **kwargs):
        kwargs["decoupled_weight_decay"] = True
        return original(*args, **kwargs)

    return broken


def test_nonuniform_effective_decay(device, monkeypatch):
    want = "holds with a qualification"
    assert effective_verdict(device).verdict == want
    # the post's form made torch's: its rate is no longer eq-effective-decay
    monkeypatch.setattr(decay, "adam_step", _post_sees_penalty())
    assert effective_verdict().verdict == "does not hold"
    # had the converged post's form kept the ratio above one: "holds"
    v = J.judge_nonuniform_effective_decay(74.0, True, {"post": 2.0,
                                                        "torch": 2e3},
                                           1e-3, 966.0, (1e-2,), 10, 10, 200)
    assert v.verdict == "holds"


WANT = {"ridge-stationary-point": "does not hold",
        "adamw-fixes-it": "does not hold",
        "sgd-converges-to-ridge": "holds",
        "adam-l2-same-objective": "holds with a qualification",
        "adamw-decouples-per-step": "holds"}


def test_ridge_verdicts(device):
    assert ridge_verdicts(device) == WANT


def test_ridge_mutant_adam_l2_decoupled(monkeypatch):
    monkeypatch.setattr(decay, "adam_step", _move_decay(True))
    got = ridge_verdicts()
    assert got["ridge-stationary-point"] == "holds"
    assert got["adam-l2-same-objective"] == "holds"


def test_adamw_mutant_decay_as_l2(monkeypatch):
    monkeypatch.setattr(decay, "adam_step", _move_decay(False))
    got = ridge_verdicts()
    assert got["adamw-fixes-it"] == "holds"
    assert got["adam-l2-same-objective"] == "does not hold"
    assert got["adamw-decouples-per-step"] == "does not hold"


def test_sgd_mutant_decoupled(monkeypatch):
    monkeypatch.setattr(F, "sgd", _decoupled_sgd())
    assert ridge_verdicts()["sgd-converges-to-ridge"] == "does not hold"


# ---------------------------------------------------- the chapters' guards


def _chapter_namespace(name):
    """Run a chapter's cells up to its parameters cell; return the
    namespace and the source of the require cell that follows."""
    cells = [c for c in nbformat.read(CHAPTERS / f"{name}.ipynb", 4).cells
             if c.cell_type == "code"]
    i = next(k for k, c in enumerate(cells)
             if "parameters" in c.metadata.get("tags", []))
    ns = {}
    for cell in cells[:i + 1]:
        exec(cell.source, ns)
    return ns, cells[i + 1].source


@pytest.mark.parametrize("name", ["l2_weight_decay", "ridge"])
def test_the_chapter_parameters_pass_the_guards(name):
    ns, guards = _chapter_namespace(name)
    exec(guards, ns)


@pytest.mark.parametrize("name, change, message", [
    ("l2_weight_decay", {"DTYPE": torch.float32}, "float64"),
    ("l2_weight_decay", {"LAM": 0.0}, "LAM must be positive"),
    ("l2_weight_decay", {"SGD_BATCH": 0}, "at least 1"),
    ("l2_weight_decay", {"BETA2": 1.0}, "0 < BETA1"),
    ("l2_weight_decay", {"MOM_STEPS": 5_000}, "too few for the heavy ball"),
    ("l2_weight_decay", {"EFF_EVERY": 0}, "EFF_EVERY"),
    ("ridge", {"DTYPE": torch.float32}, "float64"),
    ("ridge", {"LAM": 0.0}, "must be positive"),
    ("ridge", {"TOTAL": 20_000}, "at most sqrt"),
    ("ridge", {"LAM_ACTIVE": 0.5}, "must cut"),
    ("ridge", {"SGD_STEPS": 5_000}, "too few for the heavy ball"),
    ("ridge", {"MB_RUNS": 100}, "too few for the z-bound"),
    ("ridge", {"MB_STEPS": 1_000}, "cannot"),
    ("ridge", {"EQ_PENALTY": 0.0}, "EQ_PENALTY"),
    ("l2_weight_decay", {"CONV_TOTAL": 20_000}, "converged run"),
])
def test_a_bad_parameter_is_refused(name, change, message):
    ns, guards = _chapter_namespace(name)
    ns.update(change)
    with pytest.raises(ValueError, match=message):
        exec(guards, ns)
