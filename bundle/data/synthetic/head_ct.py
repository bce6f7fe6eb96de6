"""The head CT of Debian's ``invesalius-examples`` (``Cranium.inv3``): reading the InVesalius 3 project, its RAS
geometry and the brain-parenchyma mask used to place synthetic brain lesions (``docs/data.md``, "The head CT").
:py:func:`bundle.data.synthetic.hosts.load_host` serves it as the ``cranium`` host.
"""

from __future__ import annotations

import functools
import os
import plistlib
import tarfile
import zlib
from pathlib import Path

import numpy as np
from scipy import ndimage

__all__ = ["CRANIUM_PATH", "CRANIUM_ROI", "cranium", "cranium_brain_mask", "read_inv3"]

CRANIUM_PATH = Path("/usr/share/doc/invesalius-examples/examples/Cranium.inv3")
# Real right frontal hypodensity under a skull defect of the Cranium CT, found by looking at the slices (about
# 56-86): an ellipsoid covering it, in the (H, W, D) = (x, y, z) grid of the whole scan.
CRANIUM_ROI = {"center_voxel": (93.0, 172.0, 72.0), "radii_voxel": (30.0, 32.0, 18.0)}


def _spacing(affine: np.ndarray) -> tuple[float, float, float]:
    return tuple(float(v) for v in np.linalg.norm(np.asarray(affine)[:3, :3], axis=0))  # type: ignore[return-value]


def read_inv3(path: str | os.PathLike) -> tuple[np.ndarray, dict]:
    """Read the volume of an InVesalius 3 project (``.inv3``: a gzip tar holding ``main.plist`` and ``matrix.dat``).

    Args:
        path: the ``.inv3`` file.

    Returns:
        ``(matrix, plist)``: the raw volume as stored, shape (z, y, x) from ``plist["matrix"]["shape"]``, and the
        parsed ``main.plist``.

    Raises:
        FileNotFoundError: when ``path`` does not exist (the message says which package ships it).
        ValueError: naming the file, when it is not a readable gzip tar (e.g. truncated), lacks ``main.plist`` or
            ``matrix.dat``, has a plist without ``matrix``/``spacing``, or a ``matrix.dat`` whose size differs
            from the plist's shape and dtype.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"head CT file {path} does not exist; install it: apt-get install -y invesalius-examples."
        )
    members: dict[str, bytes] = {}
    try:
        with tarfile.open(path, "r:gz") as tar:
            for member in tar:
                name = member.name.rsplit("/", 1)[-1]
                if name in ("main.plist", "matrix.dat") and member.isfile():
                    members[name] = tar.extractfile(member).read()  # type: ignore[union-attr]
    except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
        raise ValueError(f"{path} is not a readable InVesalius .inv3 file (gzip tar): {e}.") from e
    for name in ("main.plist", "matrix.dat"):
        if name not in members:
            raise ValueError(f"{path} has no {name} member; it is not an InVesalius 3 project.")
    try:
        plist = plistlib.loads(members["main.plist"])
        dtype, shape = np.dtype(plist["matrix"]["dtype"]), tuple(int(n) for n in plist["matrix"]["shape"])
        spacing = [float(x) for x in plist["spacing"]]
    except (plistlib.InvalidFileException, KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{path}: main.plist is unreadable or lacks matrix dtype/shape and spacing: {e!r}.") from e
    if len(shape) != 3 or len(spacing) != 3:
        raise ValueError(f"{path}: main.plist must give a 3-D shape and 3 spacings, got {shape} and {spacing}.")
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(members["matrix.dat"]) != expected:
        raise ValueError(
            f"{path}: matrix.dat holds {len(members['matrix.dat'])} bytes, main.plist says {shape} {dtype} "
            f"= {expected} bytes."
        )
    return np.frombuffer(members["matrix.dat"], dtype=dtype).reshape(shape), plist


def _load_cranium(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """The head CT as (H, W, D) = (x, y, z) in HU and its RAS affine.

    ``main.plist`` holds no origin or direction cosines (only ``orientation: 1``, InVesalius' axial flag), so the
    axes come from the anatomy, seen on slices: z grows to the vertex (S), y grows to the face (A), and x is
    taken to grow to the patient's left as DICOM columns do (anatomy cannot tell left from right here). The
    origin is put at the volume's center.
    """
    matrix, plist = read_inv3(path)
    spacing = [float(x) for x in plist["spacing"]]  # (x, y, z) in mm
    volume = np.asarray(matrix, dtype=np.float32).transpose(2, 1, 0)  # (z, y, x) -> (x, y, z)
    affine = np.diag([-spacing[0], spacing[1], spacing[2], 1.0])
    affine[:3, 3] = -affine[:3, :3] @ ((np.asarray(volume.shape) - 1) / 2.0)
    return volume, affine


@functools.lru_cache(maxsize=1)
def _cranium_cached(path: str, mtime_ns: int, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Whole head CT, affine and brain mask, computed once per file version (the mask takes tens of seconds)."""
    volume, affine = _load_cranium(path)
    brain = cranium_brain_mask(volume, _spacing(affine))
    for a in (volume, brain):
        a.setflags(write=False)  # shared by every caller: read-only
    return volume, affine, brain


def cranium(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The whole head CT (H, W, D) in HU, its RAS affine and its brain mask, read-only and cached per file version.

    Raises:
        FileNotFoundError, ValueError: see :py:func:`read_inv3`.
    """
    path = Path(path)
    if not path.is_file():  # read_inv3 words the error
        return _cranium_cached.__wrapped__(str(path), 0, 0)
    st = path.stat()
    return _cranium_cached(str(path.resolve()), st.st_mtime_ns, st.st_size)


def cranium_brain_mask(
    volume: np.ndarray, spacing: tuple[float, float, float], bone_hu: float = 200.0, margin_mm: float = 4.0
) -> np.ndarray:
    """Brain parenchyma of a head CT, kept ``margin_mm`` away from bone, for lesion placement.

    Slice by slice, the convex hull of the skull (largest component above ``bone_hu``; a hull rather than a hole
    fill because a skull defect opens the ring) bounds the inside; there, soft tissue of 15-60 HU after a 1 mm
    Gaussian smoothing (parenchyma, not CSF nor fat) at least ``margin_mm`` from bone, opened in-plane, and its
    largest 3-D component is the brain.

    Args:
        volume: head CT (H, W, D) in HU, axial slices along D.
        spacing: voxel size in mm along (H, W, D).
        bone_hu: bone threshold in HU. Defaults to 200.
        margin_mm: minimum distance from bone. Defaults to 4.

    Returns:
        bool (H, W, D); empty when no skull is found.
    """
    from skimage.morphology import convex_hull_image

    bone = volume > bone_hu
    labels, n = ndimage.label(bone)
    if n == 0:
        return np.zeros(volume.shape, dtype=bool)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    skull = labels == int(np.argmax(sizes))  # drops the head rest and other loose bright objects
    inside = np.zeros(volume.shape, dtype=bool)
    for k in np.flatnonzero(skull.sum(axis=(0, 1)) > 20):
        inside[:, :, k] = convex_hull_image(skull[:, :, k])
    smooth = ndimage.gaussian_filter(volume.astype(np.float32), sigma=[1.0 / s for s in spacing])
    tissue = inside & (smooth >= 15.0) & (smooth <= 60.0)
    tissue &= ndimage.distance_transform_edt(~bone, sampling=spacing) >= margin_mm
    tissue = ndimage.binary_opening(tissue, structure=np.ones((3, 3, 1), dtype=bool))
    labels, n = ndimage.label(tissue)
    if n == 0:
        return tissue
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == int(np.argmax(sizes))
