r"""Verdicts: what a chapter concludes about a claim, on its page and in the ledger.

A chapter runs its experiment in view, hands the measurements to a small pure
*judge* (a function in the chapter's topic module that returns a :class:`Verdict`)
and calls :func:`publish`. Publishing does two things with the one object:

* it glues a verdict box, ``<key>.box``, which the chapter shows near its top with
  ``{glue:md}`` (the box is computed, never typed);
* it glues every field as ``<key>.<field>``, which the claims ledger pastes across
  pages (``{glue:text}`` and ``{glue}`` with ``chapter.ipynb::key``).

So the ledger shows the very numbers the chapter computed in the same build, and
the two cannot disagree: there is nothing in the ledger to disagree with.

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

__all__ = ["VERDICTS", "Verdict", "publish", "require"]

#: The only verdicts a judge may return.
VERDICTS = ("holds", "holds with a qualification", "does not hold")

# The admonition class of each verdict's box (green, orange, red in the theme).
_BOX_CLASS = {
    "holds": "verdict-holds",
    "holds with a qualification": "verdict-qualified",
    "does not hold": "verdict-fails",
}
# The fields the ledger pastes, in its column order.
LEDGER_FIELDS = ("claim", "verdict", "proved", "scope", "measured")


@dataclass(frozen=True)
class Verdict:
    """A judged claim.

    Attributes:
        key: the claim's identifier, e.g. ``"momentum-smooths-noise"``.
        claim: the claim in the book's words (the post's, or the book's own).
        verdict: one of :data:`VERDICTS`.
        proved: the precise statement the chapter proved, one sentence.
        scope: the problem and regime it was proved on (convex or not, run to
            convergence or on a fixed budget, sizes).
        measured: the key numbers, as shown on the chapter page.
        section: MyST label of the section that proves it.
    """

    key: str
    claim: str
    verdict: str
    proved: str
    scope: str
    measured: str
    section: str

    def __post_init__(self):
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"Verdict.{f.name} must be a non-empty string")
        if ":" in self.key or "." in self.key:
            raise ValueError(f"a claim key may not contain ':' or '.': {self.key!r}")

    def badge_html(self) -> str:
        """The verdict as a small coloured badge, for the ledger."""
        cls = _BOX_CLASS[self.verdict]
        return f'<span class="verdict {cls}">{html.escape(self.verdict)}</span>'

    def box_markdown(self) -> str:
        """The verdict box: a MyST admonition, coloured by verdict."""
        return (
            f":::{{admonition}} Verdict: {self.verdict}\n"
            f":class: {_BOX_CLASS[self.verdict]}\n"
            f"**Claim.** {self.claim}\n\n"
            f"**Proved.** {self.proved} ({{ref}}`how <{self.section}>`)\n\n"
            f"**Scope.** {self.scope}\n\n"
            f"**Measured.** {self.measured}\n"
            ":::\n"
        )


def publish(verdict: Verdict) -> None:
    """Glue the verdict box and every ledger field of ``verdict``.

    Keys: ``<key>.box`` (Markdown, for ``{glue:md}`` with ``:format: myst`` on the
    chapter page), ``<key>.badge`` (HTML, for the ledger's ``{glue}``) and
    ``<key>.<field>`` for each of :data:`LEDGER_FIELDS` (plain text, for
    ``{glue:text}``).
    """
    from IPython.display import HTML, Markdown
    from myst_nb import glue

    glue(f"{verdict.key}.box", Markdown(verdict.box_markdown()), display=False)
    glue(f"{verdict.key}.badge", HTML(verdict.badge_html()), display=False)
    for name in LEDGER_FIELDS:
        glue(f"{verdict.key}.{name}", getattr(verdict, name), display=False)


def require(condition: bool, message: str) -> None:
    """Reject a chapter parameter that would make a check meaningless.

    A chapter calls this right after its parameters cell, so that a reader who
    changes a value gets a clear error instead of a test that cannot fail (or
    cannot pass).

    >>> require(2 > 1, "fine")
    >>> require(10 < 5, "n_streams = 10 is too few for the z-bound")
    Traceback (most recent call last):
    ...
    ValueError: n_streams = 10 is too few for the z-bound
    """
    if not condition:
        raise ValueError(message)
