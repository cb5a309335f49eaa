"""The ``Example:`` sections of the package's docstrings run and print what they show.

A reader copies these lines first; an example that no longer matches the code (a changed default, a renamed
argument) fails here. Lines that need files or data a reader would supply are marked ``# doctest: +SKIP`` in place.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import hirescam_ext


def _modules() -> list[str]:
    """Every module of the package but the ``python -m`` entry points (importing one runs the command)."""
    names = (m.name for m in pkgutil.walk_packages(hirescam_ext.__path__, prefix="hirescam_ext."))
    return sorted(n for n in names if not n.endswith(".__main__"))


@pytest.mark.parametrize("name", _modules())
def test_docstring_examples_of_the_module_run(name: str) -> None:
    module = importlib.import_module(name)
    finder, runner = doctest.DocTestFinder(), doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for test in finder.find(module, name):
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} docstring example lines of {name} failed"
