"""The judge of chapters/adamw: the post's closing advice, "use AdamW"."""

from ..stats import equivalent
from ..verdicts import Verdict


def judge_use_adamw(ridge_distance, ridge_accuracy, rows_worse, best_gap,
                    best_gap_se, z, margin, scope):
    """The rule fixed before the run. Reason: Adam + L2 ends farther from
    the ridge solution than float64 resolves. Worse: AdamW worse at some
    lr (``rows_worse``) or its best cell worse by > ``z`` s.e. As good:
    best cells equivalent within ``margin`` (two one-sided tests at ``z``)
    or AdamW's better by > ``z`` s.e. Holds: reason, as good, not worse;
    with a qualification: as good and not worse without the reason;
    else does not hold."""
    reason = ridge_distance > ridge_accuracy
    worse = bool(rows_worse.any()) or best_gap > z * best_gap_se
    as_good = (bool(equivalent(best_gap, best_gap_se, margin, z))
               or best_gap < -z * best_gap_se)
    if as_good and not worse:
        verdict = "holds" if reason else "holds with a qualification"
    else:
        verdict = "does not hold"
    return Verdict(
        key="use-adamw",
        claim="If you need weight decay, use AdamW: Adam + L2 regularises "
        "non-uniformly and so does not minimise the objective you meant.",
        verdict=verdict,
        proved=("The reason given holds: Adam + L2 misses the minimiser of "
                "the L2-regularised loss." if reason else "The reason given "
                "is false: Adam + L2 reaches the minimiser of the "
                "L2-regularised loss and AdamW does not, so for that "
                "objective use L2.")
        + " As a training recipe, tuned over the grid, AdamW "
        + (f"was as good as Adam + L2 (best errors within ±{margin:g}) and "
           "worse at no learning rate." if as_good and not worse else
           "was not shown to be as good as Adam + L2."),
        scope=scope,
        measured=f"Adam + L2 ends ≤ {ridge_distance:.1e} from the ridge "
        f"solution (float64 accuracy {ridge_accuracy:.1e}); best errors "
        f"differ by {best_gap:+.3f} ± {best_gap_se:.3f} (margin ±{margin:g}, "
        f"z = {z:.2f}); AdamW worse at {int(rows_worse.sum())} of "
        f"{len(rows_worse)} learning rates",
        section="sec-adamw-verdict",
    )
