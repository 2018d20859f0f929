"""The examples in adambook's docstrings run and print what they say."""

import doctest
import importlib
import pkgutil

import pytest

import adambook

MODULES = [m.name for m in pkgutil.iter_modules(adambook.__path__, "adambook.")]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
