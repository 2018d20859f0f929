"""adambook: the package behind the book "Adam and AdamW, proved by running them".

A toolbox that the chapters import; the chapters run the experiments themselves.

* :class:`SGD`, :class:`Adam`, :class:`AdamW`: ``torch.optim.Optimizer`` subclasses
  whose step reads like the equations (:mod:`adambook.functional` holds the math);
* problems with closed forms: :mod:`~adambook.problems`, :mod:`~adambook.minibatch`,
  :mod:`~adambook.moments`, :mod:`~adambook.decay`, :mod:`~adambook.regularization`,
  :mod:`~adambook.online`, :mod:`~adambook.teacher`;
* statistics and measurement: :mod:`~adambook.stats`, :mod:`~adambook.memory`,
  :mod:`~adambook.measure`;
* :mod:`adambook.judges`: small pure functions that turn a chapter's measurements
  into a :class:`~adambook.verdicts.Verdict`, and :func:`adambook.verdicts.publish`,
  which shows it on the chapter's page and hands it to the claims ledger;
* :func:`pick_device`, :func:`seed_everything`, :func:`torch_threads`,
  :func:`use_style` and :data:`COLORS`.
"""

from . import functional, problems, stats, verdicts
from .optim import SGD, Adam, AdamW
from .plotting import COLORS, use_style
from .utils import pick_device, seed_everything, torch_threads

__all__ = [
    "SGD",
    "Adam",
    "AdamW",
    "functional",
    "problems",
    "stats",
    "verdicts",
    "pick_device",
    "seed_everything",
    "torch_threads",
    "use_style",
    "COLORS",
]
__version__ = "0.2.0"
