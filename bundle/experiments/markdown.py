"""The Markdown tables of the research reports: one table builder and the two ways its cells are written (the
benchmark's significant digits, the analyses' fixed decimals)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from bundle.tiers import TIER_REPORT_ORDER

__all__ = ["markdown_table", "significant_cell", "decimal_cell"]


def significant_cell(value: Any) -> str:
    """A benchmark cell: floats with 3 significant digits, a window-count dict as ``high/medium/low/gated`` (the
    tiers it holds), None empty."""
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, dict):
        return "/".join(str(value.get(k)) for k in (*TIER_REPORT_ORDER, "gated") if k in value)
    return "" if value is None else str(value)


def decimal_cell(value: Any, digits: int = 3) -> str:
    """An analysis cell: floats with ``digits`` decimals (``digits`` significant digits below 1e-3), None and
    non-finite floats as ``-``.

    Args:
        value: the cell's value.
        digits: decimals of floats. Defaults to 3.
    """
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1e-3 and value != 0 else f"{value:.{digits}f}"
    return str(value)


def markdown_table(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[tuple[str, str]],
    format_cell: Callable[[Any], str] = significant_cell,
) -> str:
    """
    A Markdown table: a header line, a separator line and one line per row, joined by newlines (no final newline).

    Args:
        rows: dicts; a key a row lacks gives the cell of None.
        columns: ``(key, header)`` pairs, in order.
        format_cell: writes one cell's value, e.g. :py:func:`significant_cell` (the default) or
            ``functools.partial(decimal_cell, digits=2)``.
    """
    lines = ["| " + " | ".join(h for _, h in columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(format_cell(r.get(k)) for k, _ in columns) + " |" for r in rows]
    return "\n".join(lines)
