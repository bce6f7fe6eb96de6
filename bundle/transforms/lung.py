"""Candidate mask for CT: the lungs' slice-wise envelope, the classic CAD false-positive control.

Bright structures outside the lungs (chest wall, mediastinum, bone, the table) are the usual false positives of a
nodule detector. The inference drops lesion candidates whose centre lies outside this mask. The envelope (convex
hull per lung and slice, :py:func:`bundle.transforms.lung_mask.lung_envelope`) keeps juxta-pleural nodules and masses that
indent the lung, which a plain threshold lung mask would cut away.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Mapping

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, Transform
from scipy import ndimage

from bundle.transforms.lung_mask import lung_envelope, lung_mask

logger = logging.getLogger(__name__)

__all__ = ["LungCandidateMask", "LungCandidateMaskd"]


class LungCandidateMask(Transform):
    """Lung envelope mask (1, *spatial) of a preprocessed CT image (1, H, W, D) windowed to [0, 1].

    Args:
        a_min: HU mapped to 0 by the preprocessing window. Defaults to -1000.
        a_max: HU mapped to 1 by the preprocessing window. Defaults to 400.
        margin_mm: in-plane dilation of the envelope, so candidates on the pleura are kept. Defaults to 5.
        empty_means_all: when no plausible lung is found (less than ``min_lung_ml`` of lung: not a chest CT, e.g.
            a head scan, or a crop whose lungs touch the cut so the threshold segmentation fails), return an
            all-ones mask so nothing is dropped, and log it. Defaults to True.
        min_lung_ml: lung volume below which the segmentation counts as failed. Defaults to 200 ml (one adult lung
            holds 1-3 l).

    Raises:
        ValueError: when ``a_min >= a_max`` or ``margin_mm < 0``; when the image is not (1, H, W, D).
    """

    def __init__(
        self,
        a_min: float = -1000.0,
        a_max: float = 400.0,
        margin_mm: float = 5.0,
        empty_means_all: bool = True,
        min_lung_ml: float = 200.0,
    ):
        if not a_min < a_max:
            raise ValueError(f"a_min must be smaller than a_max, got a_min={a_min}, a_max={a_max}.")
        if margin_mm < 0:
            raise ValueError(f"margin_mm must be >= 0, got margin_mm={margin_mm}.")
        self.a_min, self.a_max, self.margin_mm, self.empty_means_all = a_min, a_max, margin_mm, empty_means_all
        self.min_lung_ml = min_lung_ml

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        if img.dim() != 4 or img.shape[0] != 1:
            raise ValueError(f"image must have shape (1, H, W, D), got {tuple(img.shape)}.")
        spacing = (
            [float(s) for s in img.pixdim[:3]] if isinstance(img, MetaTensor) else [1.0, 1.0, 1.0]
        )  # (x, y, z) mm after Spacingd
        hu = self.a_min + np.asarray(img[0].detach().cpu(), dtype=np.float32) * (self.a_max - self.a_min)
        lungs = lung_mask(hu, spacing)
        lung_ml = float(lungs.sum()) * float(np.prod(spacing)) / 1000.0
        if lung_ml < self.min_lung_ml:
            if self.empty_means_all:
                logger.info("no plausible lung found (%.0f ml): the candidate mask keeps everything", lung_ml)
                mask = np.ones(hu.shape, dtype=bool)
            else:
                mask = lungs
        else:
            mask = lung_envelope(lungs)
            radius = [max(int(round(self.margin_mm / s)), 0) for s in spacing[:2]]
            if max(radius) > 0:
                structure = np.zeros((2 * radius[0] + 1, 2 * radius[1] + 1, 1), dtype=bool)
                yy, xx = np.ogrid[-radius[0] : radius[0] + 1, -radius[1] : radius[1] + 1]
                structure[..., 0] = (yy / max(radius[0], 1)) ** 2 + (xx / max(radius[1], 1)) ** 2 <= 1.0
                mask = ndimage.binary_dilation(mask, structure=structure)
        out = torch.as_tensor(mask[None].astype(np.uint8))
        return MetaTensor(out, meta=img.meta, applied_operations=list(img.applied_operations)) if isinstance(
            img, MetaTensor
        ) else out


class LungCandidateMaskd(MapTransform):
    """Dictionary wrapper of :py:class:`LungCandidateMask`: reads ``keys`` (the image), writes ``mask_key``.

    Args:
        keys: the image key (one key).
        mask_key: where the mask is stored. Defaults to ``"lung_mask"``.
        a_min, a_max, margin_mm, empty_means_all: see :py:class:`LungCandidateMask`.
        allow_missing_keys: don't raise when the image key is missing.
    """

    backend = [torch.Tensor.__name__]

    def __init__(
        self,
        keys: KeysCollection = "image",
        mask_key: str = "lung_mask",
        a_min: float = -1000.0,
        a_max: float = 400.0,
        margin_mm: float = 5.0,
        empty_means_all: bool = True,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.mask_key = mask_key
        self.masker = LungCandidateMask(a_min, a_max, margin_mm, empty_means_all)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[self.mask_key] = self.masker(d[key])
        return d
