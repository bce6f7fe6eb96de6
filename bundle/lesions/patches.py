"""Multi-scale image patches around lesion candidates, the input of the CNN false-positive-reduction stage
(:py:mod:`bundle.engines.candidate_classifier`).

Two-stage lung nodule detectors (Setio et al., IEEE TMI 2016; Dou et al., IEEE TBME 2017) classify each candidate
from patches of a few sizes around it, so that the classifier sees the candidate itself and the anatomy around it (a
vessel that goes on, the chest wall, the mediastinum). Here every patch has the same shape in voxels; scale ``k``
covers ``k`` times the field of view of scale 1, averaged down by ``k`` (block mean), so one array holds them all as
channels.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

__all__ = ["PATCH_SHAPE", "PATCH_SCALES", "candidate_patches"]

PATCH_SHAPE: tuple[int, int, int] = (32, 32, 16)
"""Voxels of every patch on the preprocessed 1 x 1 x 2.5 mm grid: 32 x 32 x 40 mm at scale 1."""
PATCH_SCALES: tuple[int, ...] = (1, 2)
"""Field-of-view factors: 32 x 32 x 40 mm around the candidate, and 64 x 64 x 80 mm averaged down by 2."""


def _crop_padded(volume: np.ndarray, centre: np.ndarray, shape: np.ndarray, fill: float) -> np.ndarray:
    """The box of ``shape`` voxels whose centre is the voxel nearest ``centre`` (for even sizes, the box runs from
    ``index - shape // 2`` to ``index + shape // 2 - 1``), padded with ``fill`` where it leaves the volume."""
    index = np.round(centre).astype(int)
    lo = index - shape // 2
    hi = lo + shape
    src_lo = np.maximum(lo, 0)
    src_hi = np.minimum(hi, volume.shape)
    out = np.full(tuple(shape), fill, dtype=np.float32)
    if np.any(src_hi <= src_lo):
        return out
    dst_lo = src_lo - lo
    dst_hi = dst_lo + (src_hi - src_lo)
    out[tuple(slice(a, b) for a, b in zip(dst_lo, dst_hi))] = volume[tuple(slice(a, b) for a, b in zip(src_lo, src_hi))]
    return out


def candidate_patches(
    image: np.ndarray | torch.Tensor,
    centres_voxel: Sequence[Sequence[float]] | np.ndarray,
    shape: Sequence[int] = PATCH_SHAPE,
    scales: Sequence[int] = PATCH_SCALES,
    fill: float = 0.0,
) -> np.ndarray:
    """
    One multi-scale patch per candidate centre.

    Args:
        image: the preprocessed image (H, W, D) (a leading channel axis of size 1 is dropped), e.g. windowed to
            [0, 1].
        centres_voxel: (N, 3) fractional voxel indices of the candidates' centres (``center_voxel`` of
            :py:func:`bundle.lesions.find.find_lesions`).
        shape: voxels of each patch, every entry even. Default :py:data:`PATCH_SHAPE`.
        scales: positive integer field-of-view factors, one channel each. Default :py:data:`PATCH_SCALES`.
        fill: the value outside the image (0 is air in the [-1000, 400] HU window). Default 0.

    Returns:
        float32 array (N, len(scales), *shape).

    Raises:
        ValueError: when the image is not 3-D, the centres are not (N, 3), a size is odd or not positive, or a scale
            is not a positive int.
    """
    img = np.asarray(torch.as_tensor(image).detach().cpu(), dtype=np.float32)
    img = img[0] if img.ndim == 4 and img.shape[0] == 1 else img
    if img.ndim != 3:
        raise ValueError(f"image must be 3-D (H, W, D), got shape {img.shape}.")
    size = np.asarray(shape, dtype=int)
    if size.shape != (3,) or np.any(size <= 0) or np.any(size % 2):
        raise ValueError(f"shape must be 3 positive even sizes, got shape={tuple(shape)}.")
    if not scales or any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 1 for s in scales):
        raise ValueError(f"scales must be positive ints, got scales={tuple(scales)}.")
    centres = np.asarray(centres_voxel, dtype=np.float64).reshape(-1, 3) if len(centres_voxel) else np.zeros((0, 3))
    out = np.empty((len(centres), len(scales), *size), dtype=np.float32)
    for n, centre in enumerate(centres):
        for c, k in enumerate(scales):
            crop = _crop_padded(img, centre, size * k, fill)
            if k > 1:  # block mean: (k*s) -> s along every axis
                crop = crop.reshape(size[0], k, size[1], k, size[2], k).mean(axis=(1, 3, 5))
            out[n, c] = crop
    return out
