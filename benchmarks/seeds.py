"""Every chapter's statistical checks, run over many seeds: how often does each fail?

A chapter fixes its seed, so one build cannot show that a check with a family-wise
false-alarm rate alpha fails about alpha of the time. This script executes each
chapter again for seeds 1..N: right after the chapter's cell tagged ``parameters``
it inserts a cell that adds ``1000 * s`` to every seed set there (each upper-case
name ending in ``SEED``), runs it in a fresh kernel, and records whether every
assertion passed and which verdict each claim got. It writes
``benchmarks/SEEDS.md``: per chapter, the failure rate with a 95% Clopper-Pearson
interval beside the chapter's stated family-wise alpha, and per claim how often each
verdict came out.

A chapter without such a name in its parameters cell draws nothing at random and
is listed as deterministic. Not part of CI: ``make seeds`` (N=20 takes about 20 times
the book's execution time).

    python benchmarks/seeds.py [--seeds 20] [--first 1] [--chapters sgd adam ...]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
import book  # noqa: E402  (the tests' tooling: pages, executing a chapter)

#: The family-wise false-alarm rate a chapter states: FAMILY_ALPHA where a chapter
#: has it (its ALPHA may be a learning rate), else ALPHA.
ALPHA = re.compile(r"^(FAMILY_ALPHA|ALPHA)\s*=\s*([0-9.eE+-]+)", re.M)
SEEDS = re.compile(r"^([A-Z_]*SEED)\s*=", re.M)
SHIFT = ("# make seeds: every seed of the parameters cell, shifted\n"
         "for _name in [n for n in dir() if n.isupper() and n.endswith('SEED')]:\n"
         "    globals()[_name] += 1000 * {seed}\n")


def parameters_cell(nb) -> int | None:
    for k, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and "parameters" in cell.metadata.get("tags", []):
            return k
    return None


def verdicts(nb) -> dict[str, str]:
    """The verdicts a chapter published (glue ``<key>.verdict``), and the
    findings it reports without asserting (glue ``observed.<what>``: True or
    False), which the table of verdicts counts the same way."""
    found = {}
    for cell in book.code_cells(nb):
        for out in cell.get("outputs", []):
            name = out.get("metadata", {}).get("scrapbook", {}).get("name", "")
            if name.endswith(".verdict") or name.startswith("observed."):
                data = out.get("data", {})
                text = next((v for m, v in data.items() if m.endswith("text/plain")), "")
                found[name.removesuffix(".verdict")] = str(text).strip("'\"")
    return found


def run_seed(chapter: book.Page, seed: int, timeout: int) -> dict:
    import nbformat
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.read(chapter.source, as_version=4)
    k = parameters_cell(nb)
    nb.cells.insert(k + 1, nbformat.v4.new_code_cell(SHIFT.format(seed=seed)))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / chapter.source.name
        nbformat.write(nb, path)
        t0 = time.perf_counter()
        try:
            ex = book.execute_chapter(path, timeout=timeout)
        except CellExecutionError as err:
            text = re.sub(r"\x1b\[[0-9;]*m", "", str(err))  # no ANSI colours
            lines = [ln for ln in text.splitlines() if "Error" in ln]
            # the failing line of the cell (IPython marks it with an arrow)
            where = re.findall(r"^-+> *\d+ (.*)$", text, re.M)
            why = (lines or ["?"])[-1] + (f" at `{where[-1]}`" if where else "")
            return {"seed": seed, "passed": False, "why": why[:240],
                    "seconds": time.perf_counter() - t0}
    return {"seed": seed, "passed": True, "verdicts": verdicts(ex.notebook),
            "seconds": time.perf_counter() - t0}


def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Exact binomial interval for k failures in n runs (bisection on the CDF)."""
    from math import comb

    def cdf(x, p):
        return sum(comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(x + 1))

    def solve(f):
        lo, hi = 0.0, 1.0
        for _ in range(60):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if f(mid) else (lo, mid)
        return (lo + hi) / 2

    a = (1 - level) / 2
    lower = 0.0 if k == 0 else solve(lambda p: 1 - cdf(k - 1, p) < a)
    upper = 1.0 if k == n else solve(lambda p: cdf(k, p) > a)
    return lower, upper


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--first", type=int, default=1,
                        help="the first seed s; fresh draws for a rule "
                        "chosen after seeing seeds 1..N: --first N+1")
    parser.add_argument("--chapters", nargs="*")
    parser.add_argument("--timeout", type=int, default=600)
    parser.add_argument("--jobs", type=int,
                        default=len(os.sched_getaffinity(0)),
                        help="chapters executed at once, each kernel on one "
                             "thread (default: one per core)")
    args = parser.parse_args()
    if args.jobs > 1:  # one thread per kernel: the jobs fill the cores
        for name in book.THREAD_VARIABLES:
            os.environ[name] = "1"
    if args.seeds < 20:
        print("note: fewer than 20 seeds cannot show a failure rate near 1e-3 anyway")
    rows, claims, todo = [], {}, []
    import nbformat

    for chapter in book.chapters(ROOT):
        if args.chapters and chapter.name not in args.chapters:
            continue
        nb = nbformat.read(chapter.source, as_version=4)
        k = parameters_cell(nb)
        params = nb.cells[k].source if k is not None else ""
        if k is None or not SEEDS.search(params):
            rows.append((chapter.name, "deterministic (no SEED)", "", "", ""))
            print(f"{chapter.name}: deterministic")
            continue
        alphas = dict(ALPHA.findall(params))
        todo.append((chapter, alphas.get("FAMILY_ALPHA", alphas.get("ALPHA", "?"))))
    jobs = [(chapter, seed) for chapter, _ in todo
            for seed in range(args.first, args.first + args.seeds)]
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        # Each job is a kernel of its own: threads here only wait on them.
        done = list(pool.map(lambda job: run_seed(*job, args.timeout), jobs))
    for chapter, alpha in todo:
        results = [r for (c, _), r in zip(jobs, done) if c == chapter]
        for r in results:
            for key, v in r.get("verdicts", {}).items():
                claims.setdefault(key, {}).setdefault(v, 0)
                claims[key][v] += 1
            print(f"{chapter.name} seed {r['seed']}: "
                  f"{'ok' if r['passed'] else 'FAILED ' + r['why']} "
                  f"({r['seconds']:.1f} s)", flush=True)
        failed = [r for r in results if not r["passed"]]
        lo, hi = clopper_pearson(len(failed), len(results))
        rows.append((chapter.name, f"{len(failed)} of {len(results)}",
                     f"{lo:.3f} to {hi:.3f}", alpha,
                     "; ".join(f"seed {r['seed']}: {r['why']}" for r in failed)[:300]))
    lines = [
        "# Failure rates over seeds", "",
        f"Written by `benchmarks/seeds.py --seeds {args.seeds} --first "
        f"{args.first}` (seeds {args.first} to {args.first + args.seeds - 1})"
        ". Each chapter was "
        "executed once per seed s, with 1000 s added to every seed of its "
        "parameters cell. The stated alpha is each claim family's false-alarm "
        "rate; a chapter with several families may fail up to their sum.", "",
        "| chapter | runs that failed an assertion | 95% interval | stated alpha | "
        "what failed |", "| --- | --- | --- | --- | --- |",
        *[f"| {' | '.join(r)} |" for r in rows], "",
        "## Verdicts over seeds", "", "| claim | verdicts |", "| --- | --- |",
        *[f"| `{k}` | {', '.join(f'{v}: {n}' for v, n in sorted(c.items()))} |"
          for k, c in claims.items()],
    ]
    (ROOT / "benchmarks" / "SEEDS.md").write_text("\n".join(lines) + "\n")
    print(json.dumps({"chapters": len(rows)}))


if __name__ == "__main__":
    main()
