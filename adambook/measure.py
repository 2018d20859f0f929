"""Measured costs (sec-memory-peak to sec-memory-zero): peak memory of steps
in fresh processes, ZeRO's sharded state, median intervals of step times."""

import contextlib
import gc
import importlib
import json
import math
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from statistics import NormalDist

import numpy as np
import torch

from . import memory as M
from .stats import z_bound

#: In the measurement processes glibc serves every block of this many bytes
#: or more with a mapping of its own and unmaps it when it is freed, so the
#: peak RSS follows the live tensors (activations included) to a page.
MMAP_THRESHOLD = 4096

#: Bytes one such block may take beyond its request: a header and alignment
#: push it at most one page over, and the last page is rounded up.
PAGE_SLACK = 8192


def peak_supported() -> bool:
    """Peak RSS needs Linux: ``fork`` and ``/proc/self/clear_refs``."""
    return hasattr(os, "fork") and Path("/proc/self/clear_refs").exists()


def _proc(field: str) -> int:  # VmRSS or VmHWM (the kernel's peak RSS)
    with open("/proc/self/status") as f:
        return next(int(s.split()[1]) * 1024 for s in f
                    if s.startswith(field + ":"))


def _reset_hwm() -> int:  # writing 5 to clear_refs resets VmHWM (Linux >= 4)
    Path("/proc/self/clear_refs").write_text("5")
    return _proc("VmRSS")


def _build(model: str, model_kwargs: dict, dtype="float32", device="cpu"):
    return {"mlp": M.mlp, "transformer": M.transformer}[model](
        **model_kwargs, dtype=getattr(torch, dtype), device=device)


def _steps(optimizer, library, model, model_kwargs, batch, opt_kwargs,
           data_seed, dtype="float32", device="cpu", one_layer=False):
    """Two training steps, the second with the state alive (counted)."""
    if one_layer:  # the same shapes and kernels, for a warm-up
        depth = {"mlp": "depth", "transformer": "num_layers"}[model]
        model_kwargs = dict(model_kwargs, **{depth: 1})
    net = _build(model, model_kwargs, dtype, device)
    opt = M.make_optimizer(optimizer, net.parameters(), library, **opt_kwargs)
    M.train_step(net, opt, x := M.model_input(net, batch, seed=data_seed))
    with M.saved_activation_bytes(net) as saved:
        M.train_step(net, opt, x)
    return net, opt, saved


def _measure(baseline, peak, **job) -> dict:
    """Peak above ``baseline()`` of :func:`_steps`, after a warm-up on one
    layer (the kernels' code pages and workspaces), with the live counts."""
    _steps(**job, one_layer=True)
    gc.collect()
    base = baseline()
    net, opt, saved = _steps(**job)
    return dict(job, peak_increment=peak() - base,
                count=asdict(M.count_memory(opt)),
                activations=sum(saved.values()), n_activations=len(saved),
                largest_activation=max(saved.values(), default=0),
                largest_param=max(map(M.tensor_bytes, net.parameters())))


def cuda_step_peak(device, **job) -> dict:
    """One peak job (see :func:`start_jobs`) in this process on CUDA, read by
    ``torch.cuda.max_memory_allocated``: no pages, no interpreter."""
    cuda, device = torch.cuda, torch.device(device)

    def baseline():
        cuda.synchronize(device), cuda.empty_cache()
        cuda.reset_peak_memory_stats(device)
        return cuda.memory_allocated(device)

    return _measure(baseline, lambda: cuda.synchronize(device)
                    or cuda.max_memory_allocated(device), device=device, **job)


def _zero_rank(rank, world_size, port, model, model_kwargs, batch, seq_len,
               data_seed):
    """One rank of ZeroRedundancyOptimizer(Adam) under DDP, gloo, loopback."""
    import torch.distributed as dist
    from torch.distributed.optim import ZeroRedundancyOptimizer
    from torch.nn.parallel import DistributedDataParallel

    os.environ["GLOO_SOCKET_IFNAME"] = next(  # loopback
        n for _, n in socket.if_nameindex() if n.startswith("lo"))
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}",
                            rank=rank, world_size=world_size)
    try:
        net = _build(model, model_kwargs)  # the same weights on every rank
        ddp = DistributedDataParallel(net)
        opt = ZeroRedundancyOptimizer(
            net.parameters(), optimizer_class=torch.optim.Adam, lr=1e-3)
        x = M.model_input(net, batch, seq_len, data_seed + rank)  # its data
        for _ in range(2):
            opt.zero_grad()
            ddp(x).square().mean().backward()  # DDP averages the gradients
            opt.step()  # each rank updates its shard and broadcasts it
        local = M.count_memory(opt.optim)
        flat = torch.cat([p.detach().flatten() for p in net.parameters()])
        dist.all_reduce(top := flat.clone(), op=dist.ReduceOp.MAX)
        sizes = list(map(M.tensor_bytes, net.parameters()))
        return {"rank": rank, "state": local.state, "all_params": sum(sizes),
                "local_tensors": local.n_tensors, "largest_param": max(sizes),
                "param_gap": (top - flat).abs().max().item(),
                "backend": dist.get_backend()}
    finally:
        dist.destroy_process_group()


def _peak_job(**job) -> dict:
    return _measure(_reset_hwm, lambda: _proc("VmHWM"), **job)


_JOBS = {"peak": _peak_job, "zero": _zero_rank}


def _serve() -> None:
    """The process of :func:`start_jobs`: warm up once per distinct peak job
    (for the children), fork a child a job, print the results as JSON."""
    req = json.loads(sys.argv[1])
    alarm = math.ceil(req["timeout_s"]) + 5  # no process outlives it
    signal.alarm(alarm)
    torch.set_num_threads(1)
    if any(j["fn"] == "zero" for j in req["jobs"]):
        importlib.import_module("torch.distributed.optim")  # once
    for kw in {json.dumps(j["kwargs"], sort_keys=True): j["kwargs"]
               for j in req["jobs"] if j["fn"] == "peak"}.values():
        _steps(**kw, one_layer=True)
    gc.collect()
    gc.freeze()  # the children's collections skip everything made so far
    fork = multiprocessing.get_context("fork")
    with fork.Pool(req["parallel"], signal.alarm, (alarm,),
                   maxtasksperchild=1) as pool:  # a fresh child a job
        done = [pool.apply_async(_JOBS[j["fn"]], (), j["kwargs"])
                for j in req["jobs"]]
        json.dump([d.get() for d in done], sys.stdout)


def start_jobs(jobs: list[dict], parallel: int, timeout_s: float):
    """Start ``jobs`` in children forked from one fresh Python process,
    ``parallel`` at a time on one thread each; ``wait()`` returns their
    results. All die on an error or ``timeout_s`` after the start. Linux.

    ``{"fn": "peak", "kwargs": ...}`` (the arguments of :func:`_steps`):
    the peak RSS of two training steps above the RSS before the model was
    built, with the counts :func:`peak_bounds` needs. ``{"fn": "zero",
    "kwargs": ...}``: one rank of :func:`_zero_rank`; a group's ranks must
    run at once (put them first)."""
    root = str(Path(__file__).resolve().parents[1])
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_=str(MMAP_THRESHOLD),
               OMP_NUM_THREADS="1",
               PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    request = {"jobs": jobs, "parallel": parallel, "timeout_s": timeout_s}
    proc = subprocess.Popen(
        [sys.executable, "-c", "from adambook.measure import _serve; "
         "_serve()", json.dumps(request)], stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=root,
        start_new_session=True)
    deadline = time.monotonic() + timeout_s

    def wait() -> list:
        try:
            out, err = proc.communicate(
                timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            raise TimeoutError(f"jobs took over {timeout_s} s") from None
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if proc.returncode != 0:
            raise RuntimeError(f"job process failed:\n{err.decode()[-4000:]}")
        return json.loads(out)

    return wait


def free_port() -> int:  # a TCP port free on 127.0.0.1 now, picked by the OS
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def step_temporaries(run: dict) -> tuple[int, int]:
    """Bytes and blocks a step holds at once, read off ``torch.optim``: SGD,
    fused Adam none; single-tensor Adam two of the largest parameter's size
    (``exp_avg_sq.sqrt() / c``), foreach Adam one per parameter; in the
    backward pass one layer's gradients (weight, bias) too."""
    kw, big, c = run["opt_kwargs"], run["largest_param"], run["count"]
    grads = (2 * big, 2) if kw.get("in_backward") else (0, 0)
    temp = ((0, 0) if run["optimizer"].startswith("sgd") or kw.get("fused")
            else (c["params"], c["n_tensors"]) if kw.get("foreach")
            else (2 * big, 2))
    return grads[0] + temp[0], grads[1] + temp[1]


def peak_bounds(run: dict) -> tuple[int, int]:
    r"""Bounds on a step's peak from the live counts of a peak run: lower
    :math:`P + S + \max(G, A)` (alive after the last forward pass and after
    its backward pass), upper :math:`P + G + S + A + T`, :math:`T` the
    step's temporaries, three activation-sized buffers of the backward pass
    and :data:`PAGE_SLACK` per live block."""
    c, A = run["count"], run["activations"]
    P, G, S = c["params"], c["grads"], c["state"] + c["scalars"]
    temp, temp_blocks = step_temporaries(run)
    blocks = ((2 + c["state"] // P) * c["n_tensors"] + run["n_activations"]
              + 3 + temp_blocks)
    T = temp + 3 * run["largest_activation"] + PAGE_SLACK * blocks
    return P + S + max(G, A), P + G + S + A + T


def summarize_peaks(runs: list[dict]) -> dict[str, dict]:
    """Group peak runs by optimizer, options, model and batch: ``median``,
    ``spread`` (max - min), ``n``, ``bounds`` and ``run`` (the first)."""
    groups: dict[str, list[dict]] = {}
    for r in runs:
        opts = ",".join(f"{k}={v}" for k, v in sorted(r["opt_kwargs"].items()))
        label = (f"{r['optimizer']}{f'[{opts}]' if opts else ''} "
                 f"{r['model']} B={r['batch']}")
        groups.setdefault(label, []).append(r)
    return {label: {"median": float(np.median(x)), "n": len(rs), "run": rs[0],
                    "spread": float(np.ptp(x)), "bounds": peak_bounds(rs[0])}
            for label, rs in groups.items()
            for x in [[r["peak_increment"] for r in rs]]}


def measurement_noise(summary: dict) -> float:
    """The largest spread of any repeated run, pooled: the noise of the
    process (where heap and libraries land). A heuristic, not a standard
    error; the chapter computes its error rate under two noise models."""
    return max(v["spread"] for v in summary.values() if v["n"] > 1)


def difference_interval(summary, label: str, base: str):
    """Where the peak of ``label`` may lie above that of ``base``: the extra
    state, plus at most the extra step temporaries and a page slack per
    extra block, give or take the noise of each of the two peaks."""
    (a, ca), (b, cb) = ((r, r["count"]) for r in (
        summary[label]["run"], summary[base]["run"]))
    extra = ca["state"] + ca["scalars"] - cb["state"] - cb["scalars"]
    temp, temp_blocks = np.subtract(step_temporaries(a), step_temporaries(b))
    slots = ca["state"] // ca["params"] - cb["state"] // cb["params"]
    blocks = slots * ca["n_tensors"] + temp_blocks
    noise = 2 * measurement_noise(summary)  # of each of the two peaks
    return extra - noise, extra + temp + PAGE_SLACK * blocks + noise


def median_ci(x, alpha: float, n_tests: int, axis: int = 0):
    r"""``(median, low, high)`` of ``x`` along ``axis``: the sign-test
    interval from the :math:`k`-th smallest to the :math:`k`-th largest of
    :math:`n` draws misses the median with probability
    :math:`2\,P(\mathrm{Bin}(n, 1/2) \le k-1)`, whatever the distribution;
    the largest :math:`k` within Šidák's level :math:`2\Phi(-z)`, :math:`z`
    = :func:`~adambook.stats.z_bound` ``(alpha, n_tests)``, is used.

    >>> median_ci(np.arange(1.0, 12.0), alpha=0.05, n_tests=1)
    (6.0, 2.0, 10.0)
    """
    x = np.sort(np.asarray(x, dtype=float), axis=axis)
    n = x.shape[axis]
    level = 2 * NormalDist().cdf(-z_bound(alpha, n_tests))
    miss = 2 * np.cumsum([math.comb(n, i) for i in range(n // 2)]) / 2.0**n
    k = int(np.sum(miss <= level * (1 + 1e-12)))
    if k == 0:
        raise ValueError(
            f"{n} draws cannot give a median interval at level {level:.2g}; "
            f"need at least {math.ceil(math.log2(2 / level))}")
    return tuple(float(v) if np.ndim(v) == 0 else v for v in (
        np.median(x, axis=axis), np.take(x, k - 1, axis=axis),
        np.take(x, n - k, axis=axis)))
