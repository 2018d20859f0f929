"""adambook: the package behind the book "Adam and AdamW, proved by running them".

The chapters import everything they share from here:

* :class:`SGD`, :class:`Adam`, :class:`AdamW`: ``torch.optim.Optimizer`` subclasses
  whose step reads like the equations (:mod:`adambook.functional` holds the math);
* :mod:`adambook.problems`: test problems with closed-form answers;
* :mod:`adambook.stats`: standard errors, z-bounds and fitted slopes for assertions;
* :mod:`adambook.claims`: the post's claims, each with a check that returns a verdict
  (the checks are in :mod:`adambook.checks`, one module per chapter);
* :func:`pick_device`, :func:`seed_everything`, :func:`torch_threads`, :func:`use_style`.
"""

from . import claims, functional, problems, stats
from .optim import SGD, Adam, AdamW
from .plotting import COLORS, use_style
from .utils import pick_device, seed_everything, torch_threads

__all__ = [
    "SGD",
    "Adam",
    "AdamW",
    "claims",
    "functional",
    "problems",
    "stats",
    "pick_device",
    "seed_everything",
    "torch_threads",
    "use_style",
    "COLORS",
]
__version__ = "0.1.0"
