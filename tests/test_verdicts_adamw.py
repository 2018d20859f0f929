"""chapters/adamw: its experiments at small sizes reach the chapter's verdict,
and breaking what the verdict rests on changes it.

``grid`` and ``reason`` are small copies of the chapter's loops, built from the
same package tools; the guards of the chapter's ``require`` cell are run from
the notebook itself.
"""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from adambook import decay, teacher, torch_threads
from adambook import regularization as reg
from adambook import transforms as T
from adambook.judges.adamw import judge_use_adamw

ROOT = Path(__file__).resolve().parents[1]
D_IN, HIDDEN, N_TRAIN, BATCH, STEPS = 10, 16, 200, 20, 800


def grid(lrs, lams, seeds, seed=0):
    """The chapter's grid loop: test errors ``{method: (lr, λ, seed)}``."""
    X, y, X_test, y_test = teacher.teacher_task(seeds, D_IN, HIDDEN, N_TRAIN,
                                                4000, 0.1, seed)
    cell = torch.cartesian_prod(torch.arange(len(lrs)),
                                torch.arange(len(lams)), torch.arange(seeds))
    n = len(cell)
    lr = torch.tensor(lrs, dtype=torch.float32)[cell[:, 0], None].repeat(2, 1)
    lam = torch.tensor(lams, dtype=torch.float32)[cell[:, 1], None]
    gen = torch.Generator().manual_seed(seed + 1)
    init = teacher.init_mlp(seeds, D_IN, HIDDEN, gen)
    first = (cell[:, 2, None] * N_TRAIN).repeat(2, 1)
    flat_X, flat_y = X.reshape(-1, D_IN), y.reshape(-1)

    def cosine(count):
        return lr * (0.5 * (1 + math.cos(math.pi * count / STEPS)))

    opt = T.adam_decay(cosine, torch.cat([lam, 0 * lam]),
                       torch.cat([0 * lam, lam]))
    theta = init[cell[:, 2]].repeat(2, 1)
    state = opt.init(theta)
    for _ in range(STEPS):
        draw = torch.randint(0, N_TRAIN, (n, BATCH), generator=gen)
        idx = (first + draw.repeat(2, 1)).view(-1)
        g = teacher.mlp_grad(theta, flat_X[idx].view(2 * n, BATCH, D_IN),
                             flat_y[idx].view(2 * n, BATCH), HIDDEN)
        u, state = opt.update(g, state, theta)
        theta = T.apply_updates(theta, u)
    err = teacher.test_error(theta, X_test, y_test, HIDDEN)
    err = err.view(2, len(lrs), len(lams), seeds).double().numpy()
    return {"adam_l2": err[0], "adamw": err[1]}


def reason():
    """The chapter's Adam + L2 row: certified distance to ridge, accuracy."""
    P = decay.post_problem()
    sched = decay.hold_then_decay(1e-2, 1e-7, hold=5_000, total=30_000)
    l2 = torch.tensor([[decay.LAMBDA]], dtype=torch.float64)
    opt = T.adam_decay(lambda c: sched(c + 1), l2, 0 * l2)
    theta = torch.zeros(1, 2, dtype=torch.float64)
    state = opt.init(theta)
    for _ in range(sched.total):
        u, state = opt.update(P.grad(theta), state, theta)
        theta = T.apply_updates(theta, u)
    accuracy = (decay.relative_accuracy(P, decay.LAMBDA)
                * P.ridge_solution(decay.LAMBDA).norm().item())
    return reg.certify(P, theta[0], decay.LAMBDA)["upper"], accuracy


@torch_threads(1)
def verdict():
    lrs, lams = np.logspace(-2.5, -2.0, 2), np.logspace(-2.0, 1.0, 7)
    s = teacher.grid_summary(lrs, lams, grid(lrs, lams, seeds=8), 1e-3, 0, 0)
    return judge_use_adamw(*reason(), s["rows_worse"], s["best_gap"],
                           s["best_gap_se"], s["z"], 0.02,
                           "small test grid").verdict


def test_use_adamw_holds_with_a_qualification():
    assert verdict() == "holds with a qualification"


ADAM_DECAY = T.adam_decay
MUTANTS = {
    # Adam + L2 applies decoupled decay (its λ after the moments)
    "l2-as-decoupled": lambda lr, l2, dec, *a: ADAM_DECAY(lr, 0 * l2,
                                                          l2 + dec, *a),
    # AdamW's decoupled decay grows the weights instead of shrinking them
    "decoupled-sign": lambda lr, l2, dec, *a: ADAM_DECAY(lr, l2, -dec, *a),
}


@pytest.mark.parametrize("name", sorted(MUTANTS))
def test_mutant_changes_the_verdict(name, monkeypatch):
    monkeypatch.setattr(T, "adam_decay", MUTANTS[name])
    assert verdict() != "holds with a qualification"


def test_mlp_grad_is_the_autograd_gradient():
    gen = torch.Generator().manual_seed(0)
    d, h = 3, 5
    theta = torch.randn(4, d * h + 2 * h + 1, generator=gen,
                        dtype=torch.float64)
    X = torch.randn(4, 7, d, generator=gen, dtype=torch.float64)
    y = (torch.rand(4, 7, generator=gen) < 0.5).double()
    t = theta.clone().requires_grad_(True)
    W1, b1, w2, b2 = (t[:, :d * h].view(4, d, h), t[:, d * h:d * h + h],
                      t[:, d * h + h:-1], t[:, -1:])
    z = (torch.relu(X @ W1 + b1[:, None]) * w2[:, None]).sum(-1) + b2
    loss = torch.nn.functional.binary_cross_entropy_with_logits(
        z, y, reduction="none").mean(1).sum()
    (want,) = torch.autograd.grad(loss, t)
    got = teacher.mlp_grad(theta, X, y, h)
    assert torch.allclose(got, want, rtol=1e-12, atol=1e-15)
    logits = (torch.relu(X[0] @ W1 + b1[:, None]) * w2[:, None]).sum(-1) + b2
    want_err = ((logits.detach() > 0).double() != y[0]).double().mean(-1)
    got_err = teacher.test_error(theta, X[0], y[0], h, chunk=3)
    assert torch.equal(got_err, want_err)


def _chapter_cells():
    nb = json.loads((ROOT / "chapters" / "adamw.ipynb").read_text())
    cells = [c for c in nb["cells"] if c["cell_type"] == "code"]
    k = next(i for i, c in enumerate(cells)
             if "parameters" in c["metadata"].get("tags", []))
    return ["".join(c["source"]) for c in cells[k - 1:k + 2]]


BAD = {
    "DTYPE": "torch.float32",
    "SEEDS": "4",
    "LRS": "np.logspace(-3, -2, 2)",
    "LAMS": "np.array([1e-3, 1e-2, 1.0])",
    "N_BOOT": "20",
    "PAR_ALPHAS": "(1e-2,)",
    "SWEEP_END": "1e-5",
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_require_rejects(name):
    imports, params, guards = _chapter_cells()
    scope = {}
    exec(imports.replace("adambook.use_style()", ""), scope)
    exec(params, scope)
    exec(guards, scope)  # the chapter's own values pass
    exec(f"{name} = {BAD[name]}", scope)
    with pytest.raises(ValueError):
        exec(guards, scope)
