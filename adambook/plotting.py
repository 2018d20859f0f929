"""One figure style for the whole book, with SVG output.

Conventions: **one colour per optimizer** (:data:`COLORS`) in every figure;
anything else (a coordinate, a batch size, a learning rate) is told apart by
line style, marker or a shade of that colour (:func:`shades`), never another
hue. Figures fit the text column (:func:`figsize`), so an SVG is shown at its
own size and its text at the 9 pt or more set here; legends go off the data
(:func:`legend_below`).

>>> shades("adam", 3)[0] != shades("adam", 3)[-1]
True
>>> figsize(2.0)
(7.0, 2.0)
"""

from __future__ import annotations

import matplotlib as mpl
from matplotlib.colors import to_rgb

#: One colour per optimizer, the same in every figure of the book. "theory"
#: is for closed forms and references, never for a measured optimizer.
COLORS = {
    "sgd": "#4C72B0", "sgd_momentum": "#64B5CD",  # blue, light blue
    "adam": "#DD8452", "adamw": "#55A868",  # orange, green
    "adam_l2": "#C44E52", "amsgrad": "#8172B3",  # red, purple
    "lion": "#937860", "radam": "#DA8BC3",  # brown, pink (also warmup)
    "sign": "#8C8C8C", "theory": "#333333"}  # grey (sign descent), near black

#: Line styles and markers for what is not an optimizer, in order of use.
LINESTYLES = ("-", "--", ":", "-.")
MARKERS = ("o", "s", "^", "D", "v")

#: The book's text column, in inches: 7 in of SVG is 672 CSS pixels, inside
#: the theme's column at 1280 px, so a figure is shown at its own size.
TEXT_WIDTH = 7.0


def figsize(height: float = 3.2, width: float = TEXT_WIDTH) -> tuple:
    """A figure size that fits the text column (width capped at TEXT_WIDTH)."""
    return (min(float(width), TEXT_WIDTH), float(height))


def shades(name: str, n: int) -> list:
    """``n`` shades of an optimizer's colour, light to dark, for a family of
    curves of one optimizer (learning rates, batch sizes, steps)."""
    r, g, b = to_rgb(COLORS[name])
    out = []
    for k in range(n):
        t = 0.55 - 0.85 * k / max(n - 1, 1)  # > 0 lighter, < 0 darker
        if t >= 0:
            out.append(tuple(c + (1 - c) * t for c in (r, g, b)))
        else:
            out.append(tuple(c * (1 + t) for c in (r, g, b)))
    return out


def legend_below(ax_or_fig, ncol: int = 2, **kwargs):
    """A legend under the axes (or the whole figure), off the data."""
    if hasattr(ax_or_fig, "plot"):  # one axes
        return ax_or_fig.legend(loc="upper center", ncol=ncol,
                                bbox_to_anchor=(0.5, -0.28), **kwargs)
    pairs = {}  # the first handle of each label, over all axes
    for ax in ax_or_fig.get_axes():
        for h, lab in zip(*ax.get_legend_handles_labels()):
            pairs.setdefault(lab, h)
    return ax_or_fig.legend(list(pairs.values()), list(pairs), ncol=ncol,
                            loc="upper center", bbox_to_anchor=(0.5, 0.0),
                            **kwargs)


def use_style() -> None:
    """Apply the book's matplotlib style and make notebooks emit SVG figures.

    The SVG ids are salted with a fixed string, so that executing a chapter
    twice writes byte-identical figures.
    """
    mpl.rcParams.update({
        "figure.figsize": figsize(), "figure.dpi": 100, "axes.grid": True,
        "grid.alpha": 0.3, "axes.spines.top": False,
        "axes.spines.right": False, "font.size": 10,
        "axes.titlesize": 10, "axes.labelsize": 10, "legend.fontsize": 9,
        "xtick.labelsize": 9, "ytick.labelsize": 9,
        "legend.frameon": False, "savefig.bbox": "tight",
        "svg.fonttype": "path",  # no font files needed by the reader
        "svg.hashsalt": "adambook", "lines.linewidth": 1.6})
    try:
        from matplotlib_inline.backend_inline import set_matplotlib_formats
    except ImportError:  # plain scripts: nothing to configure
        return
    set_matplotlib_formats("svg")
