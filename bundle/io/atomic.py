"""The one atomic file writer of the bundle, and the guard that keeps outputs off the inputs.

Every file is written to a temporary file in its destination folder (keeping the real suffix, so that writers
choosing a format from the name still work), flushed to disk (fsync) and moved into place with ``os.replace``: a
crash never leaves a half-written file under its final name, and a destination that is, or lies inside, one of the
``protected`` input paths is refused.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import nibabel as nib
import numpy as np
from monai.config import NdarrayOrTensor, PathLike
from monai.utils import convert_to_numpy

__all__ = [
    "atomic_path", "atomic_save_nifti", "atomic_write_bytes", "atomic_write_text", "check_not_input", "is_within"
]


def is_within(path: Path, root: Path) -> bool:
    """Whether resolved ``path`` equals ``root`` or lies inside it."""
    return path == root or root in path.parents


def check_not_input(path: Path, protected: Sequence[PathLike]) -> Path:
    """Resolve ``path`` and refuse it when it is, or lies inside, one of the ``protected`` input paths."""
    target = path.expanduser().resolve()
    for p in protected:
        root = Path(p).expanduser().resolve()
        if is_within(target, root):
            raise ValueError(f"refusing to write over an input: destination {target} is or lies inside input {root}.")
    return target


@contextmanager
def atomic_path(path: PathLike, protected: Sequence[PathLike] = ()) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success fsync it and ``os.replace`` it onto ``path``."""
    target = check_not_input(Path(path), protected)
    target.parent.mkdir(parents=True, exist_ok=True)
    # keep the real suffix so that writers choosing a format from the name (nibabel: .nii.gz) still work
    fd, tmp_name = tempfile.mkstemp(
        dir=target.parent, prefix=f".{target.name}.", suffix=".tmp" + "".join(target.suffixes)
    )
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0o600; outputs are meant to be shared
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: PathLike, data: bytes, protected: Sequence[PathLike] = ()) -> Path:
    """
    Write ``data`` to ``path`` atomically (temporary file in the same folder, fsync, ``os.replace``).

    Args:
        path: destination; missing parent folders are created.
        data: the bytes to write.
        protected: input paths (files or folders) that must never be written over or into.

    Returns:
        the resolved destination path.

    Raises:
        ValueError: When ``path`` resolves to, or lies inside, a ``protected`` path.

    """
    with atomic_path(path, protected) as tmp:
        tmp.write_bytes(data)
    return Path(path).expanduser().resolve()


def atomic_write_text(path: PathLike, text: str, protected: Sequence[PathLike] = (), encoding: str = "utf-8") -> Path:
    """Write ``text`` atomically; see :py:func:`atomic_write_bytes`.

    Raises:
        ValueError: When ``path`` resolves to, or lies inside, a ``protected`` path.

    """
    return atomic_write_bytes(path, text.encode(encoding), protected)


def atomic_save_nifti(
    path: PathLike,
    array: NdarrayOrTensor,
    affine: NdarrayOrTensor,
    protected: Sequence[PathLike] = (),
    dtype: np.dtype | type | None = None,
) -> Path:
    """
    Save ``array`` as NIfTI (compressed when ``path`` ends in ``.gz``) atomically.

    Args:
        path: destination, ``.nii`` or ``.nii.gz``.
        array: image data of shape (spatial_1, spatial_2[, spatial_3]) in the voxel order nibabel uses.
        affine: voxel-to-world matrix (4, 4), RAS mm (for 2D data the (3, 3) affine is embedded).
        protected: input paths that must never be written over or into.
        dtype: on-disk data type; default keeps the array's.

    Raises:
        ValueError: When ``path`` is protected, does not end in ``.nii``/``.nii.gz``, or ``affine`` does not
            match the array's dimensions.

    """
    if not str(path).endswith((".nii", ".nii.gz")):
        raise ValueError(f"path must end in .nii or .nii.gz, got path={path}.")
    data = np.asarray(convert_to_numpy(array))
    data = data if dtype is None else data.astype(dtype)
    aff = np.asarray(convert_to_numpy(affine), dtype=np.float64)
    if aff.shape == (3, 3) and data.ndim == 2:
        aff = np.array([[*aff[0, :2], 0, aff[0, 2]], [*aff[1, :2], 0, aff[1, 2]], [0, 0, 1, 0], [0, 0, 0, 1]])
    if aff.shape != (4, 4):
        raise ValueError(f"affine must be (4, 4) (or (3, 3) for 2D data), got affine.shape={aff.shape}.")
    with atomic_path(path, protected) as tmp:
        nib.save(nib.Nifti1Image(data, aff), str(tmp))
    return Path(path).expanduser().resolve()


