"""The three routing tiers of the routed sliding window, defined once for every layer of the bundle.

A window's tier decides how much work it gets: ``HIGH`` the full network (with Coordinate Attention) and full
post-processing, ``MEDIUM`` the basic network (attention bypassed), ``LOW`` no network forward at all. The integer
values are the codes stored in tier tensors and tier maps; :data:`TIER_NAMES` are the names written to
``lesions.json`` and ``summary.json``, indexed by code.
"""

from __future__ import annotations

from enum import IntEnum

__all__ = ["RoutingTier", "TIER_NAMES", "TIER_REPORT_ORDER"]


class RoutingTier(IntEnum):
    """Compute tier of a window; the values are the ones stored in tier tensors and tier maps."""

    LOW = 0  # skipped: constant background logits, no network forward
    MEDIUM = 1  # network forward without Coordinate Attention ("basic")
    HIGH = 2  # full network forward ("full")


TIER_NAMES: tuple[str, ...] = tuple(t.name.lower() for t in RoutingTier)  # ("low", "medium", "high"), by code
TIER_REPORT_ORDER: tuple[str, ...] = tuple(reversed(TIER_NAMES))  # ("high", "medium", "low"): how reports list them
