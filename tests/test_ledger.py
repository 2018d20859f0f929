"""The claims ledger shows each chapter's own verdict and numbers, by construction.

``chapters/ledger.md`` computes nothing: every cell of a row pastes a value that the
chapter proving the claim glued with ``adambook.verdicts.publish``. These tests keep
it that way:

* each row pastes every field from one chapter and one claim key, and links to a
  section of that same chapter (a row cannot mix two chapters' numbers);
* every claim a chapter publishes has exactly one row, and every row's key is
  published by its chapter in an execution of this session;
* (in ``test_browser.py``) every row's verdict and numbers, as the built book shows
  them, appear on the chapter page the row links to.
"""

import json
import re
from pathlib import Path

import pytest

import book
from adambook.verdicts import LEDGER_FIELDS

ROOT = Path(__file__).resolve().parents[1]
LEDGER = ROOT / "chapters" / "ledger.md"
#: One pasted field: {glue:text}`chapter.ipynb::key.field:s` or {glue}`...badge`.
GLUE = re.compile(r"\{glue(?::text)?\}`([\w.-]+)\.ipynb::([\w-]+)\.(\w+)(?::s)?`")
NUMREF = re.compile(r"\{numref\}`[^`<]*<([\w-]+)>`")
LABEL = re.compile(r"^\(([\w-]+)\)=\s*$", re.M)


def ledger_rows() -> list[str]:
    """The body rows of the ledger's tables (lines starting with '| <number> |')."""
    return [line for line in LEDGER.read_text().splitlines()
            if re.match(r"^\|\s*\d+\s*\|", line)]


def labels_of(chapter: str) -> set[str]:
    nb = json.loads((ROOT / "chapters" / f"{chapter}.ipynb").read_text())
    text = "\n".join("".join(c["source"]) for c in nb["cells"]
                     if c["cell_type"] == "markdown")
    return set(LABEL.findall(text))


def row_source(row: str) -> tuple[str, str]:
    """The one (chapter, key) a row pastes from; fails if it pastes from two."""
    pasted = GLUE.findall(row)
    sources = {(chapter, key) for chapter, key, _ in pasted}
    assert len(sources) == 1, f"a row pastes from {sorted(sources)}: {row}"
    fields = sorted(f for _, _, f in pasted)
    assert fields == sorted([*LEDGER_FIELDS[:1], "badge", *LEDGER_FIELDS[2:]]), (
        f"a row must paste claim, badge, proved, scope and measured, got {fields}")
    return sources.pop()


def test_every_row_pastes_from_one_chapter_and_links_into_it():
    rows = ledger_rows()
    assert len(rows) >= 15, "the ledger lost rows"
    numbers = [int(row.split("|")[1]) for row in rows]
    assert numbers == list(range(1, len(rows) + 1)), "rows are numbered 1, 2, ..."
    keys = []
    for row in rows:
        chapter, key = row_source(row)
        keys.append(key)
        assert (ROOT / "chapters" / f"{chapter}.ipynb").is_file(), chapter
        links = NUMREF.findall(row)
        assert len(links) == 1, f"a row links to exactly one section: {row}"
        assert links[0] in labels_of(chapter), (
            f"{key}: links to {links[0]!r}, which is not a section of {chapter}")
    assert len(keys) == len(set(keys)), "a claim has two rows"


def test_a_row_mixing_two_chapters_is_caught():
    row = ("| 1 | {glue:text}`sgd.ipynb::sgd-noise.claim:s` | "
           "{glue}`adam.ipynb::sgd-noise.badge` |")
    with pytest.raises(AssertionError, match="pastes from"):
        row_source(row)


@pytest.mark.book
def test_every_published_claim_has_its_row(chapter_runs):
    """What the chapters glue (in run B of this session) and what the ledger pastes."""
    published = {}
    for chapter in book.chapters(ROOT):
        nb = chapter_runs.second(chapter).notebook
        for cell in book.code_cells(nb):
            for out in cell.get("outputs", []):
                name = out.get("metadata", {}).get("scrapbook", {}).get("name", "")
                if name.endswith(".badge"):
                    key = name.removesuffix(".badge")
                    assert key not in published, f"{key} published twice"
                    published[key] = chapter.name
    rows = dict(reversed(row_source(r)) for r in ledger_rows())
    assert published == rows, (
        f"published but not in the ledger: {sorted(set(published) - set(rows))}; "
        f"in the ledger but not published: {sorted(set(rows) - set(published))}; "
        f"or in another chapter: "
        f"{sorted(k for k in published if k in rows and rows[k] != published[k])}")


INTRO = ROOT / "chapters" / "intro.md"
_TALLY = re.compile(
    r"Of the post's (\d+) claims that the book tests, (\d+) hold, (\d+) hold with a\s+"
    r"qualification, and (\d+) do not hold")
_OWN = re.compile(r"The book adds (\d+) claims of its own \((\d+) hold, (\d+) hold "
                  r"with a qualification(?:, (\d+) do(?:es)? not hold)?\)")


def tally(verdicts: list[str]) -> tuple[int, int, int, int]:
    return (len(verdicts), verdicts.count("holds"),
            verdicts.count("holds with a qualification"),
            verdicts.count("does not hold"))


@pytest.mark.book
def test_the_introductions_tally_is_the_chapters_verdicts(chapter_runs):
    """The counts and the failing claims the introduction names, against this
    session's published verdicts (run B) and the ledger's two tables."""
    verdict = {}
    for chapter in book.chapters(ROOT):
        for cell in book.code_cells(chapter_runs.second(chapter).notebook):
            for out in cell.get("outputs", []):
                name = out.get("metadata", {}).get("scrapbook", {}).get("name", "")
                if name.endswith(".verdict"):
                    text = next((v for m, v in out["data"].items()
                                 if m.endswith("text/plain")), "")
                    verdict[name.removesuffix(".verdict")] = str(text).strip("'\"")
    text = LEDGER.read_text()
    post_part = text[:text.index("(sec-ledger-book)=")]
    post = [row_source(r)[1] for r in ledger_rows() if r in post_part]
    own = [row_source(r)[1] for r in ledger_rows() if r not in post_part]
    intro = INTRO.read_text()
    stated = _TALLY.search(intro)
    assert stated, "the introduction's tally sentence is missing"
    counts = tally([verdict[k] for k in post])
    assert tuple(map(int, stated.groups())) == counts, (
        f"the introduction's tally {stated.groups()} is not this build's "
        f"(claims, holds, qualified, does not hold) = {counts}")
    stated_own = _OWN.search(intro)
    assert stated_own, "the introduction's sentence on the book's own claims is missing"
    counts = tally([verdict[k] for k in own])
    assert tuple(int(g or 0) for g in stated_own.groups()) == counts, (
        f"the introduction's count of the book's own claims is not this "
        f"build's {counts}")
    named = set(re.findall(r"::([\w-]+)\.badge", intro))
    failing = {k for k in post if verdict[k] == "does not hold"}
    assert named == failing, (
        f"the introduction names {sorted(named)}; the post's claims that do not "
        f"hold are {sorted(failing)}")
