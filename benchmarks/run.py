#!/usr/bin/env python3
"""Benchmarks of the book: chapter and build times, and optimizer step times.

One command runs all of it and writes ``benchmarks/RESULTS.md``::

    make bench                          # = .venv/bin/python benchmarks/run.py
    make bench BENCH_ARGS=--quick       # small sizes, one run each: checks the script

**Book.** Each chapter listed in ``_toc.yml`` is executed ``--chapter-repeats`` times
in a fresh kernel (kernel start timed apart), and the whole book is built from
scratch ``--build-repeats`` times: ``make book`` in a fresh copy of the committed
sources (no ``_build``, so an empty cache). With ``--ci`` (or ``--only ci``) it also
times ``.ci/run`` in a fresh clone, with a ``.venv`` of its own.

**Optimizer steps.** ``adambook.Adam`` and ``adambook.AdamW`` (single-tensor and
foreach paths) against ``torch.optim.Adam``'s single-tensor, foreach and fused paths
and ``torch.optim.AdamW``'s default, for each size in ``--sizes``, with the parameters
in one tensor and split into ``--tensors`` tensors, on the CPU and on CUDA when
present. All variants of one configuration hold their own parameters and state (the
gradients are shared, read-only) and are timed in rounds: each round times every
variant and a plain copy of the same number of floats, in an order rotated from round
to round, so that a ratio is taken between times measured side by side. Reported: the
median step time over the rounds, the effective bandwidth ``7 x 4 bytes x params /
time`` (an Adam step must read parameter, gradient and both moments and write back
three of them) next to the copy's ``2 x 4 bytes x params / time``, and the median over
rounds of each time's ratio to torch's default path of the same class.

Memory: for the largest size (1e8 by default) all eight variants live at once, about
12 GB. Expect the full run to take 10-20 minutes on the 2-core CI machine with nine
chapters, most of it the chapters and the build; run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

import adambook

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import book  # noqa: E402  (the tests' tooling: pages, executing a chapter, building)

ROOT = Path(__file__).resolve().parents[1]

#: Goals from the issue: seconds per chapter (by chapter name; others get the default),
#: seconds for the whole build, and adambook's step time over torch's default at 1e7.
CHAPTER_GOAL_S = {"memory": 60.0}
DEFAULT_CHAPTER_GOAL_S = 30.0
BOOK_GOAL_S = 120.0
CI_GOAL_S = 300.0
STEP_RATIO_GOAL = 1.5
STEP_GOAL_SIZE = 10_000_000

ADAM_BYTES_PER_PARAM = 7 * 4  # read p, g, m, v; write p, m, v (float32)
COPY_BYTES_PER_PARAM = 2 * 4  # read src, write dst


# ------------------------------------------------------------------------------ book


def bench_chapters(repeats: int) -> list[dict]:
    rows = []
    for chapter in book.chapters(ROOT):
        runs = []
        for _ in range(repeats):
            ex = book.execute_chapter(chapter.source)
            runs.append((ex.seconds, ex.startup_seconds))
            print(f"  {chapter.name}: {ex.seconds:.2f} s (+{ex.startup_seconds:.2f} s kernel start)",
                  flush=True)
        secs = [r[0] for r in runs]
        rows.append({
            "chapter": chapter.name,
            "median_s": statistics.median(secs),
            "min_s": min(secs),
            "max_s": max(secs),
            "runs": len(secs),
            "kernel_start_s": statistics.median(r[1] for r in runs),
            "goal_s": CHAPTER_GOAL_S.get(chapter.name, DEFAULT_CHAPTER_GOAL_S),
        })
    return rows


def _fresh_copy(tmp: Path) -> Path:
    """The committed sources (``git archive HEAD``) in ``tmp/src``, with this
    checkout's ``.venv`` linked in (so ``make`` does not set one up again)."""
    src = Path(tmp) / "src"
    src.mkdir()
    archive = subprocess.run(["git", "archive", "HEAD"], cwd=ROOT, check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(src)], input=archive, check=True)
    (src / ".venv").symlink_to(ROOT / ".venv")
    return src


def bench_build(repeats: int) -> dict:
    """``make book`` on a fresh copy of the sources (no ``_build``, no cache)."""
    seconds = []
    for i in range(repeats):
        with tempfile.TemporaryDirectory(prefix="adambook-bench-") as tmp:
            src = _fresh_copy(Path(tmp))
            t0 = time.perf_counter()
            # -o: take .venv as set up (it is this checkout's).
            proc = subprocess.run(["make", "-o", ".venv/.installed", "book"],
                                  cwd=src, capture_output=True, text=True)
            s = time.perf_counter() - t0
            if proc.returncode != 0:
                raise RuntimeError(f"make book failed:\n{proc.stdout[-4000:]}"
                                   f"\n{proc.stderr[-4000:]}")
            seconds.append(s)
        print(f"  make book {i + 1}/{repeats}: {s:.1f} s", flush=True)
    return {"median_s": statistics.median(seconds), "runs": seconds}


def bench_ci() -> dict:
    """``.ci/run`` in a fresh clone of HEAD, its own ``.venv`` set up from pip's
    cache (as on the CI machine), ``CI=true``."""
    with tempfile.TemporaryDirectory(prefix="adambook-ci-") as tmp:
        src = Path(tmp) / "clone"
        subprocess.run(["git", "clone", "-q", str(ROOT), str(src)], check=True)
        t0 = time.perf_counter()
        proc = subprocess.run([".ci/run"], cwd=src, capture_output=True, text=True,
                              env=dict(os.environ, CI="true"))
        s = time.perf_counter() - t0
        tail = proc.stdout[-3000:]
        shots = src / "artifacts" / "browser"  # keep what the browser test saw
        if shots.is_dir():
            import shutil

            dest = ROOT / "artifacts" / "ci-browser"
            shutil.rmtree(dest, ignore_errors=True)
            shutil.copytree(shots, dest)
    print(f"  .ci/run: {s:.1f} s, exit {proc.returncode}", flush=True)
    return {"seconds": s, "returncode": proc.returncode, "tail": tail}


# ------------------------------------------------------------------------ optimizers


def _torch_default_path(params) -> str:
    """The path torch.optim.Adam takes when given no foreach/fused flag."""
    try:
        from torch.optim.optimizer import _default_to_fused_or_foreach

        fused, foreach = _default_to_fused_or_foreach(list(params), False, False)
    except Exception:  # private helper moved: fall back to the documented rule
        fused, foreach = False, all(p.is_cuda for p in params)
    return "fused" if fused else "foreach" if foreach else "single-tensor"


def _variants(device: torch.device, lr: float, wd: float) -> dict:
    """name -> (class label, path, constructor); one entry per path, no duplicates."""
    A, W = adambook.Adam, adambook.AdamW
    return {
        "adambook.Adam single-tensor": ("Adam", lambda p: A(p, lr=lr, foreach=False)),
        "adambook.Adam foreach": ("Adam", lambda p: A(p, lr=lr, foreach=True)),
        "adambook.AdamW single-tensor": ("AdamW", lambda p: W(p, lr=lr, weight_decay=wd, foreach=False)),
        "adambook.AdamW foreach": ("AdamW", lambda p: W(p, lr=lr, weight_decay=wd, foreach=True)),
        "torch.optim.Adam single-tensor": ("Adam", lambda p: torch.optim.Adam(p, lr=lr, foreach=False)),
        "torch.optim.Adam foreach": ("Adam", lambda p: torch.optim.Adam(p, lr=lr, foreach=True)),
        "torch.optim.Adam fused": ("Adam", lambda p: torch.optim.Adam(p, lr=lr, fused=True)),
        "torch.optim.AdamW default": ("AdamW", lambda p: torch.optim.AdamW(p, lr=lr, weight_decay=wd)),
    }


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _split(n: int, pieces: int) -> list[int]:
    base, extra = divmod(n, pieces)
    return [base + (1 if i < extra else 0) for i in range(pieces)]


def bench_steps(device: torch.device, n_params: int, n_tensors: int, rounds: int,
                min_time: float) -> list[dict]:
    """Time every variant on ``n_params`` parameters in ``n_tensors`` tensors."""
    gen = torch.Generator().manual_seed(0)
    sizes = _split(n_params, n_tensors)
    base = [torch.randn(s, generator=gen).to(device) for s in sizes]
    grads = [torch.randn(s, generator=gen).to(device) for s in sizes]
    adambook_default = "foreach" if device.type == "cuda" else "single-tensor"
    torch_default = _torch_default_path(base)

    runners = {}
    for name, (cls, make) in _variants(device, lr=1e-3, wd=1e-2).items():
        params = [torch.nn.Parameter(b.clone()) for b in base]
        for p, g in zip(params, grads):
            p.grad = g  # shared: every optimizer only reads the gradient
        opt = make(params)
        runners[name] = (cls, opt.step)
    src = torch.randn(n_params, generator=gen).to(device)
    dst = torch.empty_like(src)
    runners["copy"] = (None, lambda: dst.copy_(src))

    # Warm up (allocates the state) and pick steps per timing so each lasts min_time.
    reps = {}
    for name, (_, fn) in runners.items():
        fn()
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        once = max(time.perf_counter() - t0, 1e-6)
        reps[name] = max(1, min(1000, math.ceil(min_time / once)))

    names = list(runners)
    times = {name: [] for name in names}
    for r in range(rounds):
        order = names[r % len(names):] + names[: r % len(names)]
        for name in order:
            fn, k = runners[name][1], reps[name]
            _sync(device)
            t0 = time.perf_counter()
            for _ in range(k):
                fn()
            _sync(device)
            times[name].append((time.perf_counter() - t0) / k)

    # torch's default path of each class, for the ratios
    ref = {"Adam": f"torch.optim.Adam {torch_default}", "AdamW": "torch.optim.AdamW default"}
    copy_t = statistics.median(times["copy"])
    copy_gbs = COPY_BYTES_PER_PARAM * n_params / copy_t / 1e9
    rows = []
    for name in names:
        if name == "copy":
            continue
        cls = runners[name][0]
        t = statistics.median(times[name])
        gbs = ADAM_BYTES_PER_PARAM * n_params / t / 1e9
        ratio = statistics.median(a / b for a, b in zip(times[name], times[ref[cls]]))
        is_default = (name.startswith("adambook") and name.endswith(adambook_default)) or (
            name == ref[cls])
        rows.append({
            "device": device.type, "params": n_params, "tensors": n_tensors,
            "optimizer": name, "class": cls, "default_path": is_default,
            "step_ms": 1e3 * t, "gbs": gbs, "copy_gbs": copy_gbs,
            "of_copy": gbs / copy_gbs, "ratio_to_torch_default": ratio,
            "reference": ref[cls], "steps_per_timing": reps[name], "rounds": rounds,
        })
    del runners, base, grads, src, dst
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return rows


# --------------------------------------------------------------------------- output


def _machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        commit = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT,
                                capture_output=True, text=True).stdout.strip() or "unknown"
    except OSError:
        commit = "unknown"
    return {
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "commit": commit,
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "load_start": os.getloadavg()[0],
    }


def _yes(ok: bool | None) -> str:
    return "n/a" if ok is None else ("yes" if ok else "**no**")


def write_markdown(res: dict, path: Path, quick: bool) -> None:
    m = res["machine"]
    out = ["# Benchmarks", ""]
    out += [
        f"Written by `benchmarks/run.py {' '.join(res['argv'])}`".rstrip() + f" on {m['date']}, "
        f"commit `{m['commit']}`. Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']} "
        f"({m['torch_threads']} threads), Python {m['python']}, CUDA: {m['cuda'] or 'none'}. "
        f"Load average (1 min) at start {m['load_start']:.2f}, at end {m['load_end']:.2f}; "
        "a load above zero means other work shared the machine and the times are inflated.",
        "",
        "Regenerate with `make bench` (all of this, on a quiet machine).",
        "",
    ]
    if quick:
        out += ["> **Quick run** (`--quick`): small sizes and single runs, to check the script. "
                "These numbers do not judge the goals.", ""]

    goals = []
    if res.get("chapters"):
        worst = max(res["chapters"], key=lambda r: r["median_s"] / r["goal_s"])
        goals.append(("each chapter <= 30 s (memory <= 60 s)",
                      f"slowest against its goal: {worst['chapter']} {worst['median_s']:.1f} s",
                      all(r["median_s"] <= r["goal_s"] for r in res["chapters"])))
    if res.get("build"):
        goals.append((f"`make book` from scratch <= {BOOK_GOAL_S:.0f} s",
                      f"{res['build']['median_s']:.1f} s",
                      res["build"]["median_s"] <= BOOK_GOAL_S))
    if res.get("ci"):
        c = res["ci"]
        goals.append((f"`.ci/run` from a fresh clone <= {CI_GOAL_S:.0f} s",
                      f"{c['seconds']:.1f} s (exit {c['returncode']})",
                      c["seconds"] <= CI_GOAL_S and c["returncode"] == 0))
    at_goal = [r for r in res.get("steps", []) if r["params"] == STEP_GOAL_SIZE
               and r["optimizer"].startswith("adambook") and r["default_path"]]
    if at_goal:
        worst = max(at_goal, key=lambda r: r["ratio_to_torch_default"])
        goals.append((f"adambook <= {STEP_RATIO_GOAL}x torch's default at 1e7 parameters",
                      f"worst {worst['ratio_to_torch_default']:.2f}x ({worst['optimizer']}, "
                      f"{worst['device']}, {worst['tensors']} tensor(s))",
                      all(r["ratio_to_torch_default"] <= STEP_RATIO_GOAL for r in at_goal)))
    elif res.get("steps"):
        goals.append((f"adambook <= {STEP_RATIO_GOAL}x torch's default at 1e7 parameters",
                      "1e7 not measured in this run", None))
    out += ["## Goals", "", "| goal | measured | met |", "| --- | --- | --- |"]
    out += [f"| {g} | {v} | {_yes(None if quick else ok)} |" for g, v, ok in goals]
    out += [""]

    if res.get("chapters"):
        out += ["## Chapters", "",
                "Execution in a fresh kernel on torch's default thread count (median of the "
                "runs; kernel start apart), one chapter at a time.", "",
                "| chapter | median (s) | min-max (s) | runs | kernel start (s) "
                "| goal (s) | met |", "| --- | ---: | ---: | ---: | ---: | ---: | --- |"]
        for r in res["chapters"]:
            out.append(
                f"| {r['chapter']} | {r['median_s']:.1f} | {r['min_s']:.1f}-{r['max_s']:.1f} "
                f"| {r['runs']} | {r['kernel_start_s']:.1f} "
                f"| {r['goal_s']:.0f} | {_yes(None if quick else r['median_s'] <= r['goal_s'])} |")
        out += [""]
    if res.get("build"):
        b = res["build"]
        out += ["## Whole book", "",
                "`make book` on a fresh copy of the committed sources (no `_build`, an empty "
                "jupyter-cache): every chapter executed, one process per core, then "
                "`jupyter-book build --all -W -n --keep-going`.", "",
                "| median (s) | runs (s) |", "| ---: | --- |",
                f"| {b['median_s']:.1f} | {', '.join(f'{s:.1f}' for s in b['runs'])} |", ""]
    if res.get("steps"):
        out += ["## Optimizer steps", "",
                "float32, lr 1e-3 (AdamW: weight decay 1e-2). *GB/s*: 28 bytes per parameter "
                "(an Adam step's minimal traffic) over the step time; *copy*: the bandwidth of "
                "`dst.copy_(src)` on the same number of floats in the same run. *ratio*: median "
                "over rounds of the step time over that round's time of torch's default path "
                "for the class (Adam or AdamW); rows marked * are the paths each library takes "
                "by default on that device.", ""]
        for dev in dict.fromkeys(r["device"] for r in res["steps"]):
            for n in dict.fromkeys(r["params"] for r in res["steps"] if r["device"] == dev):
                for k in dict.fromkeys(r["tensors"] for r in res["steps"]
                                       if r["device"] == dev and r["params"] == n):
                    rows = [r for r in res["steps"]
                            if (r["device"], r["params"], r["tensors"]) == (dev, n, k)]
                    out += [f"### {dev}, {n:.0e} parameters in {k} tensor{'s' if k > 1 else ''}"
                            f" (copy {rows[0]['copy_gbs']:.1f} GB/s, {rows[0]['rounds']} rounds)",
                            "", "| optimizer | step (ms) | GB/s | of copy | ratio | reference |",
                            "| --- | ---: | ---: | ---: | ---: | --- |"]
                    for r in rows:
                        star = " *" if r["default_path"] else ""
                        out.append(f"| {r['optimizer']}{star} | {r['step_ms']:.3g} | {r['gbs']:.1f} "
                                   f"| {r['of_copy']:.0%} | {r['ratio_to_torch_default']:.2f}x "
                                   f"| {r['reference']} |")
                    out += [""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(out))


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="small sizes, one run each, output under artifacts/ (checks the script)")
    ap.add_argument("--only", choices=["book", "steps", "ci"],
                    help="run one part only (ci: .ci/run from a fresh clone)")
    ap.add_argument("--ci", action="store_true",
                    help="also time .ci/run from a fresh clone (about 5 minutes)")
    ap.add_argument("--sizes", default=None, help="parameter counts, e.g. 1e6,1e7,1e8")
    ap.add_argument("--tensors", type=int, default=200, help="tensors in the split layout")
    ap.add_argument("--rounds", type=int, default=None, help="timing rounds per configuration")
    ap.add_argument("--min-time", type=float, default=None, help="seconds per timing, at least")
    ap.add_argument("--chapter-repeats", type=int, default=None)
    ap.add_argument("--build-repeats", type=int, default=None)
    ap.add_argument("--devices", default=None, help="cpu,cuda (default: cpu, and cuda if present)")
    ap.add_argument("--out", type=Path, default=None, help="markdown file to write")
    args = ap.parse_args(argv)

    q = args.quick
    sizes = [int(float(s)) for s in (args.sizes or ("1e5,1e6" if q else "1e6,1e7,1e8")).split(",")]
    rounds = args.rounds or (3 if q else 7)
    min_time = args.min_time or (0.02 if q else 0.2)
    chapter_repeats = args.chapter_repeats or (1 if q else 3)
    build_repeats = args.build_repeats or 1
    devices = (args.devices.split(",") if args.devices
               else ["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
    out = args.out or (ROOT / "artifacts" / "benchmarks" / "RESULTS-quick.md" if q
                       else ROOT / "benchmarks" / "RESULTS.md")

    res = {"argv": argv, "machine": _machine()}
    if args.only in (None, "book"):
        print("chapters:", flush=True)
        res["chapters"] = bench_chapters(chapter_repeats)
        print("whole book from scratch:", flush=True)
        res["build"] = bench_build(build_repeats)
    if args.only == "ci" or args.ci:
        print(".ci/run from a fresh clone:", flush=True)
        res["ci"] = bench_ci()
    if args.only in (None, "steps"):
        res["steps"] = []
        for dev in devices:
            for n in sizes:
                for k in (1, args.tensors):
                    print(f"steps: {dev}, {n:.0e} parameters in {k} tensor(s)", flush=True)
                    res["steps"] += bench_steps(torch.device(dev), n, k, rounds, min_time)
    res["machine"]["load_end"] = os.getloadavg()[0]

    write_markdown(res, out, quick=q)
    raw = ROOT / "artifacts" / "benchmarks" / (out.stem + ".json")
    raw.parent.mkdir(parents=True, exist_ok=True)
    raw.write_text(json.dumps(res, indent=1, default=str))
    print(f"wrote {out} (raw numbers: {raw})")


if __name__ == "__main__":
    main()
