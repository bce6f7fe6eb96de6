"""Lesion / no-lesion axial slices from a synthetic-lesion CT data set, as a class-folder tree of PNG files.

The lesion-synthesis data (``data/synth_ct/datalist.json``, written by ``scripts/make_dataset.py``) holds 3D
NIfTI images and lesion label maps, split by host: ``training`` entries come from one host (the right half of
the chest CT), ``validation`` entries from another (the left half). :func:`build_slice_dataset` keeps that split
(``training`` -> ``train/``, ``validation`` -> ``test/``) and writes, per case, a balanced sample of axial slices:

- the slice is windowed like the CT preprocessing (HU -1000..400 -> [0, 1]) and stored as 8-bit grey PNG
  (0..255, about 5.5 HU per step), rows and columns as in the volume's DICOM order, at full resolution
  (the classifier's ``Resized`` brings it to the network input);
- its class is ``with_lesion`` when the slice holds at least ``min_lesion_voxels`` label voxels, else
  ``no_lesion`` (sorted folder names, so ``no_lesion`` = 0 and ``with_lesion`` = 1);
- every case contributes the same number of slices of each class (``min(#positive, #negative,
  max_per_class)``, drawn with a seeded generator), so both splits are balanced.

``slices.json`` in the output folder lists every slice written (split, case, slice index, class, lesion voxels,
whether a real, non-synthetic lesion crosses it) and the settings. The class-folder tree is an ordinary
classification data set: ``--dataset_dir <out>/train`` works with ``configs/classification/train.json``,
with the fixed window kept by overriding the intensity step (see :data:`WINDOW_OVERRIDE`).
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

import nibabel as nib
import numpy as np
from monai.config import PathLike
from PIL import Image

from bundle.io.atomic import atomic_write_bytes, atomic_write_text
from bundle.io.writers import safe_case_name

__all__ = [
    "CLASS_NAMES",
    "HU_WINDOW",
    "WINDOW_OVERRIDE",
    "window_to_uint8",
    "load_case_volumes",
    "balanced_slice_indices",
    "build_slice_dataset",
    "ensure_slice_dataset",
    "slice_datalist",
]

logger = logging.getLogger(__name__)

CLASS_NAMES: tuple[str, ...] = ("no_lesion", "with_lesion")  # sorted: index 1 is the positive class
HU_WINDOW: tuple[float, float] = (-1000.0, 400.0)
WINDOW_OVERRIDE: Mapping[str, Any] = MappingProxyType({
    # replaces the per-image min-max step (ScaleIntensityd) of configs/classification/train.json: the PNG grey
    # levels already are the HU window, so they are mapped linearly 0..255 -> 0..1 for every image alike
    "preprocessing_base#3": {"_target_": "ScaleIntensityRanged", "keys": "image", "a_min": 0.0, "a_max": 255.0,
                             "b_min": 0.0, "b_max": 1.0, "clip": True},
})
MANIFEST = "slices.json"


def window_to_uint8(hu: np.ndarray, window: Sequence[float] = HU_WINDOW) -> np.ndarray:
    """
    Clip HU to ``window`` and map it linearly to 0..255 (uint8, rounded).

    Raises:
        ValueError: when ``window`` is not an increasing pair.
    """
    lo, hi = float(window[0]), float(window[1])
    if not hi > lo:
        raise ValueError(f"window must be an increasing (low, high) pair, got window={tuple(window)}.")
    scaled = (np.clip(np.asarray(hu, dtype=np.float32), lo, hi) - lo) / (hi - lo)
    return np.round(scaled * 255.0).astype(np.uint8)


def _axial_axis(affine: np.ndarray, path: PathLike) -> int:
    """Array axis closest to the world z (superior-inferior) axis."""
    codes = nib.aff2axcodes(affine)
    for axis, code in enumerate(codes):
        if code in ("S", "I"):
            return axis
    raise ValueError(f"{path}: no array axis runs superior-inferior (orientation {''.join(map(str, codes))}).")


def load_case_volumes(image_path: PathLike, label_path: PathLike) -> tuple[np.ndarray, np.ndarray]:
    """
    Image (HU) and label of one case as (H, W, D) arrays with the axial axis last.

    Raises:
        ValueError: when a file cannot be read, is not 3D, or image and label differ in shape.
    """
    arrays = []
    for path in (image_path, label_path):
        try:
            img = nib.load(str(path))
            data = np.asarray(img.dataobj)
        except Exception as err:  # nibabel raises many types for unreadable files
            raise ValueError(f"{path}: cannot be read as NIfTI ({type(err).__name__}: {err}).") from err
        if data.ndim != 3:
            raise ValueError(f"{path}: expected a 3D volume, got shape {data.shape}.")
        arrays.append(np.moveaxis(data, _axial_axis(img.affine, path), -1))
    image, label = arrays
    if image.shape != label.shape:
        raise ValueError(f"{label_path}: label shape {label.shape} differs from image shape {image.shape}.")
    return image.astype(np.float32), label


def balanced_slice_indices(
    lesion_voxels: Sequence[int], max_per_class: int, rng: np.random.Generator, min_lesion_voxels: int = 1
) -> tuple[list[int], list[int]]:
    """
    Equal numbers of positive (``>= min_lesion_voxels``) and negative (no lesion voxel) slice indices.

    Slices with 1..``min_lesion_voxels - 1`` lesion voxels are ambiguous and left out.

    Args:
        lesion_voxels: lesion voxel count per slice.
        max_per_class: the most slices of each class.
        rng: numpy Generator for the draw.
        min_lesion_voxels: voxels that make a slice positive (>= 1). Defaults to 1.

    Returns:
        ``(positive, negative)`` sorted slice indices, of equal length ``min(#pos, #neg, max_per_class)``.

    Raises:
        ValueError: when ``max_per_class`` or ``min_lesion_voxels`` is < 1.
    """
    if max_per_class < 1 or min_lesion_voxels < 1:
        raise ValueError(
            f"max_per_class and min_lesion_voxels must be >= 1, got {max_per_class} and {min_lesion_voxels}."
        )
    counts = np.asarray(lesion_voxels)
    pos, neg = np.flatnonzero(counts >= min_lesion_voxels), np.flatnonzero(counts == 0)
    k = min(pos.size, neg.size, int(max_per_class))
    pick = lambda idx: sorted(int(i) for i in rng.choice(idx, size=k, replace=False)) if k else []  # noqa: E731
    return pick(pos), pick(neg)


def _real_lesion_slices(entry: Mapping[str, Any]) -> set[int]:
    """Slice indices inside the box of a non-synthetic (real) lesion of a datalist entry."""
    out: set[int] = set()
    for lesion in entry.get("lesions", []):
        if lesion.get("synthetic", True) is False and "box_voxel" in lesion:
            (lo, hi) = lesion["box_voxel"]
            out.update(range(int(lo[2]), int(hi[2]) + 1))
    return out


def _png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def build_slice_dataset(
    datalist_json: PathLike,
    output_dir: PathLike,
    max_per_class: int = 8,
    min_lesion_voxels: int = 1,
    window: Sequence[float] = HU_WINDOW,
    seed: int = 0,
) -> dict[str, Any]:
    """
    Write the balanced lesion / no-lesion slice set of a synthesis datalist (see the module docstring).

    Args:
        datalist_json: ``datalist.json`` with ``training`` and ``validation`` entries (``image``, ``label``
            relative to its folder, ``case``, optional ``lesions``).
        output_dir: destination; ``train/<class>/``, ``test/<class>/`` and ``slices.json`` are written there.
        max_per_class: the most slices of each class per case. Defaults to 8.
        min_lesion_voxels: label voxels that make a slice positive. Defaults to 1.
        window: HU window mapped to 0..255. Defaults to (-1000, 400).
        seed: seed of the slice draw. Defaults to 0.

    Returns:
        the manifest written to ``slices.json``: ``{"settings", "counts" ({split: {class: n}}), "slices"}``.

    Raises:
        ValueError: when the datalist is unreadable, lacks a split, or a case's files are unreadable.
    """
    datalist_json = Path(datalist_json)
    try:
        datalist = json.loads(datalist_json.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{datalist_json}: cannot be read as a JSON datalist ({err}).") from err
    for key in ("training", "validation"):
        if not isinstance(datalist.get(key), list) or not datalist[key]:
            raise ValueError(f"{datalist_json}: needs a non-empty {key!r} list of cases.")
    root, out = datalist_json.parent, Path(output_dir)
    rng = np.random.default_rng(seed)
    records: list[dict[str, Any]] = []
    for split, key in (("train", "training"), ("test", "validation")):
        for entry in datalist[key]:
            image, label = load_case_volumes(root / entry["image"], root / entry["label"])
            voxels = (label > 0).sum(axis=(0, 1)).tolist()
            pos, neg = balanced_slice_indices(voxels, max_per_class, rng, min_lesion_voxels)
            case = safe_case_name(str(entry.get("case", Path(entry["image"]).name.split(".")[0])))
            real = _real_lesion_slices(entry)
            for cls, indices in ((1, pos), (0, neg)):
                for z in indices:
                    path = out / split / CLASS_NAMES[cls] / f"{case}_z{z:03d}.png"
                    atomic_write_bytes(path, _png_bytes(window_to_uint8(image[:, :, z].T, window)))
                    records.append({"split": split, "case": case, "slice": z, "label": cls,
                                    "class_name": CLASS_NAMES[cls], "lesion_voxels": int(voxels[z]),
                                    "real_lesion": z in real, "path": str(path.relative_to(out))})
    counts = {s: {c: sum(r["split"] == s and r["class_name"] == c for r in records) for c in CLASS_NAMES}
              for s in ("train", "test")}
    manifest = {
        "settings": {"datalist": str(datalist_json), "max_per_class": max_per_class, "window_hu": list(window),
                     "min_lesion_voxels": min_lesion_voxels, "seed": seed, "class_names": list(CLASS_NAMES)},
        "counts": counts,
        "slices": records,
    }
    atomic_write_text(out / MANIFEST, json.dumps(manifest, indent=1))
    logger.info("slice data set in %s: %s", out, counts)
    return manifest



def ensure_slice_dataset(
    datalist_json: PathLike, output_dir: PathLike, max_per_class: int = 8, seed: int = 0, rebuild: bool = False
) -> bool:
    """
    Build the slice set with :func:`build_slice_dataset` when ``output_dir`` holds none (no ``slices.json``) or
    ``rebuild`` is set; returns whether it was built.

    Raises:
        ValueError: as :func:`build_slice_dataset`.
    """
    if rebuild or not (Path(output_dir) / MANIFEST).is_file():
        build_slice_dataset(datalist_json, output_dir, max_per_class=max_per_class, seed=seed)
        return True
    return False

def slice_datalist(dataset_dir: PathLike, split: str) -> list[dict[str, Any]]:
    """
    Datalist of one split of a :func:`build_slice_dataset` folder, with the case of every slice.

    Returns:
        ``[{"image": path, "path": path, "label": 0 | 1, "class_name", "name", "case", "slice",
        "real_lesion"}, ...]`` in manifest order.

    Raises:
        ValueError: when ``slices.json`` is missing or ``split`` has no slice.
    """
    root = Path(dataset_dir)
    manifest_path = root / MANIFEST
    if not manifest_path.is_file():
        raise ValueError(f"{manifest_path}: not found; build the set with build_slice_dataset first.")
    records = [r for r in json.loads(manifest_path.read_text())["slices"] if r["split"] == split]
    if not records:
        raise ValueError(f"{manifest_path}: no slice in split {split!r} (splits are 'train' and 'test').")
    return [
        {"image": str(root / r["path"]), "path": str(root / r["path"]), "label": int(r["label"]),
         "class_name": r["class_name"], "name": Path(r["path"]).stem, "case": r["case"], "slice": int(r["slice"]),
         "real_lesion": bool(r["real_lesion"])}
        for r in records
    ]
