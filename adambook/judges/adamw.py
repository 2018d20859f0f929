"""The judge of chapters/adamw: the post's closing advice, "use AdamW"."""

from ..verdicts import Verdict


def judge_use_adamw(ridge_distance, ridge_accuracy, rows_better, rows_worse,
                    best_gap, best_gap_se, z, scope):
    """The reason holds if Adam + L2 ends farther from the ridge solution
    than float64 resolves; AdamW is better where ``rows_better``, worse if
    ``rows_worse`` anywhere or its best cell is worse by > ``z`` s.e. Holds:
    reason and nowhere worse; with a qualification: better somewhere and
    worse nowhere; else does not hold."""
    reason = ridge_distance > ridge_accuracy
    better = bool(rows_better.any())
    worse = bool(rows_worse.any()) or best_gap > z * best_gap_se
    if reason and not worse:
        verdict = "holds"
    elif better and not worse:
        verdict = "holds with a qualification"
    else:
        verdict = "does not hold"
    return Verdict(
        key="use-adamw",
        claim="If you need weight decay, use AdamW: Adam + L2 regularises "
        "non-uniformly and so does not minimise the objective you meant.",
        verdict=verdict,
        proved="The reason given is false: Adam + L2 reaches the minimiser of "
        "the L2-regularised loss and AdamW does not, so for that objective "
        "use L2. As a training recipe AdamW was never worse on the chapter's "
        "task and better at the smaller learning rates, where Adam + L2's "
        "penalty could not help; where decay helped both, neither method's "
        "best λ moved with the learning rate in torch's parametrization, and "
        "AdamW's moved in proportion to it in the paper's.",
        scope=scope,
        measured=f"Adam + L2 ends ≤ {ridge_distance:.1e} from the ridge "
        f"solution (float64 accuracy {ridge_accuracy:.1e}); AdamW better at "
        f"{int(rows_better.sum())} of {len(rows_better)} learning rates, "
        f"worse at {int(rows_worse.sum())}; best errors differ by "
        f"{best_gap:+.3f} ± {best_gap_se:.3f}",
        section="sec-adamw-verdict",
    )
