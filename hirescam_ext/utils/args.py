"""Argument coercion for values that arrive through bundle configs and the command line.

``python -m monai.bundle run --use_mask_loss false`` hands the string ``'false'`` to the config (``fire`` only
turns Python literals such as ``False`` into booleans), and ``bool('false')`` is ``True``. Constructors that take
switches call :func:`as_bool`, which accepts real booleans and the usual spellings and refuses anything else.

Example:
    >>> as_bool("false", "use_mask_loss"), as_bool(True, "x"), as_bool("1", "x")
    (False, True, True)
"""

from __future__ import annotations

from typing import Any

__all__ = ["as_bool", "TRUE_STRINGS", "FALSE_STRINGS"]

TRUE_STRINGS = ("true", "yes", "on", "1")
FALSE_STRINGS = ("false", "no", "off", "0")


def as_bool(value: Any, name: str) -> bool:
    """``value`` as a bool: ``True``/``False``, 0/1, or one of :data:`TRUE_STRINGS` / :data:`FALSE_STRINGS`.

    Args:
        value: the value given for the switch.
        name: the switch's name, for the error message.

    Raises:
        ValueError: any other value (for example ``"flase"``, ``2`` or ``None``), naming the switch.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        key = value.strip().lower()
        if key in TRUE_STRINGS:
            return True
        if key in FALSE_STRINGS:
            return False
    raise ValueError(
        f"{name} must be true or false, got {value!r}; on the command line write --{name} true or --{name} false"
    )
