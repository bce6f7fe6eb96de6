"""Tiny NIfTI fixtures for the converter tests: an image grid and cube-shaped lesion labels."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

AFFINE = np.array([[-0.8, 0, 0, 10.0], [0, -0.8, 0, 20.0], [0, 0, 2.0, -30.0], [0, 0, 0, 1]])
SHAPE = (16, 15, 9)


def save(path: Path, array: np.ndarray, affine: np.ndarray = AFFINE) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(array), affine), str(path))
    return str(path)


def blob_label(centers: list[tuple[int, int, int]], radius: int = 2, value: int = 1) -> np.ndarray:
    """Label (16, 15, 9) with one cube of side ``2 * radius + 1`` per center."""
    label = np.zeros(SHAPE, dtype=np.uint8)
    for c in centers:
        label[tuple(slice(max(x - radius, 0), x + radius + 1) for x in c)] = value
    return label
