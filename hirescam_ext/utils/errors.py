"""Error types: bad input gets a clear message that names the file and the problem."""

from __future__ import annotations

import os

__all__ = ["InputError", "input_error"]


class InputError(ValueError):
    """Bad user input (a file, a table, a config value). The message names the file and the problem.

    Args:
        path: the offending file or folder (may be ``None`` for in-memory input).
        problem: what is wrong, in words a user can act on.
    """

    def __init__(self, path: str | os.PathLike | None, problem: str):
        self.path = None if path is None else os.fspath(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path else problem)


def input_error(path: str | os.PathLike | None, problem: str) -> InputError:
    """Build an :class:`InputError` (handy in ``raise input_error(...) from exc``)."""
    return InputError(path, problem)
