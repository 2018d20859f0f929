"""Sphinx extension for the book: serve MathJax from an installed package.

Sphinx loads MathJax from a CDN by default, which leaves a reader without a network
looking at raw TeX. The PyPI package ``django-static-mathjax`` ships MathJax 3's files
(nothing in it needs Django); this extension copies its ``es5`` folder into the built
book at ``_static/mathjax/`` and points ``mathjax_path`` there. Third-party JavaScript
is therefore never committed to the repository, only copied at build time.

Enabled in ``_config.yml`` under ``sphinx.local_extensions``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

MATHJAX_PATH = "mathjax/tex-chtml.js"  # relative to _static/


def mathjax_source() -> Path:
    """The folder of MathJax 3's browser build inside the installed package."""
    import mathjax  # provided by django-static-mathjax

    src = Path(mathjax.__file__).parent / "static" / "mathjax" / "es5"
    if not (src / "tex-chtml.js").is_file():
        raise RuntimeError(f"MathJax 3 not found at {src}; is django-static-mathjax installed?")
    return src


def _copy_mathjax(app) -> None:
    if app.builder.format != "html":
        return
    dest = Path(app.outdir) / "_static" / "mathjax"
    if not (dest / "tex-chtml.js").is_file():
        shutil.copytree(mathjax_source(), dest, dirs_exist_ok=True)


def _point_mathjax_here(app, config) -> None:
    config.mathjax_path = MATHJAX_PATH


def setup(app):
    app.connect("config-inited", _point_mathjax_here, priority=900)
    app.connect("builder-inited", _copy_mathjax)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
