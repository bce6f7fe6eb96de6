"""What a routed inferer reports about its last call (``inferer.last_stats``), reduced to what the per-case
outputs and ``summary.json`` record: windows per routing tier, the fraction of windows skipped, and the JSON-friendly
scalars. Other inferers (MONAI's plain ones) report nothing, which reads as None / empty."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from bundle.tiers import TIER_NAMES

__all__ = ["scalar_stats", "skipped_fraction", "window_counts"]


def window_counts(stats: Mapping[str, Any] | None) -> dict[str, int] | None:
    """Windows per tier from a routed inferer's ``last_stats``: its ``num_high``/``num_medium``/``num_low``, else
    counted from its ``windows`` list (records with a ``tier`` code 0/1/2); None for other inferers."""
    if not isinstance(stats, Mapping):
        return None
    if all(f"num_{t}" in stats for t in TIER_NAMES):
        return {t: int(stats[f"num_{t}"]) for t in TIER_NAMES}
    windows = stats.get("windows")
    if isinstance(windows, (list, tuple)) and all(isinstance(w, Mapping) and "tier" in w for w in windows):
        codes = [int(w["tier"]) for w in windows]
        return {name: codes.count(code) for code, name in enumerate(TIER_NAMES)}
    return None


def scalar_stats(stats: Mapping[str, Any] | None) -> dict[str, Any]:
    """The JSON-friendly scalar entries (numbers, strings, flat dicts of numbers) of ``last_stats``."""
    out: dict[str, Any] = {}
    for k, v in (stats or {}).items():
        if isinstance(v, (bool, int, float, str)):
            out[str(k)] = v
        elif isinstance(v, Mapping) and all(isinstance(x, (int, float)) for x in v.values()):
            out[str(k)] = {str(a): b for a, b in v.items()}
    return out


def skipped_fraction(stats: Mapping[str, Any] | None) -> float | None:
    """``stats["skipped_fraction"]`` as a float; None when absent or not finite."""
    skipped = stats.get("skipped_fraction") if isinstance(stats, Mapping) else None
    return None if skipped is None or not math.isfinite(float(skipped)) else float(skipped)
