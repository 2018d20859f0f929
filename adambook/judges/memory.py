"""The judge of the chapter "What Adam costs" (chapters/memory)."""

from __future__ import annotations

from ..memory import STATE_SLOTS
from ..verdicts import Verdict


def judge_memory_3x(counts, step_ratio, interval, scope: str) -> Verdict:
    """Adam's params + state are 3x SGD's; a training step's peak is not.

    ``counts``: ``(model, library, optimizer)`` to its
    :class:`~adambook.memory.MemoryCount` after one step; ``step_ratio``:
    Adam's peak over SGD's, ``interval``: where the counts allow it. Exact
    arithmetic and the ratio in its interval, else "does not hold"; then
    "holds" if the interval holds 3, "holds with a qualification" if not.
    """
    keys = sorted({(m, lib) for m, lib, _ in counts})
    exact = all(c.state == STATE_SLOTS[o] * c.params
                for (_, _, o), c in counts.items())
    ratios = [counts[(*k, "adam")].ratio("params+state")
              / counts[(*k, "sgd")].ratio("params+state") for k in keys]
    lo, hi = interval
    verdict = ("does not hold" if not (exact and set(ratios) == {3}
                                       and lo <= step_ratio <= hi)
               else "holds" if lo <= 3 <= hi
               else "holds with a qualification")
    return Verdict(
        key="adam-memory-3x",
        claim="Adam keeps two extra vectors the size of the parameters, so "
        "its memory is about three times SGD's.",
        verdict=verdict,
        proved="Parameters plus optimizer state: SGD 1, SGD with momentum 2, "
        "Adam and AdamW 3 (times the parameter bytes), exactly, in adambook "
        "and torch.optim. The qualification: a training step also holds the "
        "gradients, so its memory is 2, 3 and 4 parameter sizes; Adam needs "
        "2x plain SGD and 4/3 of SGD with momentum, before activations, "
        "which shrink the ratio further.",
        scope=scope,
        measured=f"params+state: Adam/SGD = {min(ratios)}; peak of a "
        f"training step: Adam/SGD = {step_ratio:.3f}, counts allow "
        f"[{lo:.3f}, {hi:.3f}]",
        section="sec-memory-count")
