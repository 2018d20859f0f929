r"""The teacher task of chapters/adamw: one small network, trained many times.

The student :math:`x \mapsto w_2^\top\max(0, W_1^\top x + b_1) + b_2` of run
:math:`r` is row :math:`r` of ``theta``, shape ``(runs, d h + 2h + 1)``:
:math:`W_1` (``(d, h)``, row-major), :math:`b_1`, :math:`w_2`, :math:`b_2`.
"""

import math

import numpy as np
import torch

from .stats import z_bound


def teacher_task(seeds, d, hidden, n_train, n_test, flip, seed):
    r"""``(X, y, X_test, y_test)``: ``seeds`` training sets of ``n_train``
    points, a fraction ``flip`` of labels flipped, and a clean test set;
    float32 on the CPU. Inputs are :math:`N(0, I_d)`, labels
    :math:`[w^\top\tanh(2W^\top x) > 0]` from a random teacher with
    ``hidden`` units."""
    g = torch.Generator().manual_seed(seed)
    W1 = torch.randn(d, hidden, generator=g) / math.sqrt(d)
    w2 = torch.randn(hidden, generator=g) / math.sqrt(hidden)

    def label(x):
        return (torch.tanh(2 * x @ W1) @ w2 > 0).float()

    X = torch.randn(seeds, n_train, d, generator=g)
    y = label(X)
    y = torch.where(torch.rand(seeds, n_train, generator=g) < flip, 1 - y, y)
    X_test = torch.randn(n_test, d, generator=g)
    return X, y, X_test, label(X_test)


def init_mlp(seeds, d, hidden, generator):
    r"""``(seeds, d h + 2h + 1)`` on the CPU: He-normal :math:`W_1`,
    :math:`w_2 \sim N(0, 1/h)`, zero biases."""
    theta = torch.zeros(seeds, d * hidden + 2 * hidden + 1)
    theta[:, :d * hidden] = torch.randn(
        seeds, d * hidden, generator=generator) * math.sqrt(2 / d)
    theta[:, d * hidden + hidden:-1] = torch.randn(
        seeds, hidden, generator=generator) / math.sqrt(hidden)
    return theta


def _unpack(theta, d, h):
    return (theta[:, :d * h].view(-1, d, h), theta[:, d * h:d * h + h, None],
            theta[:, d * h + h:-1, None], theta[:, -1:, None])


def mlp_grad(theta, X, y, hidden):
    r"""Per row, the gradient of the mean binary cross-entropy of the logits
    :math:`z = w_2^\top a + b_2`, :math:`a = \max(0, W_1^\top x + b_1)`,
    over ``X[r]`` (``(R, B, d)``) and ``y[r]`` (``(R, B)``), by
    backpropagation: :math:`\partial\ell/\partial z = \sigma(z) - y`;
    ReLU passes the gradient where :math:`a > 0`."""
    W1, b1, w2, b2 = _unpack(theta, X.shape[-1], hidden)
    act = torch.baddbmm(b1.transpose(1, 2), X, W1).clamp_(min=0)
    z = torch.bmm(act, w2) + b2
    dz = (torch.sigmoid(z) - y[..., None]).div_(X.shape[1])
    dpre = (dz * w2.transpose(1, 2)).mul_(act.sign())
    return torch.cat([torch.bmm(X.transpose(1, 2), dpre).flatten(1),
                      dpre.sum(1), (dz * act).sum(1), dz.sum(1)], 1)


def test_error(theta, X, y, hidden, chunk=32):
    """Per row, the fraction of ``(X, y)`` misclassified; 0.5 for a row whose
    parameters are not finite. ``chunk`` rows at a time."""
    W1, b1, w2, b2 = _unpack(theta, X.shape[-1], hidden)
    wrong = []
    for i in range(0, len(theta), chunk):
        r = slice(i, i + chunk)
        act = (torch.matmul(X, W1[r]) + b1[r].transpose(1, 2)).clamp_(min=0)
        z = torch.bmm(act, w2[r]) + b2[r]
        wrong.append(((z[..., 0] > 0).to(y.dtype) != y).sum(1))
    return torch.where(torch.isfinite(theta).all(1),
                       torch.cat(wrong).to(theta.dtype) / len(X), 0.5)


def best_log_lambda(mean_errors, log_lams):
    r"""Per row, :math:`\log_{10}\lambda^\star`: the grid minimum, moved to
    the vertex of the parabola through it and its neighbours (at most one
    grid step)."""
    out = []
    for row in mean_errors:
        k, offset = int(np.argmin(row)), 0.0
        if 0 < k < len(row) - 1:
            y0, y1, y2 = row[k - 1:k + 2]
            if y0 - 2 * y1 + y2 > 0:
                offset = np.clip(0.5 * (y0 - y2) / (y0 - 2 * y1 + y2), -1, 1)
        out.append(log_lams[k] + offset * (log_lams[1] - log_lams[0]))
    return np.array(out)


def grid_summary(lrs, lams, errors, alpha, n_boot, seed):
    r"""What an lr × λ grid of test errors ``errors[m]`` (``(lr, λ, seed)``,
    ``m`` in ``"adam_l2"``, ``"adamw"``) shows; seeds are the units.

    ``helps[m]``: per lr, the best λ beats the smallest by more than ``z``
    s.e. (paired; Šidák, 3 tests); ``rows``: helps both; ``slope``: of
    :math:`\log\lambda^\star` on :math:`\log\eta` over ``rows`` (nan if
    fewer than 3), ``slope_se`` from ``n_boot`` resamples of the seeds;
    ``best``/``best_gap``: best cells, AdamW − Adam + L2; per lr,
    ``row_gap`` ± ``row_se`` of the best errors, ``rows_better``/``_worse``
    beyond ``z_rows`` (Šidák, one per lr); ``above``: the error one λ step
    above each of ``rows``' best, ``above_gap`` = Adam + L2 − AdamW.
    """
    lam_log, L, S = np.log10(lams), len(lrs), errors["adamw"].shape[-1]
    z, z_rows = z_bound(alpha, n_tests=3), z_bound(alpha, n_tests=L)
    mean = {m: e.mean(-1) for m, e in errors.items()}
    k = {m: mu.argmin(1) for m, mu in mean.items()}
    pick = {m: e[np.arange(L), k[m]] for m, e in errors.items()}
    helps = {}
    for m, e in errors.items():
        diff = e[:, 0] - pick[m]
        helps[m] = diff.mean(-1) > z * diff.std(-1, ddof=1) / math.sqrt(S)
    rows = helps["adam_l2"] & helps["adamw"]

    def slopes(idx):
        if rows.sum() < 3:  # too few rows to fit a line: no evidence
            return {m: math.nan for m in errors}
        return {m: float(np.polyfit(np.log10(lrs)[rows], best_log_lambda(
            e[..., idx].mean(-1), lam_log)[rows], 1)[0])
            for m, e in errors.items()}

    rng = np.random.default_rng(seed)
    boot = [slopes(rng.integers(0, S, S)) for _ in range(n_boot)]
    best, above = {}, {}
    for m, e in errors.items():
        i, j = np.unravel_index(mean[m].argmin(), mean[m].shape)
        best[m] = {"lr": lrs[i], "lam": lams[j], "per_seed": e[i, j],
                   "mean": float(e[i, j].mean())}
        ok = np.flatnonzero(rows & (k[m] + 1 < len(lams)))
        above[m] = (e[ok, k[m][ok] + 1].mean(0) if len(ok)
                    else np.full(S, math.nan))
    paired = best["adamw"]["per_seed"] - best["adam_l2"]["per_seed"]
    d = pick["adamw"] - pick["adam_l2"]
    row_gap, row_se = d.mean(-1), d.std(-1, ddof=1) / math.sqrt(S)
    above_gap = above["adam_l2"] - above["adamw"]
    slope = slopes(np.arange(S))
    return {
        "z": z, "alpha": alpha, "rows": rows, "helps": helps, "mean": mean,
        "lam_star": {m: best_log_lambda(mean[m], lam_log) for m in errors},
        "slope": slope, "slope_paper": slope["adamw"] + 1.0,
        "slope_se": {m: float(np.std([b[m] for b in boot], ddof=1))
                     if n_boot > 1 else math.nan for m in errors},
        "best": best, "best_gap": float(paired.mean()),
        "best_gap_se": float(paired.std(ddof=1) / math.sqrt(S)),
        "row_gap": row_gap, "row_se": row_se, "z_rows": z_rows,
        "rows_better": row_gap < -z_rows * row_se,
        "rows_worse": row_gap > z_rows * row_se,
        "above": {m: float(a.mean()) for m, a in above.items()},
        "above_gap": float(above_gap.mean()),
        "above_gap_se": float(above_gap.std(ddof=1) / math.sqrt(S)),
    }
