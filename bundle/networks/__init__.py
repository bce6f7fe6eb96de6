"""Networks of the bundle: Ghost + Coordinate Attention U-Net and its blocks.

``__all__`` is the registry read by ``tests/networks/test_all_networks.py``: every name listed here is a
shape-preserving ``nn.Module`` that must pass the forward/backward contract test.
"""

from __future__ import annotations

from bundle.networks.blocks import CoordinateAttention, GhostModule
from bundle.networks.nets import GhostCAUNet

__all__ = ["GhostModule", "CoordinateAttention", "GhostCAUNet"]
