"""One figure style for the whole book, with SVG output."""

from __future__ import annotations

import matplotlib as mpl

#: Colours by optimizer, so that a reader can follow one across chapters.
COLORS = {"sgd": "#4C72B0", "adam": "#DD8452", "adamw": "#55A868",
          "adam_l2": "#C44E52", "theory": "#333333", "amsgrad": "#8172B3"}


def use_style() -> None:
    """Apply the book's matplotlib style and make notebooks emit SVG figures.

    The SVG ids are salted with a fixed string, so that executing a chapter
    twice writes byte-identical figures.
    """
    mpl.rcParams.update({
        "figure.figsize": (6.4, 3.6), "figure.dpi": 100, "axes.grid": True,
        "grid.alpha": 0.3, "axes.spines.top": False,
        "axes.spines.right": False, "axes.titlesize": "medium",
        "legend.frameon": False, "savefig.bbox": "tight",
        "svg.fonttype": "path",  # no font files needed by the reader
        "svg.hashsalt": "adambook", "lines.linewidth": 1.6})
    try:
        from matplotlib_inline.backend_inline import set_matplotlib_formats
    except ImportError:  # plain scripts: nothing to configure
        return
    set_matplotlib_formats("svg")
