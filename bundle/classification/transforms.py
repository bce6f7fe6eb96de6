"""Reading 2-D classification images and the transform chain that prepares them.

Images are read by MONAI ``LoadImaged`` with ``PILReader`` and a ``PydicomReader`` that recognises DICOM by
content (:py:func:`image_2d_readers`), brought to a fixed channel count (:py:class:`EnsureChannelCount`: grayscale
replicated to 3 channels for ImageNet networks, RGB to luma for 1-channel networks), scaled to [0, 1] and resized
(:py:func:`classification_transforms`).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection, NdarrayOrTensor, PathLike
from monai.data import ImageReader, PILReader, PydicomReader
from monai.transforms import (
    Compose,
    EnsureTyped,
    LoadImaged,
    MapTransform,
    RandFlipd,
    RandRotated,
    Resized,
    ScaleIntensityd,
    ScaleIntensityRanged,
    Transform,
)
from monai.utils import TransformBackends, ensure_tuple

from bundle.io.cases import is_dicom_file

__all__ = [
    "Dicom2DReader",
    "pil_to_array_mode",
    "image_2d_readers",
    "EnsureChannelCount",
    "EnsureChannelCountd",
    "classification_transforms",
]

_LUMA = (0.299, 0.587, 0.114)  # ITU-R 601-2, as PIL's convert("L")


class Dicom2DReader(PydicomReader):
    """
    MONAI ``PydicomReader`` that recognises DICOM files by content (any suffix) and marks the last axis of
    colour (RGB) pixel data as the channel axis. Defaults to ``swap_ij=False`` so rows stay on axis 1.
    """

    def __init__(self, swap_ij: bool = False, **kwargs: Any) -> None:
        super().__init__(swap_ij=swap_ij, **kwargs)

    def verify_suffix(self, filename: Sequence[PathLike] | PathLike) -> bool:
        """True when every file is DICOM by content (see :func:`bundle.io.readers.is_dicom_file`)."""
        return all(Path(f).is_file() and is_dicom_file(f) for f in ensure_tuple(filename))

    def get_data(self, data: Any) -> tuple[np.ndarray, dict]:
        """Pixel array and metadata; (H, W, 3) colour pixel data gets ``original_channel_dim=-1``."""
        array, meta = super().get_data(data)
        samples = int(getattr(data, "SamplesPerPixel", 1) or 1) if not isinstance(data, list) else 1
        if samples > 1 and array.ndim == 3 and array.shape[-1] == samples:
            meta["original_channel_dim"] = -1
            meta["spatial_shape"] = np.asarray(array.shape[:2])
        return array, meta


def pil_to_array_mode(image: Any) -> Any:
    """PIL converter for ``PILReader``: palette, alpha, CMYK and other colour modes to RGB; ``"1"``/``"LA"`` to L."""
    if image.mode in ("1", "LA", "La"):
        return image.convert("L")
    if image.mode in ("P", "PA", "RGBA", "RGBa", "CMYK", "YCbCr", "LAB", "HSV"):
        return image.convert("RGB")
    return image


def image_2d_readers() -> list[ImageReader]:
    """Readers for ``LoadImaged(reader=...)``: PNG/JPEG/BMP by ``PILReader`` (rows on axis 1), DICOM by content."""
    return [Dicom2DReader(), PILReader(converter=pil_to_array_mode, reverse_indexing=False)]


class EnsureChannelCount(Transform):
    """
    Bring a channel-first 2D/3D image to ``num_channels`` channels: 1 -> n by replication, 3 or 4 (RGB[A]) -> 1 by
    ITU-R 601-2 luma, 4 -> 3 by dropping alpha; an image that already has ``num_channels`` is returned as is.

    Args:
        num_channels: 1 or 3.

    Raises:
        ValueError: when ``num_channels`` is not 1 or 3, or (at call time) the image's channel count cannot be
            converted.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, num_channels: int = 3) -> None:
        if num_channels not in (1, 3):
            raise ValueError(f"num_channels must be 1 or 3, got num_channels={num_channels!r}.")
        self.num_channels = num_channels

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        """
        Args:
            img: (C, H, W[, D]) with C in {1, 3, 4}.

        Returns:
            (num_channels, H, W[, D]), same type.
        """
        c = int(img.shape[0])
        if c == self.num_channels:
            return img
        if c == 1:
            reps = (self.num_channels,) + (1,) * (img.ndim - 1)
            return img.repeat(*reps) if isinstance(img, torch.Tensor) else np.tile(img, reps)
        if c in (3, 4) and self.num_channels == 3:
            return img[:3]
        if c in (3, 4) and self.num_channels == 1:
            shape = (3,) + (1,) * (img.ndim - 1)
            if isinstance(img, torch.Tensor):
                weights = torch.as_tensor(_LUMA, dtype=torch.float32, device=img.device).reshape(shape)
                return (img[:3].float() * weights).sum(0, keepdim=True)  # (1, H, W[, D])
            return (img[:3].astype(np.float32) * np.asarray(_LUMA, np.float32).reshape(shape)).sum(0, keepdims=True)
        raise ValueError(f"img must have 1, 3 or 4 channels to make {self.num_channels}, got shape {tuple(img.shape)}.")


class EnsureChannelCountd(MapTransform):
    """Dictionary-based wrapper of :py:class:`EnsureChannelCount`."""

    backend = EnsureChannelCount.backend

    def __init__(self, keys: KeysCollection, num_channels: int = 3, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.converter = EnsureChannelCount(num_channels)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.converter(d[key])
        return d


def classification_transforms(
    train: bool,
    spatial_size: Sequence[int] = (224, 224),
    in_channels: int = 3,
    rotate_degrees: float = 15.0,
    prob: float = 0.5,
    keys: KeysCollection = "image",
    intensity_range: Sequence[float] | None = None,
) -> Compose:
    """
    The seeds' recipe as MONAI transforms: load (PNG/JPEG/DICOM), channel count, resize, scale to [0, 1] and,
    for training, a random rotation and a random horizontal flip. ``configs/classification/train.json`` spells
    the same chain out in JSON.

    Args:
        train: add the random augmentations.
        spatial_size: output (H, W). Defaults to (224, 224).
        in_channels: output channels, 1 or 3. Defaults to 3.
        rotate_degrees: maximum absolute rotation. Defaults to 15.
        prob: probability of the rotation and of the flip. Defaults to 0.5.
        keys: image keys. Defaults to ``"image"``.
        intensity_range: ``(low, high)`` stored values mapped linearly to [0, 1] (clipped) for every image
            alike, e.g. ``(0, 255)`` for PNGs that already hold a CT window; None scales each image's own
            min..max to [0, 1] (the seeds' recipe). Defaults to None.

    Returns:
        a ``Compose`` for dict items ``{"image": path, "label": int, ...}``; the image becomes a float32
        (in_channels, H, W) tensor in [0, 1].
    """
    chain: list[Any] = [
        LoadImaged(keys, reader=image_2d_readers(), ensure_channel_first=True, image_only=True),
        EnsureChannelCountd(keys, num_channels=in_channels),
        Resized(keys, spatial_size=tuple(spatial_size), mode="area"),  # area: anti-aliased downsampling
        ScaleIntensityd(keys, minv=0.0, maxv=1.0) if intensity_range is None else ScaleIntensityRanged(
            keys, a_min=float(intensity_range[0]), a_max=float(intensity_range[1]), b_min=0.0, b_max=1.0, clip=True
        ),
    ]
    if train:
        chain += [
            RandRotated(keys, range_x=float(np.deg2rad(rotate_degrees)), prob=prob, padding_mode="zeros"),
            RandFlipd(keys, prob=prob, spatial_axis=1),  # axis 1 of (H, W): left-right
        ]
    chain.append(EnsureTyped(keys, dtype=torch.float32, track_meta=False))
    return Compose(chain)
