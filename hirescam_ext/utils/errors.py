"""Error types: bad input gets a clear message that names the file and the problem."""

from __future__ import annotations

import os

__all__ = ["InputError", "error_message", "input_error"]


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


def error_message(exc: BaseException) -> str:
    """The most useful message of an exception chain (MONAI wraps transform errors several times).

    The first :class:`InputError` of the chain when there is one (it names the file and the problem), else the
    innermost message.
    """
    messages = []
    current: BaseException | None = exc
    while current is not None:
        if isinstance(current, InputError):
            return str(current).splitlines()[0] if str(current).strip() else type(current).__name__
        text = str(current).strip()
        if text:
            messages.append(f"{type(current).__name__}: {text.splitlines()[0]}")
        current = current.__cause__ or current.__context__
    return messages[-1] if messages else type(exc).__name__
