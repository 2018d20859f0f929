"""The checks behind the book's verdicts, one module per chapter.

Every module registers its checks with :func:`adambook.claims.claim_check`; the
claims ledger finds them all by importing every module of this package.
"""
