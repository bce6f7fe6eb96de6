"""Training the learned screen jointly with the segmentation: an inferer that also returns the screen's logit maps,
and a loss that supervises them with the lesion mask max-pooled to their grids.

The routed sliding window scores every window with ``0.6 * edge + 0.4 * semantic`` (``GhostCAUNet.screen``). With
``learned_screen=True`` both terms are trained heads on the screening encoder's features; this module trains them in
the same steps as the segmentation, from the same patches, so the shipped weights carry a screen that was trained
for what the router asks: "does a lesion voxel lie in this window?".
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from monai.inferers import Inferer

__all__ = ["ScreenTrainingInferer", "ScreenSupervisedLoss", "segmentation_logits"]


def _unwrap(network: nn.Module) -> nn.Module:
    return getattr(network, "module", network)  # DistributedDataParallel keeps the network in `.module`


class ScreenTrainingInferer(Inferer):
    """``network(inputs)`` plus, for a network built with ``learned_screen=True``, its ``screen_maps(inputs)``.

    Returns ``(logits, edge_logits, semantic_logits)`` for such a network and the logits alone otherwise, so a
    training config can use it for any network.
    """

    def __call__(self, inputs: torch.Tensor, network: nn.Module, *args: Any, **kwargs: Any) -> Any:
        logits = network(inputs, *args, **kwargs)
        target = _unwrap(network)
        if not getattr(target, "learned_screen", False):
            return logits
        edge, semantic = target.screen_maps(inputs)
        return logits, edge, semantic


def segmentation_logits(pred: Any) -> torch.Tensor:
    """The segmentation logits of a :class:`ScreenTrainingInferer` output (a tuple) or of a plain one (a tensor)."""
    return pred[0] if isinstance(pred, (tuple, list)) else pred


class ScreenSupervisedLoss(nn.Module):
    """``loss(logits, label) + screen_weight * sum over the screen maps of (position BCE + window BCE)``.

    Each screen map (B, 1, *grid) is compared with the lesion mask max-pooled to its grid (a position is positive
    when a lesion voxel lies under it), and the map's maximum with "the patch holds a lesion voxel": the window term
    is what the router thresholds. A plain tensor prediction gets ``loss`` alone.

    Args:
        loss: the segmentation loss, called as ``loss(logits, label)``.
        screen_weight: weight of the screen terms. Defaults to 0.5.

    Raises:
        ValueError: when ``screen_weight`` is negative.
    """

    def __init__(self, loss: nn.Module, screen_weight: float = 0.5) -> None:
        super().__init__()
        if screen_weight < 0:
            raise ValueError(f"screen_weight must be >= 0, got screen_weight={screen_weight!r}.")
        self.loss = loss
        self.screen_weight = float(screen_weight)

    def forward(self, pred: Any, label: torch.Tensor) -> torch.Tensor:
        if isinstance(pred, torch.Tensor):
            return self.loss(pred, label)
        logits, *maps = pred
        total = self.loss(logits, label)
        lesion = (label > 0).to(logits.dtype)  # (B, 1, *S)
        pool = F.adaptive_max_pool3d if lesion.dim() == 5 else F.adaptive_max_pool2d
        for logit_map in maps:
            target = pool(lesion, tuple(logit_map.shape[2:]))  # (B, 1, *grid)
            position = F.binary_cross_entropy_with_logits(logit_map.float(), target.float())
            window = F.binary_cross_entropy_with_logits(
                logit_map.flatten(1).amax(1).float(), target.flatten(1).amax(1).float()
            )
            total = total + self.screen_weight * (position + window)
        return total
