"""The examples in adambook's docstrings, and in the tests' book tooling, run and
print what they say."""

import doctest
import importlib
import pkgutil

import pytest

import adambook
import book

MODULES = [m.name for m in pkgutil.walk_packages(adambook.__path__, "adambook.")]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0


def test_book_tooling_examples():
    result = doctest.testmod(book, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
