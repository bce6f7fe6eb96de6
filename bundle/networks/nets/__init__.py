"""Networks, one public network per module."""

from __future__ import annotations

from bundle.networks.nets.ghost_ca_unet import GhostCAUNet

__all__ = ["GhostCAUNet"]
