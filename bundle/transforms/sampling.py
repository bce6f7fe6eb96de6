"""Patch-sampling weights that give every lesion the same chance, whatever its size.

MONAI's ``RandCropByPosNegLabeld`` centres positive patches on foreground voxels drawn uniformly, so a 30 mm nodule
(about 14,000 voxels at 1 x 1 x 1 mm) is drawn a thousand times more often than a 3 mm one (about 14 voxels): the
network barely sees the small nodules this bundle exists for. :py:class:`LesionBalancedWeight` builds a sampling
weight map for MONAI's ``RandWeightedCropd`` in which every connected lesion holds the same share of the positive
mass, and the negative mass goes mostly to the voxels where false positives matter (inside the candidate mask, e.g.
the lungs' envelope: vessels, fissures, pleura), with a little everywhere so the rest of the body is seen too.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, Transform
from monai.utils import convert_to_numpy
from scipy import ndimage

__all__ = ["LesionBalancedWeight", "LesionBalancedWeightd"]


class LesionBalancedWeight(Transform):
    """Sampling weights (1, *spatial) from a lesion label (1, *spatial): equal mass per lesion, then background.

    Every connected lesion (full connectivity) gets ``pos_mass / n_lesions`` spread evenly over its voxels.
    Background voxels inside ``mask`` (where ``mask > mask_threshold``) share ``neg_mask_mass`` and all background
    voxels share ``neg_any_mass``. The mask may be the image itself: with a [0, 1]-scaled CT and
    ``mask_threshold=0.05`` the negatives come from the body, not the air around it, as MONAI's
    ``FgBgToIndicesd(image_threshold=0.05)`` does for ``RandCropByPosNegLabeld``.
    The three masses are relative: a label without lesions (or without a mask) hands its share to the others.

    Args:
        pos_mass: total weight of the lesion voxels. Defaults to 0.5.
        neg_mask_mass: total weight of background voxels inside the mask. Defaults to 0.35.
        neg_any_mass: total weight of all background voxels. Defaults to 0.15.
        mask_threshold: a mask voxel counts as inside when its value is above this. Defaults to 0.0.

    Raises:
        ValueError: when a mass is negative or all are zero; when label and mask shapes differ.
    """

    def __init__(
        self,
        pos_mass: float = 0.5,
        neg_mask_mass: float = 0.35,
        neg_any_mass: float = 0.15,
        mask_threshold: float = 0.0,
    ) -> None:
        masses = (float(pos_mass), float(neg_mask_mass), float(neg_any_mass))
        if min(masses) < 0 or sum(masses) <= 0:
            raise ValueError(f"masses must be >= 0 and not all zero, got {masses}.")
        self.pos_mass, self.neg_mask_mass, self.neg_any_mass = masses
        self.mask_threshold = float(mask_threshold)

    def __call__(self, label: torch.Tensor | np.ndarray, mask: torch.Tensor | np.ndarray | None = None) -> torch.Tensor:
        lab = convert_to_numpy(label) > 0
        if lab.ndim < 2 or lab.shape[0] != 1:
            raise ValueError(f"label must have shape (1, *spatial), got {tuple(lab.shape)}.")
        lab = lab[0]
        weight = np.zeros(lab.shape, dtype=np.float32)
        components, n = ndimage.label(lab, structure=np.ones((3,) * lab.ndim, dtype=bool))
        if n and self.pos_mass > 0:
            sizes = np.bincount(components.ravel())
            per_voxel = np.zeros(n + 1, dtype=np.float64)
            per_voxel[1:] = self.pos_mass / n / sizes[1:]
            weight += per_voxel[components].astype(np.float32)
        background = ~lab
        if mask is not None and self.neg_mask_mass > 0:
            inside = convert_to_numpy(mask) > self.mask_threshold
            if inside.shape != (1, *lab.shape):
                raise ValueError(f"mask shape {tuple(inside.shape)} differs from label shape {(1, *lab.shape)}.")
            inside = inside[0] & background
            if inside.any():
                weight[inside] += self.neg_mask_mass / float(inside.sum())
        if self.neg_any_mass > 0 and background.any():
            weight[background] += self.neg_any_mass / float(background.sum())
        if not weight.any():  # no background at all and no lesion: sample uniformly
            weight[:] = 1.0
        return torch.as_tensor(weight[None])


class LesionBalancedWeightd(MapTransform):
    """Dictionary wrapper of :py:class:`LesionBalancedWeight`: reads ``keys`` (the label), writes ``weight_key``.

    Use it before MONAI's ``RandWeightedCropd(keys, w_key=weight_key, ...)``, and drop ``weight_key`` and
    ``mask_key`` afterwards (``DeleteItemsd``).

    Args:
        keys: the label key (one key).
        weight_key: where the weight map is stored. Defaults to ``"sample_weight"``.
        mask_key: optional key of the candidate mask (e.g. ``LungCandidateMaskd``'s ``"lung_mask"``). Defaults to None.
        pos_mass, neg_mask_mass, neg_any_mass, mask_threshold: see :py:class:`LesionBalancedWeight`.
        allow_missing_keys: don't raise when the label key is missing.
    """

    def __init__(
        self,
        keys: KeysCollection = "label",
        weight_key: str = "sample_weight",
        mask_key: str | None = None,
        pos_mass: float = 0.5,
        neg_mask_mass: float = 0.35,
        neg_any_mass: float = 0.15,
        mask_threshold: float = 0.0,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.weight_key, self.mask_key = weight_key, mask_key
        self.weigher = LesionBalancedWeight(pos_mass, neg_mask_mass, neg_any_mass, mask_threshold)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            mask = d[self.mask_key] if self.mask_key is not None else None
            d[self.weight_key] = self.weigher(d[key], mask)
        return d
