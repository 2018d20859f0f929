"""Chapters are stored clean: no outputs, no execution counts; each imports adambook."""

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(p for p in (ROOT / "chapters").glob("*.ipynb"))


def test_there_are_chapters():
    assert NOTEBOOKS, "no chapter notebooks found"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.name)
def test_stored_without_outputs(nb):
    cells = json.loads(nb.read_text())["cells"]
    for i, cell in enumerate(cells):
        if cell["cell_type"] == "code":
            assert cell.get("outputs") == [], f"cell {i} has stored outputs"
            assert cell.get("execution_count") is None, f"cell {i} has an execution count"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.name)
def test_imports_adambook_and_asserts(nb):
    cells = json.loads(nb.read_text())["cells"]
    code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    assert re.search(r"^\s*(import adambook|from adambook)", code, re.M)
    assert re.search(r"\bassert\b|assert_close", code), "a chapter must check its claims"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.name)
def test_listed_in_toc(nb):
    toc = (ROOT / "_toc.yml").read_text()
    assert f"chapters/{nb.stem}" in toc
