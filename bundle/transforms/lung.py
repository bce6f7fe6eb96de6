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


def _pool_any_inplane(mask: np.ndarray, block: int) -> np.ndarray:
    """(h, w, D) bool -> (ceil(h / block), ceil(w / block), D): a block is True when any of its voxels is."""
    if block == 1:
        return mask
    h, w = mask.shape[:2]
    padded = np.pad(mask, ((0, -h % block), (0, -w % block), (0, 0)))
    return padded.reshape(padded.shape[0] // block, block, padded.shape[1] // block, block, -1).any(axis=(1, 3))


def _repeat_inplane(mask: np.ndarray, block: int, shape: tuple[int, ...]) -> np.ndarray:
    """Nearest-neighbour repetition of a block grid back onto the full ``shape`` (H, W, D)."""
    if block > 1:
        mask = np.repeat(np.repeat(mask, block, axis=0), block, axis=1)
    return np.ascontiguousarray(mask[: shape[0], : shape[1]])



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
        segmentation_mm: in-plane grid of the lung segmentation: the image is sampled every
            ``round(segmentation_mm / spacing)`` voxels. Defaults to 2 mm. 0 segments at full resolution.
        envelope_mm: in-plane grid of the envelope and its margin: the lung mask is pooled (any lung voxel) onto
            blocks of about this size, the envelope and the margin (rounded up to whole blocks, so never smaller
            than ``margin_mm``) are built there and brought back by nearest-neighbour repetition. The mask is then
            a superset of the full-resolution envelope within about one block, at a small fraction of its cost.
            Defaults to 4 mm. 0 builds both at the segmentation's resolution with the margin as given.

    Raises:
        ValueError: when ``a_min >= a_max``, ``margin_mm``, ``segmentation_mm`` or ``envelope_mm`` is negative;
            when the image is not (1, H, W, D).
    """

    def __init__(
        self,
        a_min: float = -1000.0,
        a_max: float = 400.0,
        margin_mm: float = 5.0,
        empty_means_all: bool = True,
        min_lung_ml: float = 200.0,
        segmentation_mm: float = 2.0,
        envelope_mm: float = 4.0,
    ):
        if not a_min < a_max:
            raise ValueError(f"a_min must be smaller than a_max, got a_min={a_min}, a_max={a_max}.")
        for name, value in (("margin_mm", margin_mm), ("segmentation_mm", segmentation_mm), ("envelope_mm", envelope_mm)):
            if not value >= 0:
                raise ValueError(f"{name} must be >= 0, got {name}={value}.")
        self.a_min, self.a_max, self.margin_mm, self.empty_means_all = a_min, a_max, margin_mm, empty_means_all
        self.min_lung_ml = min_lung_ml
        self.segmentation_mm, self.envelope_mm = segmentation_mm, envelope_mm

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        if img.dim() != 4 or img.shape[0] != 1:
            raise ValueError(f"image must have shape (1, H, W, D), got {tuple(img.shape)}.")
        spacing = (
            [float(s) for s in img.pixdim[:3]] if isinstance(img, MetaTensor) else [1.0, 1.0, 1.0]
        )  # (x, y, z) mm after Spacingd
        mask = self._mask(np.asarray(img[0].detach().cpu(), dtype=np.float32), spacing)
        out = torch.as_tensor(mask[None].astype(np.uint8))
        return MetaTensor(out, meta=img.meta, applied_operations=list(img.applied_operations)) if isinstance(
            img, MetaTensor
        ) else out

    @staticmethod
    def _stride(grid_mm: float, spacing: list[float]) -> int:
        """In-plane voxels per block of ``grid_mm`` (1 for 0 or a grid finer than the voxels)."""
        return max(1, int(round(grid_mm / min(spacing[:2])))) if grid_mm > 0 else 1

    def _mask(self, image: np.ndarray, spacing: list[float]) -> np.ndarray:
        """The candidate mask (H, W, D) of a CT volume windowed to [0, 1]: lungs segmented on the ``segmentation_mm``
        grid (only that grid is taken back to HU), their envelope and margin on the ``envelope_mm`` grid, brought back
        to the full grid."""
        seg = self._stride(self.segmentation_mm, spacing)
        coarse = [spacing[0] * seg, spacing[1] * seg, spacing[2]]
        hu = self.a_min + image[::seg, ::seg] * np.float32(self.a_max - self.a_min)  # (h, w, D), float32
        lungs = lung_mask(hu, coarse)  # on the segmentation grid
        lung_ml = float(lungs.sum()) * float(np.prod(coarse)) / 1000.0
        if lung_ml < self.min_lung_ml:
            if self.empty_means_all:
                logger.info("no plausible lung found (%.0f ml): the candidate mask keeps everything", lung_ml)
                return np.ones(image.shape, dtype=bool)
            return _repeat_inplane(lungs, seg, image.shape)
        block = max(1, self._stride(self.envelope_mm, coarse))  # segmentation voxels per envelope block
        blocks = _pool_any_inplane(lungs, block)
        grid = [coarse[0] * block, coarse[1] * block]
        envelope = lung_envelope(blocks, min_area=max(3, int(round(20.0 / (block * seg) ** 2))))
        # the margin in whole blocks: rounded up when the envelope is coarse, so the mask only grows
        rounding = np.ceil if block * seg > 1 else np.round
        radius = [max(int(rounding(self.margin_mm / s)), 0) for s in grid]
        if max(radius) > 0:
            yy, xx = np.ogrid[-radius[0] : radius[0] + 1, -radius[1] : radius[1] + 1]
            structure = ((yy / max(radius[0], 1)) ** 2 + (xx / max(radius[1], 1)) ** 2 <= 1.0)[..., None]
            envelope = ndimage.binary_dilation(envelope, structure=structure)
        return _repeat_inplane(envelope, block * seg, image.shape)


class LungCandidateMaskd(MapTransform):
    """Dictionary wrapper of :py:class:`LungCandidateMask`: reads ``keys`` (the image), writes ``mask_key``.

    Args:
        keys: the image key (one key).
        mask_key: where the mask is stored. Defaults to ``"lung_mask"``.
        a_min, a_max, margin_mm, empty_means_all, segmentation_mm, envelope_mm: see :py:class:`LungCandidateMask`.
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
        segmentation_mm: float = 2.0,
        envelope_mm: float = 4.0,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.mask_key = mask_key
        self.masker = LungCandidateMask(
            a_min, a_max, margin_mm, empty_means_all, segmentation_mm=segmentation_mm, envelope_mm=envelope_mm
        )

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[self.mask_key] = self.masker(d[key])
        return d
