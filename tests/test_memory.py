"""adambook.memory and adambook.measure."""

import math
import os
import signal
import socket
import subprocess
from fractions import Fraction

import numpy as np
import pytest
import torch

import adambook
from adambook import measure
from adambook import memory as M

SLOTS = {"sgd": 0, "sgd_momentum": 1, "adam": 2, "adamw": 2}
CASES = [(name, lib) for name in M.OPTIMIZER_NAMES
         for lib in ("adambook", "torch")]


def small_transformer(device="cpu"):
    return M.transformer(d_model=32, nhead=4, num_layers=2,
                         dim_feedforward=64, device=device)


# ------------------------------------------------------------------------ counting


@pytest.mark.parametrize("name,library", CASES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_state_is_a_whole_number_of_parameter_copies(name, library, dtype, device):
    net = M.mlp(width=16, depth=3, dtype=dtype, device=device)
    opt = M.make_optimizer(name, net.parameters(), library)
    M.train_step(net, opt, M.model_input(net, 4))
    c = M.count_memory(opt)
    size = dtype.itemsize
    assert c.numel == 3 * (16 * 16 + 16) and c.params == c.numel * size
    assert c.grads == c.params
    assert c.state == SLOTS[name] * c.params
    assert c.ratio("params+state") == 1 + SLOTS[name]
    assert c.ratio("params+grads+state") == 2 + SLOTS[name]
    # torch.optim keeps Adam's step as a 0-d tensor per parameter; adambook an int.
    torch_step = library == "torch" and name.startswith("adam")
    assert c.scalars == (c.n_tensors * 4 if torch_step else 0)


def test_count_is_zero_before_the_first_step():
    net = M.mlp(width=8, depth=2)
    opt = torch.optim.Adam(net.parameters())
    c = M.count_memory(opt)
    assert (c.grads, c.state, c.scalars) == (0, 0, 0) and c.params > 0


def test_every_parameter_group_is_counted():
    lin = torch.nn.Linear(4, 4)
    opt = torch.optim.Adam([{"params": [lin.weight]}, {"params": [lin.bias], "lr": 0.1}])
    lin(torch.randn(2, 4)).sum().backward()
    opt.step()
    c = M.count_memory(opt)
    assert c.params == 4 * 20 and c.state == 2 * 4 * 20


def test_ratio_is_exact():
    c = M.MemoryCount(params=3, grads=3, state=6, scalars=0, numel=1, n_tensors=1)
    assert c.ratio("params+state") == Fraction(3)
    assert c.ratio("params+state", "params+grads") == Fraction(3, 2)


def test_adafactor_state_is_rows_plus_columns():
    net = small_transformer()
    opt = torch.optim.Adafactor(net.parameters(), lr=1e-2)
    M.train_step(net, opt, M.model_input(net, 2, seq_len=8))
    for p in net.parameters():
        state = opt.state[p]
        numel = sum(t.numel() for k, t in state.items() if k != "step")
        assert numel == M.adafactor_state_numel(p.shape)
        if p.dim() == 2:
            n, m = p.shape
            assert state["row_var"].numel() == n and state["col_var"].numel() == m


def test_saved_activation_bytes_excludes_parameters_and_is_linear_in_batch():
    net = small_transformer()
    sizes = []
    for batch in (1, 2, 4):
        with M.saved_activation_bytes(net) as saved:
            net(M.model_input(net, batch, seq_len=8)).sum().backward()
        sizes.append(sum(saved.values()))
        assert 0 < max(saved.values()) <= sizes[-1]
    assert sizes[1] == 2 * sizes[0] and sizes[2] == 4 * sizes[0]


# ----------------------------------------------------------------- at model scale


def test_bytes_per_param_components():
    assert M.bytes_per_param("sgd_momentum", "fp32") == {
        "weights": 4, "grads": 4, "master": 0, "state": 4, "total": 12}
    assert M.bytes_per_param("adam", "mixed") == {
        "weights": 2, "grads": 2, "master": 4, "state": 8, "total": 16}
    eight = M.bytes_per_param("adam8bit", "mixed")
    assert eight["state"] == pytest.approx(2 * (1 + 4 / 2048))
    with pytest.raises(ValueError, match="precision"):
        M.bytes_per_param("adam", "fp8")
    with pytest.raises(ValueError, match="unknown optimizer"):
        M.bytes_per_param("rmsprop")


def test_table_rows():
    rows = M.training_memory_table(M.MODEL_SIZES)
    assert [r["model"] for r in rows] == list(M.MODEL_SIZES)
    big = rows[-1]
    assert big["fp32 Adam"] == pytest.approx(70e9 * 16 / 1e9)
    assert big["mixed Adam"] == big["fp32 Adam"]
    assert big["fp32 SGD"] * 2 == big["fp32 Adam"]


@pytest.mark.parametrize("name", M.OPTIMIZER_NAMES)
def test_fp32_table_matches_live_count(name, device):
    net = small_transformer(device)
    opt = M.make_optimizer(name, net.parameters(), "torch")
    M.train_step(net, opt, M.model_input(net, 2, seq_len=8))
    c = M.count_memory(opt)
    assert (c.params + c.grads + c.state) / c.numel == M.bytes_per_param(name)["total"]


def test_zero_stages():
    assert M.zero_bytes_per_param(0, 64) == 16
    assert M.zero_bytes_per_param(1, 1) == M.zero_bytes_per_param(2, 1) == 16
    assert M.zero_bytes_per_param(3, 1) == 16
    assert M.zero_bytes_per_param(2, 64) == pytest.approx(2 + 14 / 64)


def test_eightbit_arithmetic():
    assert M.eightbit_state_bytes(2048) == 2 * (2048 + 4)
    assert M.eightbit_state_bytes(2049) == 2 * (2049 + 8)
    assert M.eightbit_state_bytes(10, slots=1) == 14


def test_make_optimizer_rejects_unknown():
    with pytest.raises(ValueError, match="unknown optimizer"):
        M.make_optimizer("lion", [torch.nn.Parameter(torch.zeros(1))], "torch")
    with pytest.raises(ValueError, match="unknown optimizer"):
        M.make_optimizer("adam", [torch.nn.Parameter(torch.zeros(1))], "jax")


# --------------------------------------------------------------------- bounds


def fake_run(**kw):
    run = {"optimizer": "adam", "opt_kwargs": {}, "largest_param": 100,
           "largest_activation": 10, "n_activations": 3, "activations": 30,
           "count": {"params": 1000, "grads": 1000, "state": 2000, "scalars": 8,
                     "n_tensors": 2}}
    run.update(kw)
    return run


def test_step_temporaries():
    assert measure.step_temporaries(fake_run()) == (200, 2)
    assert measure.step_temporaries(fake_run(opt_kwargs={"foreach": True})) == (1000, 2)
    assert measure.step_temporaries(fake_run(opt_kwargs={"fused": True})) == (0, 0)
    assert measure.step_temporaries(fake_run(optimizer="sgd_momentum")) == (0, 0)
    # in the backward pass one layer's gradients (weight, bias) are alive too
    ib = {"in_backward": True}
    assert measure.step_temporaries(fake_run(opt_kwargs=ib)) == (400, 4)
    assert measure.step_temporaries(fake_run(optimizer="sgd", opt_kwargs=ib)) == (200, 2)


@pytest.mark.parametrize("name", M.OPTIMIZER_NAMES)
def test_step_in_backward_equals_the_ordinary_step(name):
    a, b = M.mlp(16, 3, seed=0), M.mlp(16, 3, seed=0)
    oa = M.make_optimizer(name, a.parameters(), "torch", lr=1e-2)
    ob = M.make_optimizer(name, b.parameters(), "torch", lr=1e-2, in_backward=True)
    alive = []
    for p in b.parameters():  # registered after the optimizer's hooks
        p.register_post_accumulate_grad_hook(lambda p: alive.append(
            sum(q.grad is not None for q in b.parameters())))
    x = M.model_input(a, 4)
    for _ in range(3):
        M.train_step(a, oa, x), M.train_step(b, ob, x)
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)  # the same numbers, bit for bit
    assert max(alive) == 0 and M.count_memory(ob).grads == 0  # freed at once


def test_peak_bounds():
    lo, hi = measure.peak_bounds(fake_run())
    assert lo == 1000 + 2008 + 1000
    # blocks: params, grads and 2 state slots of 2 tensors, 3 activations, 3 backward
    # buffers, 2 step temporaries
    assert hi == 1000 + 1000 + 2008 + 30 + 200 + 30 + measure.PAGE_SLACK * (8 + 3 + 3 + 2)
    lo, _ = measure.peak_bounds(fake_run(activations=5000))
    assert lo == 1000 + 2008 + 5000  # activations above the gradients set the floor


# ------------------------------------------------------------------- statistics


def test_median_ci_covers_at_the_stated_rate():
    rng = np.random.default_rng(0)
    n, trials, alpha = 12, 20_000, 0.05
    x = rng.lognormal(size=(trials, n))  # skewed, true median 1
    _, lo, hi = measure.median_ci(x, alpha, 1, axis=1)  # all rows at once
    misses = np.sum(~((lo <= 1.0) & (1.0 <= hi)))
    # At n = 12 and alpha = 0.05 the interval is [x_(3), x_(10)], which misses the
    # median with probability 2 P(Bin(12, 1/2) <= 2) = 2 (1 + 12 + 66) / 4096 = 0.0386
    # exactly (continuous data). The miss count is binomial: 6 standard errors.
    p = 2 * (1 + 12 + 66) / 4096
    assert abs(misses / trials - p) <= 6 * math.sqrt(p * (1 - p) / trials)


def test_median_ci_needs_enough_draws():
    with pytest.raises(ValueError, match="at least 12"):
        measure.median_ci(np.arange(11.0), alpha=0.01, n_tests=11)


# ---------------------------------------------------------- processes (Linux)

linux = pytest.mark.skipif(not measure.peak_supported(), reason="needs /proc")
PEAK = dict(library="torch", model="mlp", batch=4, opt_kwargs={},
            model_kwargs={"width": 256, "depth": 8}, dtype="float32",
            data_seed=1)


@linux
def test_peak_rss_is_at_least_the_live_tensors():
    jobs = [{"fn": "peak", "kwargs": dict(PEAK, optimizer=o)}
            for o in ("sgd", "adam")]
    runs = measure.start_jobs(jobs, parallel=2, timeout_s=120)()
    assert [r["optimizer"] for r in runs] == ["sgd", "adam"]
    for run in runs:
        assert run["peak_increment"] >= measure.peak_bounds(run)[0]
    # Adam's peak is above SGD's by at least its state.
    sgd, adam = runs
    extra = adam["peak_increment"] - sgd["peak_increment"]
    assert extra >= 0.9 * adam["count"]["state"]


@linux
def test_forked_children_are_killed_on_timeout(monkeypatch):
    started = []
    real_popen = subprocess.Popen

    def recording_popen(*args, **kwargs):
        proc = real_popen(*args, **kwargs)
        started.append(proc)
        return proc

    monkeypatch.setattr(subprocess, "Popen", recording_popen)
    big = dict(PEAK, optimizer="adam", model_kwargs={"width": 1024,
                                                     "depth": 48})
    with pytest.raises(TimeoutError):
        measure.start_jobs([{"fn": "peak", "kwargs": big}], 1, timeout_s=1.0)()
    (proc,) = started
    assert proc.returncode is not None
    with pytest.raises(ProcessLookupError):  # the whole process group is gone
        os.killpg(proc.pid, 0)


@linux
def test_child_error_is_reported():
    with pytest.raises(RuntimeError, match="unknown optimizer"):
        measure.start_jobs([{"fn": "peak", "kwargs": dict(
            PEAK, optimizer="rmsprop")}], 1, timeout_s=60)()


def test_free_port_is_bindable():
    port = measure.free_port()
    assert 1024 <= port < 65536
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


@linux
@pytest.mark.parametrize("model,kwargs", [
    ("mlp", {"width": 64, "depth": 5}),
    ("transformer", {"d_model": 32, "nhead": 4, "num_layers": 2,
                     "dim_feedforward": 48}),
])
def test_zero_shards_adam_state_over_two_ranks(model, kwargs):
    port = measure.free_port()
    jobs = [{"fn": "zero", "kwargs": dict(
        rank=r, world_size=2, port=port, model=model, model_kwargs=kwargs,
        batch=2, seq_len=16, data_seed=1)} for r in range(2)]
    ranks = measure.start_jobs(jobs, parallel=2, timeout_s=120)()
    assert [r["rank"] for r in ranks] == [0, 1]
    total = 2 * ranks[0]["all_params"]
    assert sum(r["state"] for r in ranks) == total
    largest_state = 2 * ranks[0]["largest_param"]
    for r in ranks:
        # Greedy partition by size: the ranks differ by at most one tensor.
        assert abs(r["state"] - total / 2) <= largest_state / 2
        assert r["param_gap"] == 0.0 and r["backend"] == "gloo"


# --------------------------------------------------------------------- CUDA


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available")
@pytest.mark.parametrize("name,kwargs", [("sgd", {}), ("adam", {"foreach": False}),
                                         ("adam", {"foreach": True}), ("adam", {"fused": True})])
def test_cuda_step_peak_within_bounds(name, kwargs):
    run = measure.cuda_step_peak("cuda", **dict(
        PEAK, optimizer=name, model_kwargs={"width": 512, "depth": 8},
        batch=8, opt_kwargs=kwargs))
    lo, hi = measure.peak_bounds(run)
    assert lo <= run["peak_increment"] <= hi


def test_adambook_and_torch_agree_on_state_size():
    a = M.mlp(width=8, depth=2)
    b = M.mlp(width=8, depth=2)
    oa, ob = adambook.AdamW(a.parameters()), torch.optim.AdamW(b.parameters())
    for net, opt in ((a, oa), (b, ob)):
        M.train_step(net, opt, M.model_input(net, 2))
    assert M.count_memory(oa).state == M.count_memory(ob).state
