"""Preprocessing and augmentation of the source paper as MONAI ``Compose`` factories, callable from configs.

Preprocessing order (the source paper's: smoothing, then normalization):

1. ``LoadImaged`` (:class:`bundle.io.readers.LargestSeriesITKReader`, ``image_only=False``), ``EnsureChannelFirstd``;
2. ``ReplaceNonFinited``: NaN/Inf voxels replaced before anything can spread them;
3. ``Orientationd`` (RAS) and ``Spacingd`` (:class:`bundle.transforms.resample.SeparableSpacingd`: MONAI's result,
   resampled one axis at a time when the scan is axis-aligned; bilinear image, nearest label): invertible, so the
   inference postprocessing can map predictions back with ``Invertd``;
4. ``BorderGaussianSmoothd`` with ``smooth_sigma`` (voxels of the resampled grid; MONAI's ``GaussianSmoothd`` pads
   with zeros, i.e. 0 HU, and is 20x slower on CPU);
5. windowing: CT clips to ``[a_min, a_max]`` HU, MRI to the ``[lower, upper]`` intensity percentiles;
6. min-max normalization to [0, 1] (a constant image becomes zeros);
7. ``EnsureTyped`` float32.

Label keys only go through loading, orientation and resampling, so inference (``label_keys=()``) and training
use the same factory.

Config example::

    "preprocessing": {
        "_target_": "bundle.transforms.ct_preprocessing",
        "keys": ["image"], "label_keys": ["label"], "pixdim": [0.8, 0.8, 2.5]
    }
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from monai.data import ImageReader
from monai.transforms import (
    ClipIntensityPercentilesd,
    Compose,
    EnsureChannelFirstd,
    EnsureTyped,
    LoadImaged,
    Orientationd,
    RandAffined,
    RandFlipd,
    RandGaussianNoised,
    ScaleIntensityd,
    ScaleIntensityRanged,
    ScaleIntensityRangePercentilesd,
)
from monai.utils import ensure_tuple, look_up_option

from bundle.io.readers import LargestSeriesITKReader, LoadVolumed
from bundle.transforms.brain import BrainMaskd, MaskedScaleIntensityd
from bundle.transforms.resample import SeparableSpacingd
from bundle.transforms.dictionary import BorderGaussianSmoothd, ReplaceNonFinited, WindowIntensityd

__all__ = ["ct_preprocessing", "mri_preprocessing", "train_augmentation"]

_CT_NORMALIZE = ("minmax", "window")


def _check_keys(keys: Sequence[str] | str, label_keys: Sequence[str] | str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Validate and return ``(keys, label_keys)`` as tuples."""
    keys_t, label_keys_t = tuple(ensure_tuple(keys)), tuple(ensure_tuple(label_keys))
    if not keys_t:
        raise ValueError(f"keys must name at least one image key, got keys={keys!r}.")
    if set(keys_t) & set(label_keys_t):
        raise ValueError(f"keys and label_keys must not overlap, got keys={keys!r} label_keys={label_keys!r}.")
    return keys_t, label_keys_t


def _spatial_steps(
    keys: tuple[str, ...],
    label_keys: tuple[str, ...],
    pixdim: Sequence[float] | None,
    axcodes: str | None,
    reader: ImageReader | str | type[ImageReader] | None,
    load: bool,
    replace_value: float | None,
    allow_missing_keys: bool,
) -> list:
    """Loading, non-finite replacement, orientation and resampling: the steps shared by CT and MRI."""
    all_keys = keys + label_keys
    if pixdim is not None:
        pixdim = tuple(float(p) for p in ensure_tuple(pixdim))
        if not pixdim or not all(math.isfinite(p) and p > 0 for p in pixdim):
            raise ValueError(f"pixdim must be positive spacings in mm or None, got pixdim={pixdim!r}.")
    steps: list = []
    if load:
        steps += [
            # LoadVolumed reads with the given reader only: a file it refuses (zero spacing, a DICOM series with a
            # gap) is an error, not read again by MONAI's fallback readers (docs/reliability.md)
            (LoadVolumed if reader is None or isinstance(reader, ImageReader) else LoadImaged)(
                all_keys,
                reader=LargestSeriesITKReader() if reader is None else reader,
                image_only=False,
                allow_missing_keys=allow_missing_keys,
            ),
            EnsureChannelFirstd(all_keys, allow_missing_keys=allow_missing_keys),
        ]
    steps.append(ReplaceNonFinited(keys, value=replace_value, channel_wise=True, allow_missing_keys=allow_missing_keys))
    if axcodes is not None:
        steps.append(Orientationd(all_keys, axcodes=axcodes, allow_missing_keys=allow_missing_keys))
    if pixdim is not None:
        steps.append(
            SeparableSpacingd(
                all_keys,
                pixdim=pixdim,
                mode=["bilinear"] * len(keys) + ["nearest"] * len(label_keys),
                dtype=np.float32,
                allow_missing_keys=allow_missing_keys,
            )
        )
    return steps


def _smoothing(keys: tuple[str, ...], smooth_sigma: float, allow_missing_keys: bool) -> list:
    """``BorderGaussianSmoothd`` with ``smooth_sigma`` voxels, or nothing for ``smooth_sigma=0``."""
    if not (isinstance(smooth_sigma, (int, float)) and math.isfinite(smooth_sigma) and smooth_sigma >= 0):
        raise ValueError(f"smooth_sigma must be a finite number >= 0, got smooth_sigma={smooth_sigma!r}.")
    if smooth_sigma == 0:
        return []
    return [BorderGaussianSmoothd(keys, sigma=float(smooth_sigma), allow_missing_keys=allow_missing_keys)]


def _final_types(keys: tuple[str, ...], label_keys: tuple[str, ...], allow_missing_keys: bool) -> list:
    """Float32 tensors (MetaTensors) for images and labels."""
    return [EnsureTyped(keys + label_keys, dtype=torch.float32, allow_missing_keys=allow_missing_keys)]


def ct_preprocessing(
    keys: Sequence[str] | str = ("image",),
    label_keys: Sequence[str] | str = (),
    pixdim: Sequence[float] | None = (0.8, 0.8, 2.5),
    a_min: float = -1000.0,
    a_max: float = 400.0,
    smooth_sigma: float = 1.0,
    normalize: str = "minmax",
    axcodes: str | None = "RAS",
    reader: ImageReader | str | type[ImageReader] | None = None,
    load: bool = True,
    allow_missing_keys: bool = False,
) -> Compose:
    """
    CT preprocessing of the source paper: resample, Gaussian smoothing, HU window, min-max to [0, 1].

    Steps: ``LoadImaged`` + ``EnsureChannelFirstd`` (if ``load``), ``ReplaceNonFinited`` (non-finite -> ``a_min``),
    ``Orientationd``, ``Spacingd`` (bilinear images, nearest labels; thick 5 mm and sub-millimetre slices alike),
    ``BorderGaussianSmoothd``, ``ScaleIntensityRanged`` (identity mapping with ``clip=True``: the HU window), then
    ``ScaleIntensityd`` to [0, 1] (``normalize="minmax"``, the paper's per-image min-max of the windowed image) or
    the fixed window mapping ``a_min -> 0``, ``a_max -> 1``, clipped (``normalize="window"``: ``WindowIntensityd``,
    MONAI's ``ScaleIntensityRanged`` to the bit in one allocation), and ``EnsureTyped`` float32.

    Args:
        keys: image keys. Defaults to ``("image",)``.
        label_keys: label keys, resampled with nearest interpolation and not changed in intensity. Defaults to ``()``.
        pixdim: output spacing in mm, (x, y, z) after ``axcodes``; None keeps the input grid.
            Defaults to ``(0.8, 0.8, 2.5)``.
        a_min: lower end of the HU window; also the value of NaN/Inf voxels. Defaults to -1000.
        a_max: upper end of the HU window. Defaults to 400.
        smooth_sigma: Gaussian sigma in voxels of the resampled grid; 0 turns smoothing off. Defaults to 1.0.
        normalize: ``"minmax"`` or ``"window"``, see above. Defaults to ``"minmax"``.
        axcodes: orientation for ``Orientationd``; None keeps the input orientation. Defaults to ``"RAS"``.
        reader: reader for ``LoadImaged``; None uses :class:`bundle.io.readers.LargestSeriesITKReader`.
        load: start with ``LoadImaged`` + ``EnsureChannelFirstd``; False for channel-first MetaTensors already in
            memory. Defaults to True.
        allow_missing_keys: passed to every step. Defaults to False.

    Returns:
        a ``Compose`` mapping ``{"image": path}`` to ``{"image": (1, X, Y, Z) float32 MetaTensor in [0, 1], ...}``.

    Raises:
        ValueError: when ``keys`` is empty or overlaps ``label_keys``, ``a_min >= a_max``, ``pixdim`` is not
            positive, ``smooth_sigma < 0`` or ``normalize`` is not a known mode.
    """
    keys_t, label_keys_t = _check_keys(keys, label_keys)
    if not (math.isfinite(a_min) and math.isfinite(a_max) and a_min < a_max):
        raise ValueError(f"a_min must be smaller than a_max (both finite), got a_min={a_min!r} a_max={a_max!r}.")
    normalize = look_up_option(normalize, _CT_NORMALIZE)
    steps = _spatial_steps(keys_t, label_keys_t, pixdim, axcodes, reader, load, float(a_min), allow_missing_keys)
    steps += _smoothing(keys_t, smooth_sigma, allow_missing_keys)
    if normalize == "minmax":
        steps += [
            ScaleIntensityRanged(
                keys_t,
                a_min=a_min,
                a_max=a_max,
                b_min=a_min,
                b_max=a_max,
                clip=True,
                allow_missing_keys=allow_missing_keys,
            ),
            ScaleIntensityd(keys_t, minv=0.0, maxv=1.0, allow_missing_keys=allow_missing_keys),
        ]
    else:
        steps.append(WindowIntensityd(keys_t, a_min=a_min, a_max=a_max, allow_missing_keys=allow_missing_keys))
    return Compose(steps + _final_types(keys_t, label_keys_t, allow_missing_keys))


def mri_preprocessing(
    keys: Sequence[str] | str = ("image",),
    label_keys: Sequence[str] | str = (),
    pixdim: Sequence[float] | None = (1.0, 1.0, 1.0),
    lower: float = 0.5,
    upper: float = 99.5,
    smooth_sigma: float = 1.0,
    channel_wise: bool = True,
    headroom: float = 0.0,
    brain_mask_key: str | None = None,
    axcodes: str | None = "RAS",
    reader: ImageReader | str | type[ImageReader] | None = None,
    load: bool = True,
    allow_missing_keys: bool = False,
) -> Compose:
    """
    MRI preprocessing of the source paper: resample, Gaussian smoothing, percentile clip, min-max to [0, 1].

    Steps: as :func:`ct_preprocessing`, with NaN/Inf replaced by the smallest finite value of each channel, and the
    HU window replaced by ``ClipIntensityPercentilesd(lower, upper)`` followed by ``ScaleIntensityd`` to [0, 1].

    Args:
        keys: image keys. Defaults to ``("image",)``.
        label_keys: label keys (nearest interpolation, intensity unchanged). Defaults to ``()``.
        pixdim: output spacing in mm; None keeps the input grid. Defaults to ``(1.0, 1.0, 1.0)``.
        lower: lower clipping percentile, in [0, 100). Defaults to 0.5.
        upper: upper clipping percentile, in (lower, 100]. Defaults to 99.5.
        smooth_sigma: Gaussian sigma in voxels of the resampled grid; 0 turns smoothing off. Defaults to 1.0.
        channel_wise: clip and normalize each channel (MRI sequence) separately. Defaults to True.
        headroom: room kept above the ``upper`` percentile, as a fraction of the percentile range: the range maps
            to ``[0, 1 / (1 + headroom)]`` (``ScaleIntensityRangePercentilesd``) and only what lies beyond
            ``headroom`` more is clipped at 1. With 0 (default) the ``upper`` percentile is clipped, as above;
            lesions brighter than the brightest normal tissue need room (e.g. 0.5). Must be >= 0.
        brain_mask_key: when given, the skull is stripped first: :class:`bundle.transforms.brain.BrainMaskd` writes
            the brain mask of the first image key there (after resampling; the grid must be isotropic), and the
            clip and scaling are replaced by :class:`~bundle.transforms.brain.MaskedScaleIntensityd`: the brain's
            ``lower``/``upper`` percentiles map to 0/1 without clipping, 0 outside the brain. ``headroom`` is then
            unused. Defaults to None (whole-image clip and scaling, as above).
        axcodes: orientation for ``Orientationd``; None keeps the input orientation. Defaults to ``"RAS"``.
        reader: reader for ``LoadImaged``; None uses :class:`bundle.io.readers.LargestSeriesITKReader`.
        load: start with ``LoadImaged`` + ``EnsureChannelFirstd``. Defaults to True.
        allow_missing_keys: passed to every step. Defaults to False.

    Returns:
        a ``Compose`` mapping ``{"image": path}`` to ``{"image": (C, X, Y, Z) float32 MetaTensor in [0, 1], ...}``.

    Raises:
        ValueError: when ``keys`` is empty or overlaps ``label_keys``, ``0 <= lower < upper <= 100`` does not hold,
            ``pixdim`` is not positive, ``smooth_sigma < 0`` or ``headroom < 0``.
    """
    keys_t, label_keys_t = _check_keys(keys, label_keys)
    if not (0.0 <= lower < upper <= 100.0):
        raise ValueError(f"percentiles must satisfy 0 <= lower < upper <= 100, got lower={lower!r} upper={upper!r}.")
    if not headroom >= 0.0:
        raise ValueError(f"headroom must be >= 0, got headroom={headroom!r}.")
    steps = _spatial_steps(keys_t, label_keys_t, pixdim, axcodes, reader, load, None, allow_missing_keys)
    if brain_mask_key is not None:
        steps += [BrainMaskd(keys_t[0], mask_key=brain_mask_key, allow_missing_keys=allow_missing_keys)]
        steps += _smoothing(keys_t, smooth_sigma, allow_missing_keys)
        steps += [MaskedScaleIntensityd(keys_t, mask_key=brain_mask_key, lower=lower, upper=upper,
                                        allow_missing_keys=allow_missing_keys)]
        return Compose(steps + _final_types(keys_t, label_keys_t, allow_missing_keys))
    steps += _smoothing(keys_t, smooth_sigma, allow_missing_keys)
    if headroom == 0.0:
        steps += [
            ClipIntensityPercentilesd(
                keys_t, lower=lower, upper=upper, channel_wise=channel_wise, allow_missing_keys=allow_missing_keys
            ),
            ScaleIntensityd(
                keys_t, minv=0.0, maxv=1.0, channel_wise=channel_wise, allow_missing_keys=allow_missing_keys
            ),
        ]
    else:
        steps += [
            ScaleIntensityRangePercentilesd(
                keys_t, lower=lower, upper=upper, b_min=0.0, b_max=1.0 / (1.0 + headroom), clip=False,
                channel_wise=channel_wise, allow_missing_keys=allow_missing_keys,
            ),
            ScaleIntensityRanged(  # identity on [0, 1], clipping outside it
                keys_t, a_min=0.0, a_max=1.0, b_min=0.0, b_max=1.0, clip=True, allow_missing_keys=allow_missing_keys
            ),
        ]
    return Compose(steps + _final_types(keys_t, label_keys_t, allow_missing_keys))


def train_augmentation(
    keys: Sequence[str] | str = ("image",),
    label_keys: Sequence[str] | str = (),
    prob: float = 0.5,
    rotate_deg: float = 15.0,
    rotate_axes: Sequence[int] | None = None,
    scale_range: Sequence[float] = (0.8, 1.2),
    noise_std: float = 0.05,
    flip_axes: Sequence[int] | None = None,
    spatial_dims: int = 3,
    padding_mode: str = "zeros",
    seed: int | None = None,
    allow_missing_keys: bool = False,
) -> Compose:
    """
    Training augmentation of the source paper: rotation, scaling, flips (image and label together) and noise.

    Steps: ``RandAffined`` (rotation in ``[-rotate_deg, rotate_deg]`` about each axis of ``rotate_axes``, scaling
    by a factor in ``scale_range`` per axis; images bilinear, labels nearest), one ``RandFlipd`` per axis of
    ``flip_axes``, and ``RandGaussianNoised`` on the images (std drawn from ``[0, noise_std]``). Every step fires
    with probability ``prob``. The spatial steps are invertible MONAI transforms.

    Args:
        keys: image keys. Defaults to ``("image",)``.
        label_keys: label keys, moved with the image by nearest interpolation, no noise. Defaults to ``()``.
        prob: probability of each step, in [0, 1]. Defaults to 0.5.
        rotate_deg: maximal rotation in degrees, >= 0. Defaults to 15.
        rotate_axes: spatial axes to rotate about (3-D: ``(2,)`` rotates in the axial plane of an RAS volume, the
            safe choice for thick-slice grids); None rotates about every axis (2-D: the one rotation).
            Defaults to None.
        scale_range: ``(min, max)`` scaling factor, ``0 < min <= max``. Defaults to ``(0.8, 1.2)``.
        noise_std: maximal standard deviation of the additive Gaussian noise (images are in [0, 1]); 0 turns noise
            off. Defaults to 0.05.
        flip_axes: spatial axes to flip at random, each independently; None flips along every axis.
            Defaults to None.
        spatial_dims: 2 or 3. Defaults to 3.
        padding_mode: ``RandAffined`` padding for voxels mapped from outside the image. Defaults to ``"zeros"``
            (the minimum of a [0, 1] normalized image).
        seed: seed for ``Compose.set_random_state``; None leaves MONAI's default generators. Defaults to None.
        allow_missing_keys: passed to every step. Defaults to False.

    Returns:
        a ``Compose`` of random transforms for channel-first dicts, shapes kept.

    Raises:
        ValueError: when ``keys`` is empty or overlaps ``label_keys``, ``prob`` is outside [0, 1], ``rotate_deg`` or
            ``noise_std`` is negative, ``scale_range`` is not ``0 < min <= max``, ``spatial_dims`` is not 2 or 3, or
            an axis is out of range.
    """
    keys_t, label_keys_t = _check_keys(keys, label_keys)
    all_keys = keys_t + label_keys_t
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got spatial_dims={spatial_dims!r}.")
    if not 0.0 <= prob <= 1.0:
        raise ValueError(f"prob must be in [0, 1], got prob={prob!r}.")
    if not (math.isfinite(rotate_deg) and rotate_deg >= 0):
        raise ValueError(f"rotate_deg must be a finite number >= 0, got rotate_deg={rotate_deg!r}.")
    if not (math.isfinite(noise_std) and noise_std >= 0):
        raise ValueError(f"noise_std must be a finite number >= 0, got noise_std={noise_std!r}.")
    scale_t = tuple(float(s) for s in ensure_tuple(scale_range))
    if len(scale_t) != 2 or not (0 < scale_t[0] <= scale_t[1] and math.isfinite(scale_t[1])):
        raise ValueError(f"scale_range must be (min, max) with 0 < min <= max, got scale_range={scale_range!r}.")
    n_rotations = 1 if spatial_dims == 2 else 3
    rot_axes = tuple(range(n_rotations)) if rotate_axes is None else tuple(ensure_tuple(rotate_axes))
    if any(not 0 <= a < n_rotations for a in rot_axes):
        raise ValueError(f"rotate_axes must be in [0, {n_rotations}), got rotate_axes={rotate_axes!r}.")
    flips = tuple(range(spatial_dims)) if flip_axes is None else tuple(ensure_tuple(flip_axes))
    if any(not 0 <= a < spatial_dims for a in flips):
        raise ValueError(f"flip_axes must be in [0, {spatial_dims}), got flip_axes={flip_axes!r}.")

    radians = math.radians(rotate_deg)
    rotate_range = [(-radians, radians) if a in rot_axes else (0.0, 0.0) for a in range(n_rotations)]
    # MONAI adds 1.0 to the sampled scale, so (0.8, 1.2) becomes (-0.2, 0.2)
    scale_offsets = [(scale_t[0] - 1.0, scale_t[1] - 1.0)] * spatial_dims
    steps: list[Any] = [
        RandAffined(
            all_keys,
            prob=prob,
            rotate_range=rotate_range,
            scale_range=scale_offsets,
            mode=["bilinear"] * len(keys_t) + ["nearest"] * len(label_keys_t),
            padding_mode=padding_mode,
            allow_missing_keys=allow_missing_keys,
        )
    ]
    steps += [RandFlipd(all_keys, prob=prob, spatial_axis=a, allow_missing_keys=allow_missing_keys) for a in flips]
    if noise_std > 0:
        steps.append(RandGaussianNoised(keys_t, prob=prob, std=noise_std, allow_missing_keys=allow_missing_keys))
    augment = Compose(steps)
    if seed is not None:
        augment.set_random_state(seed=seed)
    return augment
