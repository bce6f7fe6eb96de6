"""Reusable N-D blocks: Ghost convolutions and Coordinate Attention."""

from __future__ import annotations

from bundle.networks.blocks.coord_attention import CoordinateAttention
from bundle.networks.blocks.ghost import GhostConvBlock, GhostModule

__all__ = ["CoordinateAttention", "GhostConvBlock", "GhostModule"]
