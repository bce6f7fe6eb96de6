"""A segmentation loss in which every lesion counts, whatever its size (issue #21, "size-aware training").

The shipped loss (MONAI's ``DiceFocalLoss`` with ``batch=True``) sums voxels: a 4 mm nodule, about 13 voxels on the
1 x 1 x 2.5 mm training grid, weighs 1/400 of a 30 mm mass in the batch Dice and in the focal term, so missing it costs
almost nothing. :class:`LesionBalancedLoss` keeps the Dice but per patch (``batch=False``) and weights the focal term
per lesion: the voxels of each connected lesion component of a patch's label get the weight
``clip(reference_voxels / component_voxels, 1, max_weight)``, where ``reference_voxels`` is the volume of a sphere of
``reference_diameter_mm``, so every lesion up to that size carries the focal weight of a reference-sized one; larger
lesions and the background keep weight 1. The weighted focal term is averaged over all voxels, so the background's
share of the loss is the same as without weights.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from monai.losses import DiceLoss
from scipy import ndimage
from torch import nn

__all__ = ["lesion_weights", "LesionBalancedLoss"]


def lesion_weights(label: np.ndarray, reference_voxels: float, max_weight: float) -> np.ndarray:
    """Per-voxel weights of one label patch: 1 on the background, per lesion component
    ``clip(reference_voxels / its voxels, 1, max_weight)`` (components 26-connected).

    Args:
        label: (*S) array, lesion where > 0.
        reference_voxels: the voxel count that gets weight 1.
        max_weight: the largest weight.
    """
    lesion = np.asarray(label) > 0
    weights = np.ones(lesion.shape, dtype=np.float32)
    if not lesion.any():
        return weights
    components, n = ndimage.label(lesion, structure=np.ones((3,) * lesion.ndim, dtype=bool))
    sizes = np.bincount(components.ravel(), minlength=n + 1).astype(np.float64)
    per_component = np.clip(reference_voxels / np.maximum(sizes, 1.0), 1.0, max_weight)
    per_component[0] = 1.0
    return per_component[components].astype(np.float32)


class LesionBalancedLoss(nn.Module):
    """Per-patch soft Dice (foreground) + a focal term weighted per lesion (see the module docstring).

    Called as ``loss(logits, label)`` with logits (B, 2, *S) and a label (B, 1, *S) of 0/1, as MONAI's
    ``DiceFocalLoss(to_onehot_y=True, softmax=True)``.

    Args:
        spacing_mm: the training grid's voxel size (the weights count voxels of that size).
        reference_diameter_mm: lesions up to this equivalent diameter weigh as one of it. Defaults to 10.
        max_weight: the largest per-voxel weight (a lesion cut to a few voxels at the patch border). Defaults to 50.
        gamma: the focal exponent. Defaults to 2, as the shipped loss.
        focal_weight: the focal term's share against the Dice term. Defaults to 1.

    Raises:
        ValueError: on a non-positive spacing, diameter or gamma below 0, or ``max_weight`` below 1.
    """

    def __init__(
        self,
        spacing_mm: Sequence[float],
        reference_diameter_mm: float = 10.0,
        max_weight: float = 50.0,
        gamma: float = 2.0,
        focal_weight: float = 1.0,
    ) -> None:
        super().__init__()
        spacing = [float(s) for s in spacing_mm]
        if not spacing or min(spacing) <= 0 or reference_diameter_mm <= 0:
            raise ValueError(
                f"spacing_mm and reference_diameter_mm must be positive, got {spacing_mm!r}, {reference_diameter_mm!r}."
            )
        if max_weight < 1 or gamma < 0 or focal_weight < 0:
            raise ValueError(f"need max_weight >= 1, gamma >= 0, focal_weight >= 0; got {max_weight}, {gamma}, "
                             f"{focal_weight}.")  # fmt: skip
        self.reference_voxels = math.pi / 6.0 * reference_diameter_mm**3 / math.prod(spacing)
        self.max_weight, self.gamma, self.focal_weight = float(max_weight), float(gamma), float(focal_weight)
        self.dice = DiceLoss(include_background=False, to_onehot_y=True, softmax=True, batch=False)

    def weights(self, label: torch.Tensor) -> torch.Tensor:
        """(B, 1, *S) weights of a label batch (computed on the CPU with scipy, then moved to the label's device)."""
        arrays = label.detach().cpu().numpy()
        out = np.stack([lesion_weights(a[0], self.reference_voxels, self.max_weight) for a in arrays])[:, None]
        return torch.from_numpy(out).to(label.device)

    def focal(self, logits: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        """The lesion-weighted focal term, averaged over all voxels."""
        log_pt = F.log_softmax(logits.float(), dim=1).gather(1, label.long())  # (B, 1, *S)
        return (-((1.0 - log_pt.exp()) ** self.gamma) * log_pt * self.weights(label)).mean()

    def forward(self, logits: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        return self.dice(logits, label) + self.focal_weight * self.focal(logits, label)
