"""What a routed inferer reports about its last call: ``inferer.last_stats`` (built by :py:func:`summarise_windows`)
and ``inferer.last_tier_map`` (:py:func:`tier_map`), and both reduced to what the per-case outputs and
``summary.json`` record: windows per routing tier, the fraction of windows skipped, the JSON-friendly scalars and the
tier code per voxel. Other inferers (MONAI's plain ones) report nothing, which reads as None / empty."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from bundle.tiers import TIER_NAMES, RoutingTier

__all__ = ["inferer_tier_codes", "scalar_stats", "skipped_fraction", "summarise_windows", "tier_map", "window_counts"]

logger = logging.getLogger(__name__)


def summarise_windows(record: Mapping[str, Any], routed: bool) -> dict[str, Any]:
    """``last_stats`` of a routed inferer's call from its record (``windows``, ``num_gated`` and the screen / high /
    medium seconds); see :py:class:`bundle.inferers.RoutedSlidingWindowInferer` for the keys."""
    windows = record["windows"]
    counts = {tier: sum(w["tier"] == int(tier) for w in windows) for tier in RoutingTier}
    num = len(windows)
    per_window = {
        "screen": record["time_screen_s"] / num if routed and num else None,
        "high": record["time_high_s"] / counts[RoutingTier.HIGH] if counts[RoutingTier.HIGH] else None,
        "medium": record["time_medium_s"] / counts[RoutingTier.MEDIUM] if counts[RoutingTier.MEDIUM] else None,
    }
    spent = record["time_screen_s"] + record["time_high_s"] + record["time_medium_s"]
    # the unrouted cost is every window at the measured HIGH cost; without a HIGH window, the MEDIUM cost is a
    # lower bound of it ("basic" is the full network minus attention), so the estimate is then a lower bound
    reference = "high" if per_window["high"] else ("medium" if per_window["medium"] else None)
    full_cost = num * per_window[reference] if reference else 0.0
    return {
        "routing": routed,
        "num_windows": num,
        "num_high": counts[RoutingTier.HIGH],
        "num_medium": counts[RoutingTier.MEDIUM],
        "num_low": counts[RoutingTier.LOW],
        "num_gated": record["num_gated"],
        "windows": windows,
        "time_screen_s": record["time_screen_s"],
        "time_high_s": record["time_high_s"],
        "time_medium_s": record["time_medium_s"],
        "seconds_per_window": per_window,
        "skipped_fraction": counts[RoutingTier.LOW] / num if num else 0.0,
        "compute_saved_fraction": (1.0 - spent / full_cost if full_cost > 0 else None) if routed else 0.0,
        "compute_saved_reference": reference,
    }


def tier_map(windows: Sequence[Mapping[str, Any]], spatial_shape: Sequence[int], device: torch.device) -> torch.Tensor:
    """``torch.uint8`` (*spatial_shape): per voxel, the highest tier of the windows covering it."""
    tiers = torch.zeros(tuple(spatial_shape), dtype=torch.uint8)
    for window in windows:
        region = tuple(slice(start, stop) for start, stop in window["slices"])
        tiers[region] = torch.clamp(tiers[region], min=window["tier"])
    return tiers.to(device)


def inferer_tier_codes(inferer: Any, spatial: Sequence[int], case: str = "") -> np.ndarray | None:
    """The ``last_tier_map`` of ``inferer`` as a uint8 array of shape ``spatial``; None when the inferer has none or
    it does not match (logged as a warning naming ``case``)."""
    codes = getattr(inferer, "last_tier_map", None)
    spatial = tuple(spatial)
    if codes is None:
        return None
    if tuple(codes.shape[-len(spatial) :]) != spatial:
        logger.warning("case %s: inferer.last_tier_map %s does not match the image %s, ignored",
                       case, tuple(codes.shape), spatial)  # fmt: skip
        return None
    return np.asarray(torch.as_tensor(codes).reshape(spatial).cpu(), dtype=np.uint8)


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
