"""Volumes read without ITK, in ITK's conventions: :class:`ArrayVolume`, and NIfTI files through nibabel.

ITK costs about 3 s and 250 MB the first time a process uses it. :class:`bundle.io.readers.LargestSeriesITKReader`
reads DICOM series with pydicom (:mod:`bundle.io.dicom_series`) and NIfTI files with nibabel (:func:`read_nifti`)
whenever the result is certainly what ITK would give, and hands everything else to ITK.

Example::

    from bundle.io.volumes import read_nifti

    volume = read_nifti("ct.nii.gz")  # ArrayVolume, or None when ITK should read the file
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import nibabel as nib
import numpy as np

__all__ = ["ArrayVolume", "read_nifti"]

logger = logging.getLogger(__name__)

_ORTHOGONAL_TOL = 1e-4  # largest |cosine| between two axes of an affine read as orthogonal
_FORM_TOL = 1e-4  # largest difference (mm) between a file's sform and qform read as the same
_SLAB = 16  # slices per copy in ArrayVolume.xyz_array (fastest measured of 1-32)


@dataclass
class ArrayVolume:
    """
    A 3-D image read without ITK, described as ITK describes the image it reads.

    Attributes:
        array: voxels in ITK's array order ``(z, y, x)``, whose transpose is MONAI's ``(x, y, z)``.
        spacing: ``(x, y, z)`` voxel spacing in mm, as ITK's ``GetSpacing()``.
        origin: the position of voxel 0 (LPS, mm), as ITK's ``GetOrigin()``.
        direction: 3 x 3 matrix of unit axis directions (LPS) as columns, as ITK's ``GetDirection()``.
    """

    array: np.ndarray
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: np.ndarray

    def xyz_array(self) -> np.ndarray:
        """:attr:`array` as MONAI's C-ordered ``(x, y, z)`` array, copied slab by slab (numpy's one-call transposing
        copy of a 512 x 512 x 600 volume takes about 3 s, the slabs under 1 s)."""
        zyx = self.array
        out = np.empty(zyx.shape[::-1], zyx.dtype)
        for z in range(0, zyx.shape[0], _SLAB):
            out[:, :, z : z + _SLAB] = zyx[z : z + _SLAB].T
        return out

    def lps_affine(self) -> np.ndarray:
        """The 4 x 4 voxel-to-LPS affine of MONAI's ``(x, y, z)`` array (the transpose of :attr:`array`)."""
        affine = np.eye(4)
        affine[:3, :3] = self.direction @ np.diag(self.spacing)
        affine[:3, 3] = self.origin
        return affine


def _nifti_affine(header: nib.Nifti1Header) -> np.ndarray | None:
    """The RAS affine ITK and nibabel both derive from ``header``, or None when they might differ: no qform or sform,
    a qform and an sform that disagree, or axes that are not orthogonal (ITK cannot represent a shear)."""
    sform_code, qform_code = int(header["sform_code"]), int(header["qform_code"])
    if sform_code <= 0 and qform_code <= 0:
        return None
    sform, qform = header.get_sform(), header.get_qform()
    if sform_code > 0 and qform_code > 0 and not np.allclose(sform, qform, atol=_FORM_TOL):
        return None
    affine = np.asarray(sform if sform_code > 0 else qform, np.float64)
    columns = affine[:3, :3]
    norms = np.linalg.norm(columns, axis=0)
    if not (np.all(np.isfinite(affine)) and np.all(norms > 0)):
        return None
    unit = columns / norms
    if np.abs(unit.T @ unit - np.eye(3)).max() > _ORTHOGONAL_TOL:
        return None
    return affine


def read_nifti(path: str | os.PathLike) -> ArrayVolume | None:
    """
    Read a 3-D NIfTI file with nibabel into the array and geometry ITK's NIfTI reader would give.

    Voxels keep the file's type when its ``scl_slope`` / ``scl_inter`` change nothing, else they are scaled to
    float32; NaN and Inf voxels become 0, as ITK reads them (:func:`bundle.io.checks.check_nifti_file` refuses such
    files unless told otherwise).

    Args:
        path: a ``.nii`` or ``.nii.gz`` file that :func:`bundle.io.checks.check_nifti_file` accepted.

    Returns:
        the volume; None when ITK should read the file: not 3-D, no qform or sform, a qform and an sform that
        disagree, or axes that are not orthogonal.
    """
    image = nib.load(str(path))
    if len(image.shape) != 3 or not isinstance(image.header, nib.Nifti1Header):
        return None
    affine = _nifti_affine(image.header)
    if affine is None:
        logger.debug("NIfTI file %s left to ITK: no unambiguous orthogonal qform/sform", path)
        return None
    slope, inter = image.dataobj.slope, image.dataobj.inter
    if slope in (0.0, 1.0) and inter == 0.0 or not (np.isfinite(slope) and np.isfinite(inter)):
        data = np.asarray(image.dataobj.get_unscaled())
    else:
        data = image.get_fdata(dtype=np.float32)
    if np.issubdtype(data.dtype, np.floating) and not np.isfinite(data.sum()):
        data = np.nan_to_num(data, nan=0.0, posinf=0.0, neginf=0.0, copy=False)
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    lps = np.diag([-1.0, -1.0, 1.0])
    return ArrayVolume(
        array=data.T,
        spacing=tuple(float(s) for s in spacing),
        origin=tuple(float(v) for v in lps @ affine[:3, 3]),
        direction=lps @ (affine[:3, :3] / spacing),
    )
