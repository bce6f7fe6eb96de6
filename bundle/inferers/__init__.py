"""Routed sliding-window inference: a suspicion router and the inferer that uses it."""

from __future__ import annotations

from bundle.inferers.inferer import RoutedSlidingWindowInferer
from bundle.inferers.router import SuspicionRouter, get_screen

__all__ = ["RoutedSlidingWindowInferer", "SuspicionRouter", "get_screen"]
