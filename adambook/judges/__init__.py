"""Judges: small pure functions that turn a chapter's measurements into a
verdict.

One module per chapter. A judge takes numbers the chapter measured (and the
bounds it derived) and returns an :class:`adambook.verdicts.Verdict`; it
runs nothing.
"""
