"""Verdicts of chapters/sgd: small copies of its experiments, judged, then broken.

Each claim's experiment runs at small sizes with the loops of the chapter (built
from adambook.minibatch and adambook.SGD; the chapter's own closed forms are read
from the notebook), is judged by adambook.judges.sgd, and must get the chapter's
verdict; then a mutant (ported from tests/test_claims.py) breaks what the claim
rests on, and the verdict must change. Last, every `require` guard of the
chapter's parameters cell raises ValueError on a bad value.
"""

import ast
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import adambook
import adambook.functional
from adambook import minibatch as mb
from adambook.judges.sgd import judge_sgd_noise, judge_sgd_one_lr
from adambook.problems import Quadratic, scaled_regression
from adambook.stats import (equivalent, linear_fit, mean_se, variance_se,
                            z_bound)
from adambook.verdicts import require

CHAPTER = Path(__file__).resolve().parents[1] / "chapters" / "sgd.ipynb"
QUALIFIED = "holds with a qualification"
MARGIN = 0.1  # the chapter's SLOPE_MARGIN


def _code_cells():
    cells = json.loads(CHAPTER.read_text())["cells"]
    return [c for c in cells if c["cell_type"] == "code"]


def chapter_functions():
    """Every top-level function the chapter defines, compiled from its cells."""
    ns = {"np": np, "math": math, "torch": torch, "adambook": adambook}
    for cell in _code_cells():
        tree = ast.parse("".join(cell["source"]))
        defs = [n for n in tree.body if isinstance(n, ast.FunctionDef)]
        exec(compile(ast.Module(defs, []), str(CHAPTER), "exec"), ns)
    return ns


CH = chapter_functions()


# ---------------------------------------------------------------- sgd-noise


def jitter_msd(prob, lr, b, steps, chains, gen):
    """The chapter's jitter loop: mean of |θ_T - θ*|² over chains, and its SE."""
    n, d = prob.X.shape
    theta_star = prob.lstsq_solution()
    p = torch.nn.Parameter(theta_star.expand(chains, d).clone())
    opt = adambook.SGD([p], lr=lr)
    perm = torch.arange(n, device=prob.X.device).unsqueeze(1)
    perm = perm.expand(n, chains).clone()
    for _ in range(steps):
        idx = mb.sample_batches(chains, n, b, gen, perm=perm)
        xb, yb = prob.X[idx], prob.y[idx]
        resid = torch.einsum("cbd,cd->cb", xb, p.detach()) - yb
        p.grad = torch.einsum("cbd,cb->cd", xb, resid) / b
        opt.step()
    final = (p.detach() - theta_star).cpu().numpy()
    msd, se = mean_se((final**2).sum(1))
    return float(msd), float(se)


def noise_measurements(tails_n=20000):
    """The chapter's noise measurements at small sizes, as judge arguments."""
    n = 200
    prob = scaled_regression(n=n, scales=(1.0, 1000.0), noise=0.1, seed=0)
    sizes = np.array([1, 2, 4, 8, 16, 64, 150, 199])
    theta = torch.zeros(2, dtype=torch.float64)
    g = mb.per_example_gradients(prob, theta)
    full, sigma2 = g.mean(0).numpy(), ((g - g.mean(0)) ** 2).mean(0).numpy()
    gen = torch.Generator().manual_seed(1)
    rows = []
    for b in sizes.tolist():
        x = mb.minibatch_gradient_samples(g, b, 10000, gen).numpy()
        rows.append((*mean_se(x), *variance_se(x)))
    m, m_se, v, v_se = map(np.array, zip(*rows))

    jprob = scaled_regression(n=1000, scales=(1.0, 2.0), noise=1.0, seed=1)
    h_min = torch.linalg.eigvalsh(jprob.hessian).min().item()
    settings = [(0.1, 1), (0.1, 4), (0.1, 16), (0.2, 4), (0.05, 4)]
    jgen = torch.Generator().manual_seed(3)
    runs = []
    for lr, b in settings:
        steps = math.ceil(4.0 / (lr * h_min))
        msd, se = jitter_msd(jprob, lr, b, steps, 500, jgen)
        exact = mb.sgd_second_moment(jprob, lr, b, steps).trace().item()
        runs.append((lr, b, msd, se, exact))

    n_tests = 2 * len(sizes) * 2 + 4 * 2 + len(runs)
    z = z_bound(1e-3, n_tests)
    c_b = mb.finite_population_factor(n, sizes)
    fpc = (n - sizes) / (n - 1)
    slopes = [mb.loglog_slope(sizes, v[:, j] / fpc, v_se[:, j] / fpc)
              for j in range(2)]
    regime = sizes <= 0.1 * n
    post = [mb.loglog_slope(sizes[regime], v[regime, j], v_se[regime, j])
            for j in range(2)]
    slope, slope_se = (np.array([s[k] for s in slopes]) for k in (0, 3))
    post_slope, post_se = (np.array([s[k] for s in post]) for k in (0, 3))
    tails = scaled_regression(n=tails_n, scales=(1.0, 1000.0), noise=0.1,
                              seed=2)
    kurt, kurt_se = CH["excess_kurtosis"](
        mb.per_example_gradients(tails, theta).numpy())

    def drops(sweep):
        return [(a[2] - c[2]) / math.hypot(a[3], c[3])
                for a, c in zip(sweep, sweep[1:])]

    by_size = sorted((r for r in runs if r[0] == 0.1), key=lambda r: r[1])
    by_lr = sorted((r for r in runs if r[1] == 4), key=lambda r: -r[0])
    return dict(
        z=z, n_tests=n_tests, batch_sizes=sizes, mean_z=(m - full) / m_se,
        var_z=(v - np.outer(c_b, sigma2)) / v_se, slope=slope,
        slope_se=slope_se, slope_z=(slope + 1) / slope_se,
        slope_equivalent=equivalent(slope + 1, slope_se, MARGIN, z),
        post_slope=post_slope, post_se=post_se,
        post_equivalent=equivalent(post_slope + 1, post_se, MARGIN, z),
        margin=MARGIN,
        jitter_z=np.array([(r[2] - r[4]) / r[3] for r in runs]),
        drops=np.array(drops(by_size) + drops(by_lr)),
        no_batch_z=(v - np.outer(fpc, sigma2)) / v_se,
        kurtosis=kurt, kurtosis_z=kurt / kurt_se, scope="small test sizes")


def noise_verdict():
    return judge_sgd_noise(**noise_measurements())


def test_noise_holds():
    assert noise_verdict().verdict == "holds"


def test_noise_mutant_large_n_rule(monkeypatch):
    # the minibatch variance factor replaced by the large-N rule 1/|B|
    monkeypatch.setattr(mb, "finite_population_factor",
                        lambda n, b: 1.0 / np.asarray(b, dtype=float))
    assert noise_verdict().verdict == "does not hold"


def test_noise_mutant_gaussian_gradients(monkeypatch):
    # per-example gradients replaced by Gaussian ones of the same mean and
    # covariance: every exact formula still holds, the outliers do not
    original = mb.per_example_gradients

    def gaussian(problem, theta):
        g = original(problem, theta)
        gen = torch.Generator().manual_seed(7)
        w = torch.randn(g.shape, generator=gen, dtype=g.dtype)
        chol = torch.linalg.cholesky(torch.cov(g.T))
        return g.mean(0) + w @ chol.T

    monkeypatch.setattr(mb, "per_example_gradients", gaussian)
    assert noise_verdict().verdict == QUALIFIED


def test_noise_qualified_when_the_post_regime_fails():
    # the judge's other arm: the raw slope where b << N not equivalent to -1
    m = noise_measurements(tails_n=2000)
    m["post_equivalent"] = np.array([False, True])
    assert judge_sgd_noise(**m).verdict == QUALIFIED


# --------------------------------------------------------------- sgd-one-lr


def one_lr_verdict(eps=(1e-1, 1e-3, 1e-6), steps=2000,
                   kappas=(10.0, 10**1.5, 100.0), tol=1e-6):
    edge = Quadratic.from_scales([1.0, 1000.0])
    eps = np.asarray(eps)
    lrs = np.concatenate([1 - eps, 1 + eps]) * edge.gd_max_stable_lr
    theta0 = torch.ones(2, dtype=torch.float64)
    path = CH["run_sgd"](edge, theta0, [(lr, 0.0) for lr in lrs], steps)
    t = torch.arange(steps + 1, dtype=torch.float64).unsqueeze(1)
    lr_col = torch.tensor(lrs)[:, None, None]
    closed = (1 - lr_col * edge.curvatures) ** t * theta0
    gap = ((path - closed).abs() / closed.abs()).amax((1, 2)).numpy()
    stiff = path[:, -1, 1].abs().numpy()

    kappas = np.asarray(kappas)
    mu, L = 2 / (kappas + 1), 2 * kappas / (kappas + 1)
    gd, hb, hb_pred = [], [], []
    gd_pred = CH["gd_iterations"](kappas, tol)
    for k, kap in enumerate(kappas):
        quad = Quadratic(torch.tensor([mu[k], L[k]], dtype=torch.float64))
        run = CH["run_sgd"](quad, theta0, [(1.0, 0.0)], int(gd_pred[k]) + 2)
        gd.append(CH["first_below"](run[0].norm(dim=1) / math.sqrt(2), tol))
        q = (math.sqrt(kap) - 1) / (math.sqrt(kap) + 1)
        lr = 4 / (math.sqrt(L[k]) + math.sqrt(mu[k])) ** 2
        n = int(4 * math.sqrt(kap) * math.log(1 / tol))
        run = CH["run_sgd"](quad, theta0, [(lr, q * q)], n)
        hb.append(CH["first_below"](run[0].norm(dim=1) / math.sqrt(2), tol))
        hb_pred.append(CH["first_below"](CH["heavy_ball_norms"](kap, n), tol))
    slope = linear_fit(np.log(kappas), np.log(gd))[0]
    return judge_sgd_one_lr(
        stiff_below=stiff[:len(eps)], stiff_above=stiff[len(eps):],
        closed_form_gap=gap, rounding=(8 * steps + 2) * 2.0**-53,
        gd=np.array(gd), gd_predicted=gd_pred, heavy_ball=np.array(hb),
        heavy_ball_predicted=np.array(hb_pred), slope=slope,
        slope_bound=CH["gd_slope_bound"](kappas, tol),
        hb_slope=linear_fit(np.log(kappas), np.log(hb))[0],
        eps_min=eps.min(), scope="small test sizes")


def test_one_lr_holds_with_its_qualification():
    assert one_lr_verdict().verdict == QUALIFIED


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # log of -1 steps
def test_one_lr_mutant_half_step(monkeypatch):
    # SGD takes half the step it is asked for, so the 2/L edge moves
    original = adambook.functional.sgd

    def half_step(*args, **kwargs):
        return original(*args, **{**kwargs, "lr": 0.5 * kwargs["lr"]})

    monkeypatch.setattr(adambook.functional, "sgd", half_step)
    assert one_lr_verdict().verdict == "does not hold"


# ------------------------------------------------------ the chapter's guards


def _guard_cells():
    cells = _code_cells()
    k = next(i for i, c in enumerate(cells)
             if "parameters" in c["metadata"].get("tags", []))
    return "".join(cells[k]["source"]), "".join(cells[k + 1]["source"])


@pytest.mark.parametrize("change", [
    "DTYPE = torch.float32",
    "ALPHA = 1.5",
    "NOISE_SIZES = (1, 2, 4, 1000)",
    "NOISE_SIZES = (1, 2, 4, 8)",
    "NOISE_DRAWS = 100",
    "JITTER_CHAINS = 50",
    "JITTER_LRS = (0.05, 0.2)",
    "EDGE_EPS = (1e-1, 1e-17)",
    "EDGE_EPS = (1e-1, 1e-15)",
    "POST_REGIME = 0.001",
    "SLOPE_MARGIN = 0.3",
    "TAILS_N = 100_000",
    "KAPPAS = (10.0, 100.0)",
    "TOL = 0.0",
])
def test_a_bad_parameter_is_refused(change):
    params, guards = _guard_cells()
    ns = {"adambook": adambook, "torch": torch, "require": require}
    exec(params + "\n" + change, ns)
    with pytest.raises(ValueError):
        exec(guards, ns)


def test_the_chapter_parameters_pass_the_guards():
    params, guards = _guard_cells()
    ns = {"adambook": adambook, "torch": torch, "require": require}
    exec(params, ns)
    exec(guards, ns)


def test_too_few_draws_for_the_equivalence_tests_are_refused():
    # NOISE_DRAWS passes its own guard but not the planned power (plan cell)
    cells = _code_cells()
    params, guards = _guard_cells()
    plan = next("".join(c["source"]) for c in cells
                if "def slope_weights" in "".join(c["source"]))
    ns = {"adambook": adambook, "torch": torch, "require": require}
    exec("import math\nimport numpy as np\nfrom statistics import "
         "NormalDist\nfrom adambook import minibatch as mb\nfrom "
         "adambook.problems import scaled_regression\nfrom adambook.stats "
         "import equivalence_power, z_bound\n" + params
         + "\nNOISE_DRAWS = 1000\n" + guards, ns)
    with pytest.raises(ValueError, match="equivalence tests"):
        exec(plan, ns)


def test_counts_that_rounding_could_move_by_two_are_refused():
    cells = _code_cells()
    params, guards = _guard_cells()
    counts = next("".join(c["source"]) for c in cells
                  if "gd_predicted = gd_iterations" in "".join(c["source"]))
    ns = dict(CH, require=require)
    exec(params + "\nKAPPAS = (10.0, 1e4, 1e9)\n" + guards, ns)
    with pytest.raises(ValueError, match="more than one step"):
        exec(counts, ns)
