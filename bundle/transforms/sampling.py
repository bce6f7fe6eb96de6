"""Patch-sampling weights that give every lesion the same chance, whatever its size.

MONAI's ``RandCropByPosNegLabeld`` centres positive patches on foreground voxels drawn uniformly, so a 30 mm nodule
(about 14,000 voxels at 1 x 1 x 1 mm) is drawn a thousand times more often than a 3 mm one (about 14 voxels): the
network barely sees the small nodules this bundle exists for. :py:class:`LesionBalancedWeight` builds a sampling
weight map for MONAI's ``RandWeightedCropd`` in which every connected lesion holds the same share of the positive
mass, and the negative mass goes mostly to the voxels where false positives matter (inside the candidate mask, e.g.
the lungs' envelope: vessels, fissures, pleura), with a little everywhere so the rest of the body is seen too.

MONAI's ``RandWeightedCropd`` draws patch centres only where the whole patch fits in the image and drops the weight
elsewhere: a lesion within half a patch of the border is never a centre, and its share goes to the other lesions
(on the right half of an MNI152 head, 94 voxels wide for a 64-voxel patch, four of the first case's six lesions).
With ``spatial_size`` the weight map is folded onto the centres that ``RandWeightedCropd`` can use
(:func:`fold_to_valid_centres`), as MONAI's ``RandCropByPosNegLabeld`` moves its centres inward.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, Transform
from monai.utils import convert_to_numpy, fall_back_tuple
from scipy import ndimage

__all__ = ["LesionBalancedWeight", "LesionBalancedWeightd", "fold_to_valid_centres"]


def fold_to_valid_centres(weight: np.ndarray, spatial_size: Sequence[int] | int) -> np.ndarray:
    """
    Move the weight of every voxel that MONAI's ``weighted_patch_samples`` can not draw as a patch centre onto the
    nearest centre it can draw, in place; returns ``weight``.

    Along an axis of ``m`` voxels and a patch of ``w``, MONAI draws centres ``w // 2 ... m - w + w // 2 - 1`` (the
    one centre ``m // 2`` when ``m <= w``); the weight below (above) that range is added to its first (last) centre.
    The patch at the new centre then holds the voxel (all but the image's last voxel along the axis, which MONAI's
    range leaves out of every patch), and every lesion keeps its share of the mass.

    Args:
        weight: the weight map (spatial dims only, no channel).
        spatial_size: the patch size, one value per spatial axis (an int is used for every axis; a non-positive
            value takes the image's size along that axis, as MONAI's ``fall_back_tuple``).
    """
    size = fall_back_tuple(spatial_size, weight.shape)
    for axis, (w, m) in enumerate(zip(size, weight.shape)):
        lo, hi = (w // 2, m - w + w // 2 - 1) if m > w else (m // 2, m // 2)
        index: list[Any] = [slice(None)] * weight.ndim
        index[axis] = slice(0, lo)
        below = weight[tuple(index)].sum(axis=axis)
        weight[tuple(index)] = 0
        index[axis] = slice(hi + 1, None)
        above = weight[tuple(index)].sum(axis=axis)
        weight[tuple(index)] = 0
        index[axis] = lo
        weight[tuple(index)] += below
        index[axis] = hi
        weight[tuple(index)] += above
    return weight


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
        spatial_size: the patch size of the ``RandWeightedCropd`` that uses the map: the weight is folded onto the
            centres it can draw (:func:`fold_to_valid_centres`), so lesions near the border are sampled too. Defaults
            to None (no folding: such lesions are never a patch centre).

    Raises:
        ValueError: when a mass is negative or all are zero; when label and mask shapes differ.
    """

    def __init__(
        self,
        pos_mass: float = 0.5,
        neg_mask_mass: float = 0.35,
        neg_any_mass: float = 0.15,
        mask_threshold: float = 0.0,
        spatial_size: Sequence[int] | int | None = None,
    ) -> None:
        masses = (float(pos_mass), float(neg_mask_mass), float(neg_any_mass))
        if min(masses) < 0 or sum(masses) <= 0:
            raise ValueError(f"masses must be >= 0 and not all zero, got {masses}.")
        self.pos_mass, self.neg_mask_mass, self.neg_any_mass = masses
        self.mask_threshold = float(mask_threshold)
        self.spatial_size = spatial_size

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
        if self.spatial_size is not None:
            fold_to_valid_centres(weight, self.spatial_size)
        return torch.as_tensor(weight[None])


class LesionBalancedWeightd(MapTransform):
    """Dictionary wrapper of :py:class:`LesionBalancedWeight`: reads ``keys`` (the label), writes ``weight_key``.

    Use it before MONAI's ``RandWeightedCropd(keys, w_key=weight_key, ...)``, and drop ``weight_key`` and
    ``mask_key`` afterwards (``DeleteItemsd``).

    Args:
        keys: the label key (one key).
        weight_key: where the weight map is stored. Defaults to ``"sample_weight"``.
        mask_key: optional key of the candidate mask (e.g. ``LungCandidateMaskd``'s ``"lung_mask"``). Defaults to None.
        pos_mass, neg_mask_mass, neg_any_mass, mask_threshold, spatial_size: see :py:class:`LesionBalancedWeight`.
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
        spatial_size: Sequence[int] | int | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.weight_key, self.mask_key = weight_key, mask_key
        self.weigher = LesionBalancedWeight(pos_mass, neg_mask_mass, neg_any_mass, mask_threshold, spatial_size)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            mask = d[self.mask_key] if self.mask_key is not None else None
            d[self.weight_key] = self.weigher(d[key], mask)
        return d
