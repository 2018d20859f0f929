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


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.name)
def test_code_lines_fit_79_characters(nb):
    """A 79-character line fits the book's code blocks at 1280 px (see
    _static/adambook.css); a longer one scrolls sideways."""
    cells = json.loads(nb.read_text())["cells"]
    long = [(i, line) for i, c in enumerate(cells) if c["cell_type"] == "code"
            for line in "".join(c["source"]).splitlines() if len(line) > 79]
    assert not long, f"cells with lines over 79 characters: {long}"


def test_package_lines_fit_79_characters():
    long = [f"{p.relative_to(ROOT)}:{k}" for p in sorted((ROOT / "adambook").rglob("*.py"))
            for k, line in enumerate(p.read_text().splitlines(), 1) if len(line) > 79]
    assert not long, f"adambook lines over 79 characters: {long}"
