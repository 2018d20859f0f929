"""The verdict of chapters/memory, its mutant, and its parameter guards."""

import dataclasses
from pathlib import Path

import nbformat

import pytest

from adambook import measure
from adambook import memory as M
from adambook.judges.memory import judge_memory_3x

ROOT = Path(__file__).resolve().parents[1]

MODELS = {"MLP": (M.mlp, dict(width=32, depth=3)),
          "Transformer": (M.transformer, dict(d_model=32, nhead=4,
                                              num_layers=2,
                                              dim_feedforward=48))}
PEAK = dict(library="torch", model="mlp", batch=4, opt_kwargs={},
            model_kwargs={"width": 256, "depth": 8, "seed": 0},
            dtype="float32")


def count_all():
    """The chapter's count loop, at small sizes."""
    counts = {}
    for model_name, (make, kwargs) in MODELS.items():
        for library in ("adambook", "torch"):
            for name in M.OPTIMIZER_NAMES:
                net = make(**kwargs)
                opt = M.make_optimizer(name, net.parameters(), library)
                M.train_step(net, opt, M.model_input(net, 2, seq_len=8))
                counts[(model_name, library, name)] = M.count_memory(opt)
    return counts


@pytest.fixture(scope="module")
def peaks():
    """Adam's over SGD's peak and its interval, as the chapter has them."""
    if not measure.peak_supported():
        pytest.skip("peak RSS needs /proc")
    jobs = [{"fn": "peak", "kwargs": dict(PEAK, optimizer=o)}
            for _ in range(2) for o in ("sgd", "adam")]
    s = measure.summarize_peaks(measure.start_jobs(jobs, 2, timeout_s=120)())
    adam, sgd = "adam mlp B=4", "sgd mlp B=4"
    lo, hi = measure.difference_interval(s, adam, sgd)
    base = s[sgd]["median"]
    return s[adam]["median"] / base, (1 + lo / base, 1 + hi / base)


def judge(counts, peaks):
    return judge_memory_3x(counts, *peaks, scope="small models")


def test_holds_with_a_qualification(peaks):
    assert judge(count_all(), peaks).verdict == "holds with a qualification"


def test_state_counted_twice_breaks_it(peaks, monkeypatch):
    # the MUTANT of tests/test_claims.py: the optimizer state counted twice
    original = M.count_memory
    monkeypatch.setattr(M, "count_memory", lambda opt: dataclasses.replace(
        original(opt), state=2 * original(opt).state))
    assert judge(count_all(), peaks).verdict == "does not hold"


def test_judge_branches():
    counts = count_all()
    assert judge(counts, (3.0, (2.5, 3.5))).verdict == "holds"
    # a peak ratio outside the interval that the counts allow
    assert judge(counts, (2.0, (2.1, 2.2))).verdict == "does not hold"


def _cells():
    nb = nbformat.read(ROOT / "chapters" / "memory.ipynb", as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    k = next(i for i, c in enumerate(code)
             if "parameters" in c.metadata.get("tags", []))
    return code[k - 1].source, code[k].source, code[k + 1].source


@pytest.mark.parametrize("change,message", [
    ("OPTIMIZERS = ('sgd', 'adam')", "OPTIMIZERS must include"),
    ("PEAK_REPEATS = 1", "PEAK_REPEATS = 1"),
    ("SWEEP_BATCHES = (8,)", "SWEEP_BATCHES"),
    ("ZERO_RANKS = 3", "ZERO_RANKS = 3"),
    ("TIME_ROUNDS = 11", "need at least 12"),
])
def test_require_guards(change, message):
    imports, params, guards = _cells()
    namespace = {}
    exec(imports + "\n" + params + "\n" + change, namespace)
    with pytest.raises(ValueError, match=message):
        exec(guards, namespace)


def test_default_parameters_pass_the_guards():
    imports, params, guards = _cells()
    namespace = {}
    exec(imports + "\n" + params + "\n" + guards, namespace)
