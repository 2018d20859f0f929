r"""The claims ledger: every checked claim as one row of a MyST table.

The chapter "Claims ledger" runs :func:`adambook.claims.run_all` when the book builds
and renders the results with :func:`table`; nothing in the ledger is typed by hand.
Each row links to the section that proves the claim through a ``{numref}`` role on
the check's ``section`` label, so a wrong label fails a ``-n`` build.

The fields of a :class:`~adambook.claims.ClaimResult` are plain text. They are
escaped here, so that a ``|`` or a ``*`` in a claim cannot break the table or turn
into markup.

>>> from adambook.claims import ClaimResult
>>> r = ClaimResult("k", "a|b", "holds", "x_t * y_t", "sec-x", "1 $")
>>> print(table([r]).splitlines()[-1])
| 1 | a\|b | **holds** | x\_t \* y\_t | 1 \$ | {numref}`§{number} {name} <sec-x>` |
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from .claims import BOOK_CLAIMS, POST_CLAIMS, VERDICTS, ClaimResult

__all__ = [
    "COLUMNS", "escape", "row", "table", "split", "missing", "tally", "parse_table", "order_key",
]

#: The table's header, in order.
COLUMNS = ("#", "Claim", "Verdict", "What the book proved", "Measured", "Proved in")

# Markdown and MyST syntax that could appear in a claim's text: emphasis, code and
# role backticks, role braces, links, HTML, table pipes, dollar math, entities.
_SPECIAL = "\\`*_{}[]<>|$~&#"


def escape(text: str) -> str:
    r"""Backslash-escape markup characters and fold line breaks, for one table cell.

    >>> escape("v_t | m_t")
    'v\\_t \\| m\\_t'
    """
    text = " ".join(str(text).split())
    return "".join("\\" + ch if ch in _SPECIAL else ch for ch in text)


def row(number: int, result: ClaimResult) -> str:
    """One table row: the claim, its verdict in bold, the statement, number and link."""
    cells = [
        str(number),
        escape(result.claim),
        f"**{result.verdict}**",
        escape(result.proved),
        escape(result.measured),
        "{numref}`§{number} {name} <" + result.section + ">`",
    ]
    return "| " + " | ".join(cells) + " |"


def table(results: Sequence[ClaimResult], start: int = 1) -> str:
    """A MyST (GFM) pipe table with one row per result, numbered from ``start``."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "|".join(["---"] * len(COLUMNS)) + "|"]
    lines += [row(start + i, r) for i, r in enumerate(results)]
    return "\n".join(lines)


def split(results: Sequence[ClaimResult]) -> tuple[list[ClaimResult], list[ClaimResult]]:
    """The post's claims and the book's own, each in the ledger's order."""
    post = [r for r in results if r.key in POST_CLAIMS]
    return post, [r for r in results if r.key not in POST_CLAIMS]


def missing(results: Sequence[ClaimResult]) -> list[str]:
    """Keys of the post's claims that no result covers (the book is unfinished)."""
    done = {r.key for r in results}
    return [k for k in POST_CLAIMS if k not in done]


def tally(results: Sequence[ClaimResult]) -> dict[str, int]:
    """How many results carry each verdict, for every verdict (zeros included)."""
    counts = Counter(r.verdict for r in results)
    return {v: counts.get(v, 0) for v in VERDICTS}


def parse_table(markdown: str) -> list[list[str]]:
    r"""The body rows of a table written by :func:`table`, as lists of raw cells.

    Splits on ``|`` not preceded by a backslash; the tests use it to read the ledger
    back.

    >>> parse_table(table([ClaimResult("k", "a|b", "holds", "p", "s", "m")]))[0][:3]
    ['1', 'a\\|b', '**holds**']
    """
    import re

    rows = []
    for line in markdown.splitlines()[2:]:
        inner = line.strip()[1:-1]
        rows.append([c.strip() for c in re.split(r"(?<!\\)\|", inner)])
    return rows


def order_key(key: str) -> tuple[int, int | str]:
    """Sort key of the ledger's order: the post's claims, the book's, then the rest."""
    if key in POST_CLAIMS:
        return (0, POST_CLAIMS.index(key))
    if key in BOOK_CLAIMS:
        return (1, BOOK_CLAIMS.index(key))
    return (2, key)
