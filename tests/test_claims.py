"""The claims ledger and the chapters cannot disagree.

Each chapter asserts a verdict with ``adambook.claims.confirm(key, expected=...)``
on the full-size check; the ledger shows the verdict of the same check in its fast
form. This test reads every ``confirm`` call from the chapters and runs the fast
form: if a change to adambook flips a verdict, this fails, and so does the chapter.
"""

import json
import re
from pathlib import Path

import pytest

from adambook import claims

ROOT = Path(__file__).resolve().parents[1]
CONFIRM = re.compile(r"""confirm\(\s*["']([\w-]+)["']\s*,\s*expected\s*=\s*["']([\w ]+)["']""")


def chapter_verdicts():
    found = {}
    for nb in sorted((ROOT / "chapters").glob("*.ipynb")):
        cells = json.loads(nb.read_text())["cells"]
        code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
        for key, expected in CONFIRM.findall(code):
            found.setdefault(key, set()).add((expected, nb.stem))
    return found


VERDICTS_IN_CHAPTERS = chapter_verdicts()


def test_chapters_confirm_some_claims():
    assert VERDICTS_IN_CHAPTERS


@pytest.mark.parametrize("key", sorted(VERDICTS_IN_CHAPTERS))
def test_fast_check_agrees_with_chapter(key):
    stated = VERDICTS_IN_CHAPTERS[key]
    assert len({e for e, _ in stated}) == 1, f"chapters disagree about {key}: {stated}"
    expected = next(iter(stated))[0]
    result = claims.get_check(key)(fast=True)
    assert result.key == key
    assert result.verdict == expected, (
        f"{key}: the chapter says {expected!r}, the ledger's check says {result.verdict!r} "
        f"({result.measured})"
    )


def test_every_registered_check_is_confirmed_by_a_chapter():
    missing = set(claims.registered()) - set(VERDICTS_IN_CHAPTERS)
    assert not missing, f"checks no chapter confirms: {sorted(missing)}"


def test_result_rejects_unknown_verdict():
    with pytest.raises(ValueError, match="verdict must be one of"):
        claims.ClaimResult("k", "c", "mostly true", "p", "s", "m")
