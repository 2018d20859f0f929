"""Claims of the post, each with a function that checks it and returns a verdict.

A chapter proves a claim by calling its check and asserting the verdict it argues
for; the claims ledger calls the same checks, in a fast form, when the book builds.
So the ledger's verdicts are computed, never typed, and a chapter and the ledger
cannot disagree without a test failing (``tests/test_claims.py``).

Checks live in the modules of :mod:`adambook.checks`, one per chapter, and register
themselves with :func:`claim_check`::

    @claim_check("momentum-smooths-noise")
    def momentum_smooths_noise(fast: bool = False) -> ClaimResult:
        ...

In a chapter::

    result = adambook.claims.confirm("momentum-smooths-noise", expected="holds")
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = [
    "VERDICTS",
    "POST_CLAIMS",
    "BOOK_CLAIMS",
    "ClaimResult",
    "claim_check",
    "get_check",
    "confirm",
    "run_all",
    "registered",
    "clear_caches",
]

#: The only verdicts a check may return.
VERDICTS = ("holds", "holds with a qualification", "does not hold")

#: The post's claims, in the post's order; every key needs a registered check.
POST_CLAIMS = (
    "sgd-noise",  # minibatch gradients are noisy, so SGD's iterates jitter
    "sgd-one-lr",  # one learning rate cannot serve ill-conditioned coordinates
    "momentum-smooths-noise",  # the moving average m_t damps gradient noise
    "per-coordinate-steps",  # dividing by sqrt(v_t) gives per-coordinate step sizes
    "adam-memory-3x",  # Adam's state is 2x the parameters, total ~3x SGD's
    "ema-bias",  # E[m_t] = (1 - beta1^t) mu: the zero start biases the averages
    "bias-correction",  # dividing by 1 - beta^t removes that bias
    "l2-equals-wd-for-sgd",  # for plain SGD, L2 and weight decay are the same update
    "l2-not-wd-for-adam",  # for Adam they are not
    "nonuniform-effective-decay",  # Adam+L2 decays coordinates with large v less
    "ridge-stationary-point",  # Adam+L2 settles away from the ridge solution
    "adamw-fixes-it",  # AdamW's decoupled decay fixes that
    "use-adamw",  # the conclusion: if you need weight decay, use AdamW
)

#: Claims the book adds beyond the post, in the order of the book's chapters; the
#: ledger lists them after the post's. A book-only key missing here comes last.
BOOK_CLAIMS = (
    "adam-nonconvergence",  # failures: Reddi et al.'s problem defeats Adam, not AMSGrad
    "large-beta2-converges",  # failures: with the problem fixed first, large beta2 works
)


@dataclass(frozen=True)
class ClaimResult:
    """What a check found.

    Attributes:
        key: the claim's identifier, e.g. ``"momentum-smooths-noise"``.
        claim: the post's claim in the book's own words.
        verdict: one of :data:`VERDICTS`.
        proved: the precise statement the book proved.
        section: MyST label of the chapter section that proves it.
        measured: the key measured number, formatted for the ledger.
        details: the raw measurements, for a chapter's own assertions and figures.
    """

    key: str
    claim: str
    verdict: str
    proved: str
    section: str
    measured: str
    details: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self):
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")


_REGISTRY: dict[str, Callable[..., ClaimResult]] = {}


def claim_check(key: str):
    """Register ``func(fast: bool = False) -> ClaimResult`` as the check of ``key``."""

    def register(func):
        if key in _REGISTRY and _REGISTRY[key] is not func:
            raise ValueError(f"claim {key!r} already has a check")
        _REGISTRY[key] = func
        func.claim_key = key
        return func

    return register


def _load_checks() -> None:
    from . import checks

    for mod in pkgutil.iter_modules(checks.__path__, checks.__name__ + "."):
        importlib.import_module(mod.name)


def clear_caches() -> None:
    """Forget every cached experiment of the checks, so that the next call measures again.

    Checks may cache expensive runs, with ``functools.cache``/``lru_cache`` on a
    module-level function or in a module-level dict named ``_CACHE``; tests that break
    the code on purpose call this so that a check cannot answer from a cache filled
    by the unbroken code.
    """
    _load_checks()
    from . import checks

    for mod in pkgutil.iter_modules(checks.__path__, checks.__name__ + "."):
        module = importlib.import_module(mod.name)
        for name, obj in vars(module).items():
            if callable(getattr(obj, "cache_clear", None)):
                obj.cache_clear()
            elif name == "_CACHE" and isinstance(obj, dict):
                obj.clear()


def registered() -> dict[str, Callable[..., ClaimResult]]:
    """Every registered check, by key."""
    _load_checks()
    return dict(_REGISTRY)


def get_check(key: str) -> Callable[..., ClaimResult]:
    checks = registered()
    if key not in checks:
        raise KeyError(f"no check is registered for claim {key!r}")
    return checks[key]


def confirm(key: str, expected: str, fast: bool = False) -> ClaimResult:
    """Run the check of ``key`` and assert that its verdict is ``expected``.

    Chapters call this; ``tests/test_claims.py`` reads the ``expected`` verdicts from
    the chapters and checks them against the checks' fast forms.
    """
    if expected not in VERDICTS:
        raise ValueError(f"expected must be one of {VERDICTS}, got {expected!r}")
    result = get_check(key)(fast=fast)
    if result.key != key:
        raise AssertionError(f"the check of {key!r} reported key {result.key!r}")
    if result.verdict != expected:
        raise AssertionError(
            f"claim {key!r}: the measurement says {result.verdict!r}, the chapter says "
            f"{expected!r}. Measured: {result.measured}"
        )
    return result


def run_all(fast: bool = True) -> list[ClaimResult]:
    """Run every registered check: the post's claims in order, then the book's own."""
    checks = registered()
    listed = list(POST_CLAIMS) + list(BOOK_CLAIMS)
    order = listed + sorted(k for k in checks if k not in listed)
    return [checks[k](fast=fast) for k in order if k in checks]
