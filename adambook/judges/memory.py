"""The judges of the chapter "What Adam costs" (chapters/memory)."""

from ..memory import STATE_SLOTS
from ..verdicts import Verdict


def judge_memory_3x(counts, step, in_backward, scope: str) -> Verdict:
    """Adam's params + state are 3x SGD's; a training step's peak is not.

    ``counts``: (model, library, optimizer) to its ``MemoryCount``; ``step``,
    ``in_backward``: ``(ratio, (lo, hi))``, Adam's peak over SGD's and where
    the counts allow it, updating after and in the backward pass. "does not
    hold" unless the counts are exact and both ratios in their intervals;
    "holds" if ``step``'s holds 3, else qualified: the backward pass reaches
    3 (its interval holds it), moves toward it (lies above) or does not."""
    keys = sorted({(m, lib) for m, lib, _ in counts})
    exact = all(c.state == STATE_SLOTS[o] * c.params
                for (_, _, o), c in counts.items())
    ratios = [counts[(*k, "adam")].ratio("params+state")
              / counts[(*k, "sgd")].ratio("params+state") for k in keys]
    # the proved text quotes the exact counts (the largest over the runs)
    rest, train = ({o: max(counts[(*k, o)].ratio(parts) for k in keys)
                    for o in ("sgd", "sgd_momentum", "adam")}
                   for parts in ("params+state", "params+grads+state"))
    (r, (lo, hi)), (rb, (lob, hib)) = step, in_backward
    verdict = ("does not hold" if not (
        exact and set(ratios) == {3} and lo <= r <= hi and lob <= rb <= hib)
        else "holds" if lo <= 3 <= hi else "holds with a qualification")
    moved = ("reaches the post's 3" if lob <= 3 <= hib else f"moves toward "
             f"3, to {rb:.2f}" if lob > hi else f"does not move it ({rb:.2f})")
    return Verdict(
        key="adam-memory-3x", verdict=verdict, scope=scope,
        claim="Adam keeps two extra vectors the size of the parameters, so "
        "its memory is about three times SGD's.",
        proved=f"Parameters plus optimizer state: SGD {rest['sgd']}, SGD "
        f"with momentum {rest['sgd_momentum']}, Adam and AdamW "
        f"{rest['adam']} (times the parameter bytes), exactly, in adambook "
        "and torch.optim. The qualification: a training step also holds the "
        f"gradients, so its memory is {train['sgd']}, {train['sgd_momentum']}"
        f" and {train['adam']} parameter sizes; Adam needs "
        f"{train['adam'] / train['sgd']}× plain SGD and "
        f"{train['adam'] / train['sgd_momentum']} of SGD with momentum, "
        "before activations. "
        "Updating each tensor in the backward pass, which frees its gradient "
        f"at once (LOMO), {moved}.",
        # Two decimals: a measured peak moves by about 1 MiB of allocator
        # noise from run to run (ALLOCATOR_SLACK in the chapter), a few
        # thousandths of these ratios, so a third decimal is not a result.
        measured=f"params+state: Adam/SGD = {min(ratios)}; peak of a "
        f"training step: Adam/SGD = {r:.2f}, counts allow [{lo:.2f}, "
        f"{hi:.2f}]; in the backward pass {rb:.2f} [{lob:.2f}, {hib:.2f}]",
        section="sec-memory-count")


def judge_state_gb(state_gb, large: list, scope: str) -> Verdict:
    """``state_gb``: (model, precision) to GB of Adam's state. "holds" if all
    of ``large`` have 10 to 999 GB, "does not hold" if none, else qualified."""
    big = {k: gb for k, gb in state_gb.items() if k[0] in large}
    inside = [10 <= gb < 1000 for gb in big.values()]
    return Verdict(
        key="large-models-state-gb", scope=scope, section="sec-memory-scale",
        claim="For large models, Adam's state can amount to tens or hundreds "
        "of gigabytes.",
        verdict="holds" if all(inside) else "holds with a qualification"
        if any(inside) else "does not hold",
        proved="Adam's m and v (and, in mixed precision, the fp32 master "
        f"weights) of the {', '.join(large)}-parameter models take "
        f"{min(big.values()):,.1f} to {max(big.values()):,.0f} GB.",
        measured="; ".join(f"{m} {p}: {gb:,.1f} GB"
                           for (m, p), gb in state_gb.items()))
