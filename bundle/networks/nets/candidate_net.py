"""A small 3-D CNN that classifies a lesion candidate from its multi-scale patch
(:py:func:`bundle.lesions.patches.candidate_patches`): the false-positive-reduction stage of a two-stage detector.

Layout: a plain 3x3x3 stem, then three stages of :py:class:`bundle.networks.blocks.GhostConvBlock` (the Ghost
convolutions of the bundle's U-Net) separated by 2x max pooling, then global average and max pooling side by side, a
dropout and one linear layer to a single logit ("lesion"). About 0.06 M parameters; a 2 x 32 x 32 x 16 patch costs
about 0.1 GFLOPs.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

from bundle.networks.blocks.ghost import GhostConvBlock

__all__ = ["CandidateNet"]


class CandidateNet(nn.Module):
    """
    Args:
        in_channels: channels of the patch (one per scale). Defaults to 2.
        channels: channels of the stem-and-first stage, then of each later stage. Defaults to (16, 32, 64).
        dropout: dropout before the linear layer. Defaults to 0.3.

    Raises:
        ValueError: when ``channels`` is empty or holds a non-positive int, or ``dropout`` is outside [0, 1).

    Examples::

        >>> net = CandidateNet()
        >>> net(torch.zeros(4, 2, 32, 32, 16)).shape
        torch.Size([4])
    """

    def __init__(self, in_channels: int = 2, channels: Sequence[int] = (16, 32, 64), dropout: float = 0.3) -> None:
        super().__init__()
        channels = list(channels)
        if not channels or any(isinstance(c, bool) or not isinstance(c, int) or c <= 0 for c in channels):
            raise ValueError(f"channels must be positive ints, got channels={channels!r}.")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got dropout={dropout!r}.")
        norm = ("batch", {"affine": True})
        layers: list[nn.Module] = [
            nn.Conv3d(in_channels, channels[0], 3, padding=1, bias=False),
            nn.BatchNorm3d(channels[0]),
            nn.ReLU(inplace=True),
        ]
        previous = channels[0]
        for n, c in enumerate(channels):
            if n:
                layers.append(nn.MaxPool3d(2))
            layers.append(GhostConvBlock(3, previous, c, norm=norm))
            previous = c
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * previous, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """
        Args:
            x: patches (B, in_channels, H, W, D).

        Returns:
            (B,) logits: ``sigmoid`` gives the probability that the candidate is a lesion.
        """
        f = self.features(x)
        pooled = torch.cat([f.mean(dim=(2, 3, 4)), f.amax(dim=(2, 3, 4))], dim=1)
        return self.head(pooled)[:, 0]
