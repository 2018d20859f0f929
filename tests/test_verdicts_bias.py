"""The chapter "Bias correction": its judges, its mutants, its parameter guards.

Each verdict is computed as the chapter computes it (the same package tools,
the same scoring) at small sizes, then the code the claim rests on is broken
and the verdict must change. The guards are the chapter's own `require` cell,
run with one bad parameter.
"""

import math
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch

from adambook import functional as F
from adambook import moments as M
from adambook.judges.bias import judge_bias_correction, judge_ema_bias
from adambook.stats import z_bound
from adambook.utils import torch_threads

ROOT = Path(__file__).resolve().parents[1]
CHAPTER = ROOT / "chapters" / "bias_correction.ipynb"
MU, SIGMA, EPS, ALPHA = 0.3, 2.0, 1e-8, 1e-3
PAIRS = ((0.9, 0.999), (0.9, 0.95), (0.99, 0.9999))
BETAS = (0.9, 0.999)


@torch_threads(1)  # as the chapter: 10^4-entry ops gain nothing from threads
def judge_chapter(n_streams=20_000, steps=100, half_life=100):
    """The chapter's Monte Carlo, scoring and judges, at small sizes."""
    s2, var_g2 = MU**2 + SIGMA**2, M.gaussian_square_variance(MU, SIGMA)
    runs = M.simulate_moments(PAIRS, n_streams, steps, mu=MU, sigma=SIGMA,
                              eps=EPS, seed=0, device="cpu")
    z_fit, z_nofactor, z_iid, gaps = [], [], [], []
    for r in runs:
        t, b1, b2 = r["t"], r["beta1"], r["beta2"]
        z_fit.append([
            (r["mean_m"] - M.ema_mean(t, b1, MU)) / r["se_m"],
            (r["mean_v"] - M.ema_mean(t, b2, s2)) / r["se_v"],
            (r["var_m"] - M.ema_variance(t, b1, SIGMA**2)) / r["se_var_m"],
            (r["var_v"] - M.ema_variance(t, b2, var_g2)) / r["se_var_v"]])
        z_nofactor.append([(r["mean_m"] - MU) / r["se_m"],
                           (r["mean_v"] - s2) / r["se_v"]])
        z_iid.append([(r["mean_m_hat"] - MU) / r["se_m_hat"],
                      (r["mean_v_hat"] - s2) / r["se_v_hat"]])
        gaps.append((r["step_rel_err"] / M.step_tolerance(t, b1, b2)).max())
    z_fit = np.array(z_fit)
    r0 = runs[0]
    size = dict(n_streams=n_streams, steps=steps, pairs=PAIRS)
    ema = judge_ema_bias(z_fit, np.array(z_nofactor), z_bound(ALPHA, z_fit.size),
                         m1_ratio=r0["mean_m"][0] / MU, m1_se=r0["se_m"][0] / MU,
                         beta1=r0["beta1"], **size)

    decay = 2.0 ** (-np.arange(1, steps + 1) / half_life)
    mu_t, sigma_t = MU * decay, SIGMA * decay
    (dr,) = M.simulate_moments((BETAS,), n_streams, steps, mu=mu_t,
                               sigma=sigma_t, eps=EPS, seed=1, device="cpu")
    t, (b1, b2) = dr["t"], BETAS
    s_t = mu_t**2 + sigma_t**2
    pred_m = M.ema_moments(mu_t, sigma_t**2, b1)[0] / M.ema_mass(t, b1)
    pred_v = M.ema_moments(s_t, 0.0, b2)[0] / M.ema_mass(t, b2)
    z_drift = np.array([(dr["mean_m_hat"] - pred_m) / dr["se_m_hat"],
                        (dr["mean_v_hat"] - pred_v) / dr["se_v_hat"]])
    z_stat = np.array([(dr["mean_m_hat"] - mu_t) / dr["se_m_hat"],
                       (dr["mean_v_hat"] - s_t) / dr["se_v_hat"]])
    gaps.append((dr["step_rel_err"] / M.step_tolerance(t, b1, b2)).max())
    z_iid = np.array(z_iid)
    bc = judge_bias_correction(
        z_iid, z_drift, z_stat, max(gaps), z_bound(ALPHA, z_iid.size + z_drift.size),
        v_ratio=dr["mean_v_hat"][-1] / s_t[-1], half_life=half_life,
        drift_pair=BETAS, **size)
    return ema, bc


def test_the_chapter_verdicts_at_small_sizes():
    ema, bc = judge_chapter()
    assert ema.verdict == "holds", ema.measured
    assert bc.verdict == "holds with a qualification", bc.measured
    assert "1200 tests" in ema.measured and "800 tests" in bc.measured


def test_a_stationary_stream_leaves_no_qualification():
    """With an infinite half-life the residual ζ vanishes: plain 'holds'."""
    assert judge_chapter(half_life=math.inf)[1].verdict == "holds"


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # broken code may take log(0)
def test_ema_bias_mutant_full_weight_from_step_one(monkeypatch):
    """The port of test_claims' mutant: the EMA collects weight 1, not 1 - β^t."""
    monkeypatch.setattr(M, "ema_mass", lambda t, beta: np.ones_like(
        np.asarray(t, dtype=float) * np.asarray(beta, dtype=float)))
    assert judge_chapter()[0].verdict == "does not hold"


def test_ema_bias_mutant_prediction_without_the_factor(monkeypatch):
    """E[m_t] = μ instead of (1 - β^t)μ."""
    monkeypatch.setattr(M, "ema_mean", lambda t, beta, mean: np.full(np.shape(t), mean))
    assert judge_chapter()[0].verdict == "does not hold"


def test_bias_correction_mutant_adam_forgets_its_correction(monkeypatch):
    """If the package's step stopped dividing by 1 - β^t, the judge notices."""
    monkeypatch.setattr(F, "_bias_corrections", lambda b1, b2, t, enabled: (1.0, 1.0))
    assert judge_chapter()[1].verdict == "does not hold"



# ----------------------------------------------------------------- guards


def _cells():
    nb = nbformat.read(CHAPTER, 4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    i = next(k for k, c in enumerate(code) if "parameters" in c.metadata.get("tags", []))
    return code[i - 1].source, code[i].source, code[i + 1].source


def run_guard(**overrides):
    imports, params, guard = _cells()
    ns = {}
    exec(imports, ns)
    exec(params, ns)
    ns.update(overrides)
    exec(guard, ns)


def test_the_chapter_parameters_pass_the_guards():
    run_guard()


@pytest.mark.parametrize("overrides,match", [
    (dict(N_STREAMS=5_000), "too few for normal sample means"),
    (dict(MU=0.01), "not enough to clear the z-bound"),
    (dict(DTYPE=torch.float32), "float64 rounding"),
    (dict(TR_SEEDS=4), "8 or more paired seeds"),
    (dict(TR_STEPS=50), "first 100 steps"),
    (dict(EPS_STEPS=1000), "t = 3000"),
    (dict(EPS_SCALES=(1.0, 1e-3)), "c = 1, 1e-3, 1e-7, 1e-8"),
])
def test_a_bad_parameter_is_refused(overrides, match):
    with pytest.raises(ValueError, match=match):
        run_guard(**overrides)
