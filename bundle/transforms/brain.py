"""Brain MRI: a brain mask (skull stripping) and an intensity scale read inside it (issue #22).

A T1 head with its skull and scalp does not look like a skull-stripped template: min-max scaling over the whole
field of view puts the scalp's fat at 1 and the brain at half the range, and the scalp itself is tissue a brain-lesion
network has never seen. :class:`BrainMaskd` strips the skull with ``brainextractor`` (an MIT re-implementation of
FSL's BET, Smith 2002: a surface mesh grown from the head's centre of mass to the brain's edge; no trained weights);
:class:`MaskedScaleIntensityd` maps the brain's ``lower``/``upper`` intensity percentiles to 0/1 without clipping
(a lesion brighter than any normal tissue keeps its contrast) and sets everything outside the brain to 0, as in a
skull-stripped template.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Hashable, Mapping

import nibabel as nib
import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform

__all__ = ["brain_mask", "BrainMaskd", "MaskedScaleIntensityd"]


def brain_mask(volume: np.ndarray, spacing_mm: float = 1.0, iterations: int = 1000, bt: float = 0.5) -> np.ndarray:
    """The brain of a T1 head as a bool mask, by BET's surface deformation (``brainextractor``).

    Args:
        volume: (X, Y, Z) intensities of one head on an isotropic grid.
        spacing_mm: the grid's voxel size in mm (BET's sizes are in mm). Defaults to 1.
        iterations: surface deformation steps (BET's default 1000).
        bt: BET's fractional intensity threshold (0-1; smaller keeps more). Defaults to 0.5.

    Raises:
        ValueError: when ``volume`` is not 3-D or has no two distinct finite intensities.
        ImportError: when ``brainextractor`` is not installed.
    """
    volume = np.asarray(volume, dtype=np.float32)
    if volume.ndim != 3:
        raise ValueError(f"volume must be 3-D (X, Y, Z), got shape {volume.shape}.")
    finite = volume[np.isfinite(volume)]
    if finite.size == 0 or finite.min() == finite.max():
        raise ValueError("volume must hold at least two distinct finite intensities to find a brain.")
    try:  # imported here: numba and trimesh cost start-up time that CT inference must not pay
        from brainextractor import BrainExtractor
    except ImportError as err:
        raise ImportError(
            "brain masking needs brainextractor (requirements-data.txt, installed with --no-deps)."
        ) from err
    image = nib.Nifti1Image(np.nan_to_num(volume, nan=float(finite.min())), np.diag([spacing_mm] * 3 + [1.0]))
    with contextlib.redirect_stdout(io.StringIO()):  # brainextractor prints every iteration
        extractor = BrainExtractor(img=image, bt=bt)
        extractor.run(iterations=iterations)
        mask = extractor.compute_mask()
    return np.asarray(mask) > 0


class BrainMaskd(MapTransform):
    """Write the brain mask of ``keys``' image (first channel) as ``mask_key``, (1, X, Y, Z) uint8.

    The image must be on an isotropic grid (run it after resampling); an empty mask (BET failed) falls back to every
    voxel above the image's minimum, so a case is never silently blanked.

    Args:
        keys: the image key (one).
        mask_key: where the mask goes. Defaults to ``"brain_mask"``.
        bt: BET's fractional intensity threshold. Defaults to 0.5.
        iterations: surface deformation steps. Defaults to 1000.
        allow_missing_keys: don't raise when the image is missing.
    """

    def __init__(self, keys: KeysCollection, mask_key: str = "brain_mask", bt: float = 0.5, iterations: int = 1000,
                 allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        if len(self.keys) != 1:
            raise ValueError(f"BrainMaskd takes one image key, got keys={self.keys!r}.")
        self.mask_key, self.bt, self.iterations = mask_key, float(bt), int(iterations)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            image = d[key]
            array = np.asarray(image[0].detach().cpu().numpy() if isinstance(image, torch.Tensor) else image[0])
            spacing = np.asarray(image.pixdim[:3] if isinstance(image, MetaTensor) else np.ones(3), dtype=float)
            if not np.allclose(spacing, spacing[0], rtol=1e-3):
                shown = tuple(round(float(s), 3) for s in spacing)
                raise ValueError(f"BrainMaskd needs an isotropic grid, got spacing {shown} mm; resample first.")
            mask = brain_mask(array, float(spacing[0]), self.iterations, self.bt)
            if not mask.any():
                mask = array > array.min()
            out = torch.as_tensor(mask[None].astype(np.uint8))
            d[self.mask_key] = MetaTensor(out, meta=dict(image.meta)) if isinstance(image, MetaTensor) else out
        return d


class MaskedScaleIntensityd(MapTransform):
    """Map the ``lower``/``upper`` intensity percentiles inside ``mask_key`` to 0/1 (no clipping); 0 outside the mask.

    Args:
        keys: image keys.
        mask_key: the (1, X, Y, Z) mask, e.g. from :class:`BrainMaskd`.
        lower: percentile mapped to 0, in [0, 100). Defaults to 0.5.
        upper: percentile mapped to 1, in (lower, 100]. Defaults to 99.5.
        allow_missing_keys: don't raise when a key is missing.
    """

    def __init__(self, keys: KeysCollection, mask_key: str = "brain_mask", lower: float = 0.5, upper: float = 99.5,
                 allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        if not 0.0 <= lower < upper <= 100.0:
            raise ValueError(
                f"percentiles must satisfy 0 <= lower < upper <= 100, got lower={lower!r} upper={upper!r}."
            )
        self.mask_key, self.lower, self.upper = mask_key, float(lower), float(upper)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        inside = torch.as_tensor(d[self.mask_key])[0] > 0
        for key in self.key_iterator(d):
            image = d[key]
            if image.shape[1:] != inside.shape:
                raise ValueError(f"{key!r} has shape {tuple(image.shape[1:])}, its mask {tuple(inside.shape)}.")
            out = image.float().clone()
            for c in range(image.shape[0]):
                values = image[c][inside] if inside.any() else image[c]
                lo, hi = np.percentile(np.asarray(values.detach().cpu(), dtype=np.float32), [self.lower, self.upper])
                scaled = (image[c].float() - float(lo)) / max(float(hi - lo), 1e-6)
                out[c] = torch.where(inside, scaled, torch.zeros_like(scaled))
            d[key] = out
        return d

