"""The claims ledger and the chapters cannot disagree.

Each chapter asserts a verdict with ``adambook.claims.confirm(key, expected=...)``
on the full-size check; the ledger chapter runs every check in its fast form
(``claims.run_all(fast=True)``) and renders the results with ``adambook.ledger``.
This test reads every ``confirm`` call from the chapters, runs the ledger's
computation once, and requires each row of the rendered ledger to carry the
chapter's verdict: if a change to adambook flips a verdict, this fails, and so
does the chapter.

``MUTANTS`` then breaks, one at a time, a function that a chapter's claim rests on,
and requires the ledger's row to change and the comparison to catch it.
"""

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pytest

import adambook.functional
from adambook import claims, ledger, memory, minibatch, moments

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


def expected_verdict(key):
    stated = VERDICTS_IN_CHAPTERS[key]
    assert len({e for e, _ in stated}) == 1, f"chapters disagree about {key}: {stated}"
    return next(iter(stated))[0]


def disagreements(results):
    """Keys whose ledger verdict differs from the verdict their chapter confirms."""
    return [r.key for r in results
            if r.key in VERDICTS_IN_CHAPTERS and r.verdict != expected_verdict(r.key)]


@pytest.fixture(scope="module")
def ledger_results():
    """What the ledger chapter computes: every check, fast, in the ledger's order."""
    return claims.run_all(fast=True)


def test_chapters_confirm_some_claims():
    assert VERDICTS_IN_CHAPTERS


@pytest.mark.parametrize("key", sorted(VERDICTS_IN_CHAPTERS))
def test_fast_check_agrees_with_chapter(key, ledger_results):
    expected = expected_verdict(key)
    by_key = {r.key: r for r in ledger_results}
    assert key in by_key, f"the chapters confirm {key!r} but no check is registered"
    result = by_key[key]
    assert result.verdict == expected, (
        f"{key}: the chapter says {expected!r}, the ledger's check says {result.verdict!r} "
        f"({result.measured})"
    )


def test_ledger_table_carries_the_chapters_verdicts(ledger_results):
    """Read the rendered ledger back: one row per check, in order, with the chapter's verdict."""
    post, book = ledger.split(ledger_results)
    rows = ledger.parse_table(ledger.table(post))
    rows += ledger.parse_table(ledger.table(book, start=len(post) + 1))
    assert len(rows) == len(ledger_results) == len(claims.registered())
    for i, (cells, result) in enumerate(zip(rows, ledger_results), start=1):
        assert len(cells) == len(ledger.COLUMNS), f"row {i} has {len(cells)} cells: {cells}"
        assert cells[0] == str(i)
        assert cells[2] == f"**{expected_verdict(result.key)}**", result.key
        assert cells[5] == "{numref}`§{number} {name} <" + result.section + ">`"
    assert disagreements(ledger_results) == []


def test_ledger_order_is_post_then_book(ledger_results):
    keys = [r.key for r in ledger_results]
    registered = claims.registered()
    listed = [k for k in claims.POST_CLAIMS + claims.BOOK_CLAIMS if k in registered]
    assert keys == listed + sorted(set(registered) - set(listed))
    assert not set(claims.POST_CLAIMS) & set(claims.BOOK_CLAIMS)


def test_every_registered_check_is_confirmed_by_a_chapter():
    missing = set(claims.registered()) - set(VERDICTS_IN_CHAPTERS)
    assert not missing, f"checks no chapter confirms: {sorted(missing)}"


def test_result_rejects_unknown_verdict():
    with pytest.raises(ValueError, match="verdict must be one of"):
        claims.ClaimResult("k", "c", "mostly true", "p", "s", "m")


def test_ledger_escapes_markup_and_lists_missing_claims():
    nasty = claims.ClaimResult(
        "k", "a | b with *stars* and {role}`x`", "does not hold",
        "$x$ and v_t\nover two lines", "sec-x", "<b>1</b> & 2",
    )
    text = ledger.table([nasty])
    (cells,) = ledger.parse_table(text)
    assert len(cells) == len(ledger.COLUMNS)
    assert cells[1] == r"a \| b with \*stars\* and \{role\}\`x\`"
    assert cells[3] == r"\$x\$ and v\_t over two lines"
    assert cells[4] == r"\<b\>1\</b\> \& 2"
    assert ledger.missing([nasty]) == list(claims.POST_CLAIMS)
    assert ledger.tally([nasty]) == {"holds": 0, "holds with a qualification": 0,
                                     "does not hold": 1}


# ------------------------------------------------------------------ mutants


def _wrap(name, **change):
    """A broken ``adambook.functional.<name>``: the keyword arguments changed as given.

    Each change is ``f(value, kwargs) -> new value``.
    """
    original = getattr(adambook.functional, name)

    def broken(*args, **kwargs):
        for arg, f in change.items():
            kwargs[arg] = f(kwargs.get(arg), kwargs)
        if kwargs.get("amsgrad") is False:
            kwargs.pop("max_exp_avg_sqs", None)
        return original(*args, **kwargs)

    return broken


def _double_state(count_memory):
    def broken(optimizer):
        c = count_memory(optimizer)
        return dataclasses.replace(c, state=2 * c.state)

    return broken


def _l2_as_decoupled(mode, kwargs):
    return "decoupled" if mode in ("l2", "l2_after_moments") else mode


#: For each claim, a break in the code that its chapter's proof rests on:
#: (module, attribute, factory of the broken replacement from the original).
MUTANTS = {
    # the minibatch variance factor replaced by the large-N rule 1/|B|
    "sgd-noise": (minibatch, "finite_population_factor",
                  lambda f: lambda n, b: 1.0 / np.asarray(b, dtype=float)),
    # SGD takes half the step it is asked for, so the 2/L edge moves
    "sgd-one-lr": (adambook.functional, "sgd",
                   lambda f: _wrap("sgd", lr=lambda lr, k: 0.5 * lr)),
    # the moving average m_t with the wrong weight: beta1^2 instead of beta1
    "momentum-smooths-noise": (adambook.functional, "adam",
                               lambda f: _wrap("adam", beta1=lambda b, k: b * b)),
    # epsilon leaks into every step, so the eps = 0 trajectory is no longer invariant
    "per-coordinate-steps": (adambook.functional, "adam",
                             lambda f: _wrap("adam", eps=lambda e, k: e + 1e-6)),
    # the optimizer state counted twice
    "adam-memory-3x": (memory, "count_memory", _double_state),
    # the zero-started average taken to carry its full weight from step 1
    "ema-bias": (moments, "ema_mass", lambda f: lambda t, beta: np.ones_like(f(t, beta))),
    # Adam forgets its bias correction
    "bias-correction": (adambook.functional, "_bias_corrections",
                        lambda f: lambda b1, b2, t, enabled: (1.0, 1.0)),
    # SGD's decoupled decay twice as strong as asked
    "l2-equals-wd-for-sgd": (adambook.functional, "sgd", lambda f: _wrap(
        "sgd", weight_decay=lambda w, k: 2 * w if k.get("decoupled_weight_decay") else w)),
    # Adam + L2 (both forms) applies decoupled decay
    "l2-not-wd-for-adam": (adambook.functional, "adam",
                           lambda f: _wrap("adam", weight_decay_mode=_l2_as_decoupled)),
    "nonuniform-effective-decay": (adambook.functional, "adam",
                                   lambda f: _wrap("adam", weight_decay_mode=_l2_as_decoupled)),
    "ridge-stationary-point": (adambook.functional, "adam",
                               lambda f: _wrap("adam", weight_decay_mode=_l2_as_decoupled)),
    "use-adamw": (adambook.functional, "adam",
                  lambda f: _wrap("adam", weight_decay_mode=_l2_as_decoupled)),
    # AdamW applies its decay as L2
    "adamw-fixes-it": (adambook.functional, "adam", lambda f: _wrap(
        "adam", weight_decay_mode=lambda m, k: "l2" if m == "decoupled" else m)),
    # AMSGrad forgets its running maximum and becomes Adam
    "adam-nonconvergence": (adambook.functional, "adam",
                            lambda f: _wrap("adam", amsgrad=lambda a, k: False)),
    # the second moment decays with beta2^2 instead of beta2
    "large-beta2-converges": (adambook.functional, "adam",
                              lambda f: _wrap("adam", beta2=lambda b, k: b * b)),
}


def test_every_claim_has_a_mutant():
    assert set(MUTANTS) == set(claims.registered())


def test_every_post_claim_has_a_check():
    missing = [k for k in claims.POST_CLAIMS if k not in claims.registered()]
    assert not missing, f"claims of the post with no check: {missing}"


@pytest.mark.parametrize("key", sorted(MUTANTS))
@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # broken code may take log(0)
def test_breaking_a_chapter_flips_its_ledger_row(key, monkeypatch):
    module, attribute, factory = MUTANTS[key]
    monkeypatch.setattr(module, attribute, factory(getattr(module, attribute)))
    claims.clear_caches()  # no answer from a cache the unbroken code filled
    try:
        result = claims.get_check(key)(fast=True)
    finally:
        monkeypatch.undo()
        claims.clear_caches()
    (cells,) = ledger.parse_table(ledger.table([result]))
    assert cells[2] == f"**{result.verdict}**"
    assert result.verdict != expected_verdict(key), f"the mutant of {key} went unnoticed"
    assert disagreements([result]) == [key]  # the tie test above would fail
