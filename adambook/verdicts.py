r"""What a chapter concludes about a claim, on its page and in the ledger.

A chapter runs its experiment in view, hands the measurements to a small
pure *judge* (in :mod:`adambook.judges`) that returns a :class:`Verdict`,
and calls :func:`publish`, which glues the verdict box the chapter shows
and every field the claims ledger pastes: the ledger shows the very numbers
the chapter computed in the same build.

>>> v = Verdict("k", "a claim", "holds", "what was shown", "where", "x = 1.0",
...             "sec-k")
>>> v.badge_html()
'<span class="verdict verdict-holds">holds</span>'
>>> Verdict("k", "c", "maybe", "p", "s", "m", "sec")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
ValueError: verdict must be one of (...), got 'maybe'
"""

from __future__ import annotations

import html
from dataclasses import dataclass, fields

#: The only verdicts a judge may return.
VERDICTS = ("holds", "holds with a qualification", "does not hold")

# The admonition class of each verdict's box (green, orange, red in the theme).
_BOX_CLASS = {"holds": "verdict-holds",
              "holds with a qualification": "verdict-qualified",
              "does not hold": "verdict-fails"}
# The fields the ledger pastes, in its column order.
LEDGER_FIELDS = ("claim", "verdict", "proved", "scope", "measured")


@dataclass(frozen=True)
class Verdict:
    """A judged claim: ``key`` (e.g. ``"momentum-smooths-noise"``), the
    ``claim`` in the book's words, a ``verdict`` of :data:`VERDICTS`, what
    was ``proved`` (one sentence), its ``scope`` (problem and regime),
    the key numbers ``measured`` and the MyST label of its ``section``."""

    key: str
    claim: str
    verdict: str
    proved: str
    scope: str
    measured: str
    section: str

    def __post_init__(self):
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, "
                             f"got {self.verdict!r}")
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, str) or not value.strip():
                raise ValueError(
                    f"Verdict.{f.name} must be a non-empty string")
        if ":" in self.key or "." in self.key:
            raise ValueError("a claim key may not contain ':' or '.': "
                             f"{self.key!r}")

    def badge_html(self) -> str:
        """The verdict as a small coloured badge, for the ledger."""
        cls = _BOX_CLASS[self.verdict]
        return (f'<span class="verdict {cls}">'
                f'{html.escape(self.verdict)}</span>')

    def box_markdown(self, fold: bool = True) -> str:
        """The verdict box: a MyST admonition coloured by verdict, titled by
        the verdict and the claim, ``fold``-ed to its title by default (a
        chapter's verdicts and key figure then fit its first screen)."""
        word = self.verdict[0].upper() + self.verdict[1:]
        cls = _BOX_CLASS[self.verdict] + (" dropdown" if fold else "")
        return (f"::::{{admonition}} {word}: {self.claim}\n:class: {cls}\n"
                f"{self.proved} ({{ref}}`how <{self.section}>`)\n\n"
                ":::{div} verdict-details\n"
                f"**Scope.** {self.scope.rstrip('.')}. "
                f"**Measured.** {self.measured}\n"
                ":::\n::::\n")


def publish(verdict: Verdict, fold: bool = True) -> None:
    """Glue ``<key>.box`` (Markdown, for ``{glue:md}``; ``fold``: see
    :meth:`Verdict.box_markdown`), ``<key>.badge`` (HTML) and
    ``<key>.<field>`` for each of :data:`LEDGER_FIELDS`."""
    from IPython.display import HTML, Markdown
    from myst_nb import glue

    glue(f"{verdict.key}.box", Markdown(verdict.box_markdown(fold)),
         display=False)
    glue(f"{verdict.key}.badge", HTML(verdict.badge_html()), display=False)
    for name in LEDGER_FIELDS:
        glue(f"{verdict.key}.{name}", getattr(verdict, name), display=False)


def require(condition: bool, message: str) -> None:
    """Reject a chapter parameter that would make a check meaningless.

    Called right after a chapter's parameters cell: a clear error instead
    of a test that cannot fail (or cannot pass).

    >>> require(2 > 1, "fine")
    >>> require(10 < 5, "n_streams = 10 is too few for the z-bound")
    Traceback (most recent call last):
    ...
    ValueError: n_streams = 10 is too few for the z-bound
    """
    if not condition:
        raise ValueError(message)
