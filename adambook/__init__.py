"""The package behind the book "Adam and AdamW, proved by running them".

A toolbox that the chapters import; the chapters run the experiments
themselves. :class:`SGD`, :class:`Adam`, :class:`AdamW` step by
:mod:`adambook.functional`; one module per topic holds the closed forms and
measurements; :mod:`adambook.judges` and :mod:`adambook.verdicts` turn
a chapter's numbers into its published verdicts.
"""

from . import functional, plotting, problems, stats, verdicts
from .optim import SGD, Adam, AdamW
from .plotting import COLORS, use_style
from .utils import pick_device, seed_everything, torch_threads

__all__ = ["SGD", "Adam", "AdamW", "functional", "plotting", "problems",
           "stats",
           "verdicts", "pick_device", "seed_everything", "torch_threads",
           "use_style", "COLORS"]
__version__ = "0.2.0"
