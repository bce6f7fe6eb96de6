"""Checks that an image read from disk is one the bundle can process, each failing with one line that names the
file and the problem.

:class:`bundle.io.readers.LargestSeriesITKReader` runs them on every file or DICOM folder it reads:

- :func:`check_nifti_file`: a NIfTI file is complete (ITK fills a truncated file with zeros without an error), has
  no zero-size dimension (ITK silently reads a 0 as 1) and a plausible voxel spacing (ITK silently reads a zero
  ``pixdim`` as 1 mm and a negative one as its absolute value);
- :func:`check_slice_positions`: a DICOM series has no duplicate slice position and no missing slice;
- :func:`check_image` (:func:`check_itk_image` for an ITK image): the image read has one channel, no zero-size
  dimension, three spatial axes of at least ``min_size`` voxels each (a one-voxel or one-slice image, or a 2-D one,
  cannot hold a 3-D lesion), a voxel spacing in ``[min_spacing_mm, max_spacing_mm]``, a physical extent of at most
  ``max_extent_mm`` per axis (a spacing of 1e6 mm would make the resampling step allocate tens of GB), and at least
  one finite voxel (NaN/Inf voxels are counted and logged; the preprocessing replaces them);
- :class:`CheckGeometryd`: an image and its label share one voxel grid (a training or evaluation data list whose
  label does not match its image).

Example::

    reader = LargestSeriesITKReader(max_spacing_mm=50.0)  # the checks run inside read()
"""

from __future__ import annotations

import logging
import math
import zlib
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pydicom
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform

__all__ = [
    "DEFAULT_MIN_SPACING_MM",
    "DEFAULT_MAX_SPACING_MM",
    "DEFAULT_MAX_EXTENT_MM",
    "DEFAULT_MIN_SIZE",
    "check_nifti_file",
    "check_slice_positions",
    "check_image",
    "check_itk_image",
    "CheckGeometryd",
]

logger = logging.getLogger(__name__)

DEFAULT_MIN_SPACING_MM = 1e-3
"""Smallest voxel spacing accepted (mm): below it a file's spacing is a unit or header error."""
DEFAULT_MAX_SPACING_MM = 100.0
"""Largest voxel spacing accepted (mm): CT and MRI slices are at most about 10 mm apart."""
DEFAULT_MAX_EXTENT_MM = 3000.0
"""Largest physical extent accepted per axis (mm): a whole-body scan is about 2 m long."""
DEFAULT_MIN_SIZE = 3
"""Fewest voxels accepted along each of the three spatial axes: fewer cannot hold a lesion (its centre and a voxel on
either side)."""


def _spacing_problem(spacing: Sequence[float], min_mm: float, max_mm: float) -> str:
    """Empty string when every spacing is finite and in ``[min_mm, max_mm]``, else what is wrong."""
    bad = [float(s) for s in spacing if not (math.isfinite(s) and min_mm <= s <= max_mm)]
    if not bad:
        return ""
    return f"voxel spacing {tuple(round(float(s), 6) for s in spacing)} mm is outside [{min_mm:g}, {max_mm:g}] mm"


def _data_chunks(path: Path) -> Any:
    """The bytes of a file in 1 MiB chunks, decompressed for ``.gz`` (CRC checked); ValueError when the gzip
    stream is corrupt or ends early."""
    gz = path.name.lower().endswith(".gz")
    decompressor = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        with open(path, "rb") as stream:
            while chunk := stream.read(1 << 20):
                if not gz:
                    yield chunk
                    continue
                yield decompressor.decompress(chunk)
                while decompressor.eof and decompressor.unused_data:  # concatenated gzip members
                    rest = decompressor.unused_data
                    decompressor = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
                    yield decompressor.decompress(rest)
    except zlib.error as e:
        raise ValueError(f"NIfTI file {str(path)!r} is corrupt (gzip error: {e}).") from e
    if gz and not decompressor.eof:
        raise ValueError(f"NIfTI file {str(path)!r} is truncated (the gzip stream ends early).")


def _scan_nifti_data(path: Path, offset: int, dtype: np.dtype) -> tuple[int, int]:
    """``(bytes, non-finite voxels)`` of a NIfTI file's data, streamed (nothing of full size is kept)."""
    size, n_bad, rest = 0, 0, b""
    floating = np.issubdtype(dtype, np.floating)
    for chunk in _data_chunks(path):
        size += len(chunk)
        if not floating:
            continue
        start = max(0, offset - (size - len(chunk)))  # skip the header bytes
        data = rest + chunk[start:]
        usable = len(data) - len(data) % dtype.itemsize
        n_bad += int(np.count_nonzero(~np.isfinite(np.frombuffer(data[:usable], dtype))))
        rest = data[usable:]
    return size, n_bad


def _raw_nifti_header(path: Path) -> Any:
    """The NIfTI header as stored (nibabel's ``nib.load`` silently 'fixes' zero and negative ``pixdim``)."""
    image = nib.load(str(path))
    with nib.openers.ImageOpener(str(path)) as stream:
        return type(image.header).from_fileobj(stream, check=False)


def check_nifti_file(
    path: Path | str,
    min_spacing_mm: float = DEFAULT_MIN_SPACING_MM,
    max_spacing_mm: float = DEFAULT_MAX_SPACING_MM,
    allow_nonfinite: bool = False,
) -> None:
    """
    Check a NIfTI file before ITK reads it: readable header, no zero-size dimension, plausible spacing, complete,
    no NaN/Inf voxel (ITK's NIfTI reader turns them into 0 without a word, i.e. 0 HU of soft tissue in CT).

    The spacing is the one the file declares: the ``sform`` column norms when ``sform_code > 0``, else ``pixdim``
    (which the standard requires to be positive). A ``.gz`` file is decompressed once, chunk by chunk, to check
    its length and CRC and to count non-finite voxels.

    Args:
        path: the ``.nii`` / ``.nii.gz`` file.
        min_spacing_mm: smallest accepted voxel spacing. Defaults to 1e-3 mm.
        max_spacing_mm: largest accepted voxel spacing. Defaults to 100 mm.
        allow_nonfinite: only log NaN/Inf voxels instead of raising. Defaults to False.

    Raises:
        ValueError: when the header is unreadable, a dimension is 0, the spacing is not finite or outside
            ``[min_spacing_mm, max_spacing_mm]``, the gzip stream is corrupt, the file is shorter than its
            header says, or voxels are NaN/Inf (unless ``allow_nonfinite``). The message names the file.
    """
    path = Path(path)
    try:
        header = _raw_nifti_header(path)
        shape = tuple(int(s) for s in header.get_data_shape())
        expected = int(header.get_data_offset()) + int(np.prod(shape)) * header.get_data_dtype().itemsize
    except Exception as e:  # nibabel raises ImageFileError, HeaderDataError, OSError, EOFError, ...
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"NIfTI file {str(path)!r} has an unreadable header: {first}") from None
    if 0 in shape:
        raise ValueError(f"NIfTI file {str(path)!r} has a zero-size dimension: shape {shape}.")
    n_spatial = min(3, len(shape))
    if int(header["sform_code"]) > 0:
        spacing = np.linalg.norm(np.asarray(header.get_sform(), np.float64)[:3, :n_spatial], axis=0)
    else:
        spacing = np.asarray(header["pixdim"][1 : 1 + n_spatial], np.float64)
    problem = _spacing_problem(spacing.tolist(), min_spacing_mm, max_spacing_mm)
    if problem:
        raise ValueError(f"NIfTI file {str(path)!r} has an implausible header: {problem}.")
    size, n_bad = _scan_nifti_data(path, int(header.get_data_offset()), header.get_data_dtype())
    if size < expected:
        raise ValueError(f"NIfTI file {str(path)!r} is truncated: {size} bytes of image data, header needs {expected}.")
    n_voxels = int(np.prod(shape))
    if n_bad and not allow_nonfinite:
        raise ValueError(
            f"NIfTI file {str(path)!r} has {n_bad} NaN/Inf voxels of {n_voxels} (ITK would read them as 0); "
            "pass allow_nonfinite=True to read it anyway."
        )
    if n_bad:
        logger.warning("NIfTI file %s: %d NaN/Inf voxels of %d, read as 0 by ITK", path, n_bad, n_voxels)


def _pixel_data_length(pixels: object) -> int | None:
    """Byte length of a PixelData element: a deferred ``RawDataElement`` knows it without reading the pixels, a
    ``DataElement`` (pydicom 3 converts some on access) has its value in memory; None when unknown."""
    if pixels is None:
        return None
    length = getattr(pixels, "length", None)
    if length is not None:
        return int(length)
    value = getattr(pixels, "value", None)
    return len(value) if isinstance(value, (bytes, bytearray)) else None


def _slice_position(file: str, normal: np.ndarray | None, ds: Any = None) -> tuple[float, np.ndarray | None]:
    """Position of a slice along the series normal (from the first slice's orientation) and that normal; ``ds`` is
    the file's header when already read with deferred pixel data."""
    if ds is None:
        ds = pydicom.dcmread(file, defer_size=256, force=True)  # pixel data left on disk, its length is known
    pixels = ds.get_item("PixelData") if "PixelData" in ds else None
    length = _pixel_data_length(pixels)
    uncompressed = not getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None) or (
        not ds.file_meta.TransferSyntaxUID.is_compressed
    )
    if length is not None and uncompressed and length != 0xFFFFFFFF:
        needed = (
            int(ds.Rows) * int(ds.Columns) * int(getattr(ds, "SamplesPerPixel", 1))
            * int(getattr(ds, "NumberOfFrames", 1) or 1) * int(ds.BitsAllocated) // 8
        )  # fmt: skip
        if length < needed:
            raise ValueError(
                f"DICOM file {file!r} is truncated: {length} bytes of pixel data, its header needs {needed}."
            )
    position = getattr(ds, "ImagePositionPatient", None)
    if position is None:
        return math.nan, normal
    if normal is None:
        orientation = np.asarray(getattr(ds, "ImageOrientationPatient", [1, 0, 0, 0, 1, 0]), np.float64)
        normal = np.cross(orientation[:3], orientation[3:])
    return float(np.dot(np.asarray(position, np.float64), normal)), normal


def check_slice_positions(
    files: Sequence[str], folder: str, tolerance: float = 0.25, datasets: Sequence[Any] | None = None
) -> None:
    """
    Check that the slices of a DICOM series (sorted by position, as ITK's GDCM scanner returns them) are evenly
    spaced: no two share a position and none is missing.

    Slices without ``ImagePositionPatient`` are not checked (ITK then sorts by instance number). Each file's
    uncompressed pixel data must be as long as its header says (GDCM reads a short one without an error).

    Args:
        files: the series' files in position order.
        folder: the series folder, for the message.
        tolerance: a gap may differ from the median gap by this fraction. Defaults to 0.25.
        datasets: the files' headers, read with deferred pixel data (``pydicom.dcmread(..., defer_size=...)``), to
            save reading them again. Defaults to None (read here).

    Raises:
        ValueError: when two slices share a position (duplicate slice), a gap is larger than ``1 + tolerance``
            times the median gap (missing slices), or a file's pixel data is short; the message names the folder
            or file.
    """
    normal: np.ndarray | None = None
    positions = []
    for file, ds in zip(files, datasets if datasets is not None else [None] * len(files)):
        position, normal = _slice_position(file, normal, ds)
        positions.append(position)
    if len(files) < 3:
        return
    z = np.asarray(positions)
    if not np.isfinite(z).all():
        return
    order = np.argsort(z, kind="stable")
    z, names = z[order], [Path(files[i]).name for i in order]
    gaps = np.diff(z)
    median = float(np.median(gaps))
    same = np.flatnonzero(gaps <= max(1e-3, 1e-3 * abs(median)))
    if same.size:
        i = int(same[0])
        raise ValueError(
            f"DICOM folder {folder!r} has duplicate slices: {names[i]} and {names[i + 1]} share position "
            f"{z[i]:.3f} mm ({same.size} duplicate(s))."
        )
    wide = np.flatnonzero(gaps > (1.0 + tolerance) * median)
    if wide.size:
        i = int(wide[0])
        missing = int(round(gaps[i] / median)) - 1
        raise ValueError(
            f"DICOM folder {folder!r} has missing slices: a {gaps[i]:.3f} mm gap between {names[i]} and "
            f"{names[i + 1]} where slices are {median:.3f} mm apart (about {missing} slice(s) missing)."
        )


def _count_nonfinite(array: np.ndarray) -> int:
    """Number of NaN/Inf voxels, counted slab by slab (no full-size temporary)."""
    if not np.issubdtype(array.dtype, np.floating):
        return 0
    flat = array.reshape(array.shape[0], -1) if array.ndim > 1 else array.reshape(1, -1)
    return int(sum(int(np.count_nonzero(~np.isfinite(slab))) for slab in flat))


def _check_spatial_size(size: tuple[int, ...], n_dims: int, source: str, min_size: int | None) -> None:
    """Raise ValueError when an image of ``n_dims`` dimensions and ``size`` is 2-D or has an axis of the first three
    shorter than ``min_size`` voxels (nothing when ``min_size`` is None)."""
    if min_size is None:
        return
    if n_dims < 3:
        raise ValueError(f"image {source!r} is {n_dims}-D (size {size}); a 3-D volume is needed.")
    short = [i for i, n in enumerate(size[:3]) if n < min_size]
    if short:
        axes = ("axis " if len(short) == 1 else "axes ") + ", ".join(str(i + 1) for i in short)
        raise ValueError(
            f"image {source!r} is too small to hold a lesion: size {size[:3]} has fewer than {min_size} voxels "
            f"along {axes}."
        )


def check_image(
    size: Sequence[int],
    spacing: Sequence[float],
    n_dims: int,
    components: int,
    voxels: np.ndarray,
    source: str,
    max_channels: int | None = 1,
    min_spacing_mm: float = DEFAULT_MIN_SPACING_MM,
    max_spacing_mm: float = DEFAULT_MAX_SPACING_MM,
    max_extent_mm: float = DEFAULT_MAX_EXTENT_MM,
    min_size: int | None = DEFAULT_MIN_SIZE,
) -> None:
    """
    Check an image just read: channels, size, spacing, extent and finite voxels.

    A 4-D image (time points or channels along the 4th axis) counts its 4th size as channels, times the pixel's
    components (RGB, vector). Images with some NaN/Inf voxels pass with a warning (the preprocessing replaces
    them); an image with no finite voxel fails.

    Args:
        size: the image size in ITK's order (x, y, z[, t]).
        spacing: its voxel spacing (the first three are checked).
        n_dims: its number of dimensions.
        components: components per voxel.
        voxels: its voxels, any order.
        source: the file or folder it was read from, for the message.
        max_channels: most channels accepted; None for any. Defaults to 1.
        min_spacing_mm: smallest accepted spacing. Defaults to 1e-3 mm.
        max_spacing_mm: largest accepted spacing of the first three axes. Defaults to 100 mm.
        max_extent_mm: largest accepted size x spacing of the first three axes. Defaults to 3000 mm.
        min_size: fewest voxels accepted along each of the three spatial axes; a 2-D image is refused too. None
            accepts any size (and 2-D images). Defaults to 3.

    Raises:
        ValueError: naming ``source`` and the problem.
    """
    size = tuple(int(n) for n in size)
    spacing = tuple(float(v) for v in spacing)[:3]
    channels = int(components) * int(np.prod(size[3:], dtype=np.int64))
    if max_channels is not None and channels > max_channels:
        raise ValueError(
            f"image {source!r} has {channels} channels or time points (size {size}, "
            f"{components} component(s) per voxel); expected at most {max_channels}."
        )
    if 0 in size:
        raise ValueError(f"image {source!r} has a zero-size dimension: size {size}.")
    _check_spatial_size(size, int(n_dims), source, min_size)
    problem = _spacing_problem(spacing, min_spacing_mm, max_spacing_mm)
    if problem:
        raise ValueError(f"image {source!r} has an implausible geometry: {problem}.")
    extent = [n * v for n, v in zip(size[:3], spacing)]
    if max(extent) > max_extent_mm:
        raise ValueError(
            f"image {source!r} has an implausible geometry: extent {tuple(round(e, 1) for e in extent)} mm exceeds "
            f"{max_extent_mm:g} mm (size {size[:3]}, spacing {spacing} mm)."
        )
    n_bad = _count_nonfinite(voxels)
    if n_bad and n_bad == voxels.size:
        raise ValueError(f"image {source!r} has no finite voxel (all {voxels.size} voxels are NaN or Inf).")
    if n_bad:
        logger.warning("image %s: %d of %d voxels are NaN or Inf (the preprocessing replaces them)", source, n_bad,
                       voxels.size)  # fmt: skip


def check_itk_image(image: Any, source: str, **limits: Any) -> None:
    """
    :func:`check_image` for an ``itk.Image`` / ``itk.VectorImage``.

    Args:
        image: the ITK image.
        source: the file or folder it was read from, for the message.
        limits: ``max_channels``, ``min_spacing_mm``, ``max_spacing_mm``, ``max_extent_mm``, ``min_size`` of
            :func:`check_image`.

    Raises:
        ValueError: naming ``source`` and the problem.
    """
    import itk  # local: keeps this module importable for the checks that do not need ITK

    size = tuple(int(n) for n in image.GetLargestPossibleRegion().GetSize())
    components = int(image.GetNumberOfComponentsPerPixel())
    check_image(
        size, tuple(image.GetSpacing()), int(image.GetImageDimension()), components, itk.array_view_from_image(image),
        source, **limits,
    )  # fmt: skip


def _source(value: Any) -> str:
    """The file a loaded MetaTensor came from, else its type."""
    if isinstance(value, MetaTensor):
        return str(value.meta.get("filename_or_obj", "") or "an in-memory image")
    return type(value).__name__


class CheckGeometryd(MapTransform):
    """
    Check that the images under ``keys`` share one voxel grid (spatial shape and affine) with the first key's.

    Put it right after ``LoadImaged`` + ``EnsureChannelFirstd``, before any resampling: a label whose geometry
    does not match its image would otherwise be resampled on its own and silently misaligned, or fail deep in the
    cropping with a message that names neither file.

    Args:
        keys: the keys to compare, the reference first, e.g. ``["image", "label"]``.
        atol_mm: largest accepted difference of affine entries, in mm. Defaults to 1e-3.
        allow_missing_keys: skip absent keys. Defaults to False.

    Raises:
        ValueError: from ``__call__``, naming both files, their spatial shapes or the largest affine difference.
    """

    def __init__(self, keys: KeysCollection, atol_mm: float = 1e-3, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        if not (math.isfinite(atol_mm) and atol_mm >= 0):
            raise ValueError(f"atol_mm must be a finite number >= 0, got atol_mm={atol_mm!r}.")
        self.atol_mm = atol_mm

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        keys = list(self.key_iterator(d))
        if len(keys) < 2:
            return d
        ref = d[keys[0]]
        for key in keys[1:]:
            other = d[key]
            if tuple(ref.shape[1:]) != tuple(other.shape[1:]):
                raise ValueError(
                    f"{key} {_source(other)!r} does not match {keys[0]} {_source(ref)!r}: spatial shape "
                    f"{tuple(other.shape[1:])} vs {tuple(ref.shape[1:])}."
                )
            if isinstance(ref, MetaTensor) and isinstance(other, MetaTensor):
                diff = float(np.abs(np.asarray(ref.affine, np.float64) - np.asarray(other.affine, np.float64)).max())
                if diff > self.atol_mm:
                    raise ValueError(
                        f"{key} {_source(other)!r} does not match {keys[0]} {_source(ref)!r}: affines differ by "
                        f"up to {diff:.4g} mm."
                    )
        return d
