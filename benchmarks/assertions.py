"""Every assertion of a chapter, over seeds: which would fail, how often.

``make seeds`` stops a chapter at its first failing assertion, so it cannot say
whether later assertions hold on that draw. This script executes each chapter
with every ``assert`` statement rewritten (by the ``ast`` module) into a record
of whether its condition held, for the seeds given, with the same seed shift
as ``benchmarks/seeds.py``. It prints, per chapter, how many draws failed each
assertion and the verdicts the chapter published. A ``require`` that refuses
the parameters still stops the chapter, and is printed as an error.

    python benchmarks/assertions.py adamw,normalization 0,1,2 [out.json]
"""

from __future__ import annotations

import ast
import json
import os
import re
import sys
import tempfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))
import book  # noqa: E402
from seeds import SHIFT, parameters_cell, verdicts  # noqa: E402


class Record(ast.NodeTransformer):
    """``assert cond, msg`` becomes ``_CHK.append(("cond", bool(cond)))``."""

    def __init__(self, src: str):
        self.src = src

    def visit_Assert(self, node):
        text = ast.get_source_segment(self.src, node.test) or "?"
        call = ast.parse(f"_CHK.append(({text!r}, bool(_X)))").body[0]
        call.value.args[0].elts[1].args[0] = node.test
        return ast.copy_location(call, node)


def transform(src: str) -> str:
    try:
        tree = ast.parse(src)
    except SyntaxError:  # a cell magic: left as it is
        return src
    if not any(isinstance(n, ast.Assert) for n in ast.walk(tree)):
        return src
    tree = ast.fix_missing_locations(Record(src).visit(tree))
    return ast.unparse(tree)


def run(chapter: book.Page, seed: int) -> dict:
    import nbformat

    nb = nbformat.read(chapter.source, as_version=4)
    k = parameters_cell(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.source = transform(cell.source)
    nb.cells.insert(k + 1, nbformat.v4.new_code_cell(
        "_CHK = []\n" + SHIFT.format(seed=seed)))
    nb.cells.append(nbformat.v4.new_code_cell(
        "import json; print('CHK' + json.dumps(_CHK))"))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / chapter.source.name
        nbformat.write(nb, path)
        try:
            ex = book.execute_chapter(path, timeout=900)
        except Exception as err:  # a require refused the parameters
            text = re.sub(r"\x1b\[[0-9;]*m", "", str(err))
            return {"seed": seed, "error": text.strip().splitlines()[-1]}
    out = "".join(o.get("text", "") for o in ex.notebook.cells[-1].outputs)
    return {"seed": seed, "checks": json.loads(out.split("CHK", 1)[1]),
            "verdicts": verdicts(ex.notebook)}


def main() -> None:
    names, seeds = sys.argv[1].split(","), map(int, sys.argv[2].split(","))
    seeds = list(seeds)
    for name in book.THREAD_VARIABLES:  # one thread per kernel, 2 kernels
        os.environ[name] = "1"
    jobs = [(c, s) for c in book.chapters(ROOT) if c.name in names
            for s in seeds]
    with ThreadPoolExecutor(max_workers=len(os.sched_getaffinity(0))) as pool:
        results = list(pool.map(lambda j: (j[0].name, run(*j)), jobs))
    if len(sys.argv) > 3:
        Path(sys.argv[3]).write_text(json.dumps(results, indent=1))
    for name in names:
        rows = [r for n, r in results if n == name]
        failed, verdict = Counter(), {}
        for r in rows:
            if "error" in r:
                print(f"{name} seed {r['seed']}: {r['error']}")
                continue
            failed.update({t for t, ok in r["checks"] if not ok})
            for key, v in r["verdicts"].items():
                verdict.setdefault(key, Counter())[v] += 1
        print(f"== {name}: {len(rows)} draws")
        for text, n in failed.most_common():
            print(f"  failed on {n:2d}: {text[:100]}")
        for key, c in verdict.items():
            print(f"  {key}: {dict(c)}")


if __name__ == "__main__":
    main()
