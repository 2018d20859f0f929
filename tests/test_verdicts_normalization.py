"""chapters/normalization: its loops at small sizes reach the chapter's
verdicts, and breaking what a verdict rests on changes it.

The chapter's own cells are executed (with fewer seeds), so the test runs
the very loops the chapter shows; publishing and plotting are skipped.
"""

import json
from pathlib import Path

import pytest

import adambook

ROOT = Path(__file__).resolve().parents[1]


def _cells():
    nb = json.loads((ROOT / "chapters" / "normalization.ipynb").read_text())
    return ["".join(c["source"]) for c in nb["cells"]
            if c["cell_type"] == "code"]


def _run(upto, patch=None, late=None, **params):
    cells = _cells()
    scope = {"display": lambda *a: None}
    exec(cells[0].replace("adambook.use_style()", ""), scope)
    exec(cells[1], scope)
    scope.update(params)
    if patch:
        patch(scope)
    for src in cells[2:]:
        if "plt." in src:
            continue
        src = "\n".join(line for line in src.splitlines()
                        if not line.startswith(("assert v", "publish(")))
        exec(src, scope)
        if late:  # patches what the chapter's cells define
            late(scope)
        if upto in src:
            return scope
    raise AssertionError(f"no cell contains {upto!r}")


SMALL = dict(SEEDS=8, FREE_STEPS=30)


def test_adamw_verdict_and_decay_through_preconditioner():
    s = _run("judge_adamw_equal", **SMALL)
    assert s["v4"].verdict == "holds with a qualification"
    assert s["v5"].verdict == "holds with a qualification"

    def as_l2(scope):  # AdamW's decay applied through the preconditioner
        scope["adambook"] = type("M", (), dict(
            vars(adambook), AdamW=lambda *a, **k: adambook.Adam(*a, **k)))

    m = _run("judge_adamw_equal", patch=as_l2, **SMALL)
    assert m["v4"].verdict != s["v4"].verdict
    assert m["v4"].verdict == "does not hold"


def test_sgd_and_invariance_verdicts_and_eps_mutant():
    s = _run("judge_sgd_equilibrium", **SMALL)
    assert s["v"].verdict == "holds with a qualification"

    def no_momentum_correction(scope):  # predict sqrt(2 lr wd) for all mu
        si = scope["si"]
        scope["si"] = type("M", (), dict(
            vars(si), sgd_angular_update=lambda lr, wd, mu=0.0:
            si.sgd_angular_update(lr, wd, 0.0)))

    m = _run("judge_sgd_equilibrium", patch=no_momentum_correction, **SMALL)
    assert m["v"].verdict == "does not hold"


BAD = {
    "DTYPE": "torch.float32",
    "SEEDS": "4",
    "EQ_STEPS": "200",
    "ADAM_WD": "10.0",
    "GRID_WDS": "10.0 ** np.arange(-0.5, 1.1, 0.25)",
    "EQ_TIMES": "1.0",
    "GRID_LRS": "10.0 ** np.arange(-3.0, 0.6, 0.5)",
    "CONFIRM_SEEDS": "(28, 4)",
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_require_rejects(name):
    cells = _cells()
    scope = {}
    exec(cells[0].replace("adambook.use_style()", ""), scope)
    exec(cells[1], scope)
    exec(cells[2], scope)  # the chapter's own values pass
    exec(f"{name} = {BAD[name]}", scope)
    with pytest.raises(ValueError):
        exec(cells[2], scope)


def test_lr_wd_product_judge_separates_decided_from_undecided():
    from adambook.judges.normalization import judge_lr_wd_product as j
    m, z = 0.1, 3.0
    eq, differ, wide = (0.0, 0.01), (0.5, 0.01), (0.05, 0.1)
    assert j([eq], [differ], z, m, "s").verdict == "holds"
    v = j([wide], [differ], z, m, "s")  # AdamW undecided, L2 differs
    assert v.verdict == "holds with a qualification"
    assert "undecided" in v.proved
    v = j([differ], [differ], z, m, "s")  # an AdamW pair differs
    assert v.verdict == "does not hold" and "shown to differ" in v.proved
    assert j([wide], [wide], z, m, "s").verdict == "does not hold"


def test_adam_l2_judge_asks_whether_the_prediction_misses():
    from adambook.judges.normalization import judge_adam_l2_unequal as j
    m, z, apart = 0.1, 3.0, (-0.4, 0.01)
    assert j(apart, (0.02, 0.01), z, m, "s").verdict == "holds"
    v = j(apart, (0.07, 0.005), z, m, "s")  # inside the margin, but off
    assert v.verdict == "holds with a qualification" and "7%" in v.proved
    v = j(apart, (-0.02, 0.05), z, m, "s")  # not shown equal: undecided
    assert v.verdict == "holds with a qualification"
    assert j((-0.1, 0.01), (0.0, 0.01), z, m, "s").verdict == "does not hold"
    # the layers differ, but on the other side of 1 than predicted (+0.4)
    assert j(apart, (-0.8, 0.01), z, m, "s").verdict == "does not hold"


def test_third_lr_wd_rule_closer_and_exact():
    from adambook.judges.normalization import judge_lr_wd_closer as j
    z, m, zero, off = 3.0, 0.1, (0.0, 0.01), (-0.065, 0.008)
    l2, big = [(0.25, 0.04)], (0.05, 0.005)
    assert j([zero, zero], l2, big, z, m, "s").verdict == "holds"
    v = j([zero, off], l2, big, z, m, "s")  # closer, one pair differs
    assert v.verdict == "holds with a qualification" and "7%" in v.proved
    v = j([zero, (0.0, 0.05)], l2, big, z, m, "s")  # not shown equal
    assert v.verdict == "holds with a qualification"
    assert j([zero, zero], l2, (0.01, 0.005), z, m, "s").verdict == (
        "does not hold")  # not closer
    assert j([zero, zero], [(0.05, 0.04)], big, z, m, "s").verdict == (
        "does not hold")  # no Adam + L2 pair differs


def test_grid_second_run_and_decay_through_preconditioner():
    # Fewer seeds, so a laxer ALPHA; the chapter's grid and steps.
    small = dict(SMALL, CONFIRM_SEEDS=(12, 12), ALPHA=0.05)
    s = _run("diffs2 = ", **small)
    assert s["v6"].verdict == "holds with a qualification"
    assert s["v_second"].verdict in ("holds", "holds with a qualification")

    def as_l2(scope):  # AdamW's rows decay through the preconditioner
        rates = scope.get("row_rates")
        if rates and not hasattr(rates, "mutant"):
            scope["row_rates"] = lambda meth, lr, wd: rates(
                meth * 0 + 1, lr, wd)
            scope["row_rates"].mutant = True

    m = _run("diffs2 = ", late=as_l2, **small)
    assert m["v6"].verdict == "does not hold"
