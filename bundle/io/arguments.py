"""Command-line values as the bundle's functions take them: ``fire`` hands a script ``"3-6"``, ``4``, ``"a,b"`` or a
list, depending on what was typed; these turn each form into the one the called function expects."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["value_pair", "comma_tuple", "int_list"]


def value_pair(value: Any, name: str) -> tuple[Any, Any]:
    """
    ``'3-6'`` (or ``'3,6'``), ``(3, 6)`` or ``4`` -> a ``(min, max)`` pair (strings give floats, a number gives
    ``(value, value)``, a pair is kept as it is).

    Args:
        value: the command-line value.
        name: the argument's name, for the error message.

    Raises:
        ValueError: when ``value`` is none of these forms.
    """
    if isinstance(value, (int, float)):
        return value, value
    if isinstance(value, str):
        parts = value.replace(",", "-").split("-")
        if len(parts) != 2:
            raise ValueError(f"{name} must look like 'min-max', got {value!r}.")
        return float(parts[0]), float(parts[1])
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return value[0], value[1]
    raise ValueError(f"{name} must be 'min-max' or a pair, got {value!r}.")


def comma_tuple(value: str | Sequence[str]) -> tuple[str, ...]:
    """``'a,b'`` or ``('a', 'b')`` -> ``('a', 'b')`` (empty names between commas are dropped)."""
    return tuple(x for x in value.split(",") if x) if isinstance(value, str) else tuple(value)


def int_list(value: Sequence[int] | int | None) -> Sequence[int] | None:
    """One integer -> a list of it; a sequence or None unchanged."""
    return [value] if isinstance(value, int) else value
