"""DICOM series folders read with pydicom, the way ITK's GDCM series reader reads them, without loading ITK.

Loading ITK's GDCM module costs about 3 s and 250 MB the first time a process uses it, more than reading a whole
chest CT. :class:`bundle.io.readers.LargestSeriesITKReader` therefore scans and reads series folders here:

- :func:`scan_folder`: every file of a folder (not recursive) that pydicom reads and that has pixel data, its
  header read once (pixel data left on disk);
- :func:`series_identifier`: ITK's ``GDCMSeriesFileNames`` identifier of a slice (``SeriesInstanceUID`` plus, with
  series details, series number, sequence name, slice thickness, rows, columns and series date, as GDCM's
  ``SerieHelper`` concatenates them), so ``series_name`` means the same with either scanner;
- :func:`group_series` and :func:`sort_slices`: the series of a folder, each sorted as GDCM sorts it (by position
  along the first slice's normal; by instance number, then file name, when positions are missing or repeat);
- :func:`read_series`: the slices stacked, each rescaled by its own slope and intercept, with ITK's geometry
  (origin: the first slice's position; slice spacing: the distance from the first to the second slice), or None
  when the series needs ITK (compressed pixels pydicom cannot decode, multi-frame or colour slices, no geometry).

Example::

    from bundle.io.dicom_series import group_series, read_series, scan_folder

    slices = scan_folder("/data/ct/series_1")
    series = group_series(slices, use_series_details=True)  # identifier -> position-sorted slices
    volume = read_series(max(series.values(), key=len))  # ArrayVolume: (slices, rows, columns) array, LPS geometry
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.tag import Tag

from bundle.io.volumes import ArrayVolume

__all__ = [
    "DicomSlice",
    "scan_folder",
    "series_identifier",
    "group_series",
    "sort_slices",
    "read_series",
]

logger = logging.getLogger(__name__)

try:
    from pydicom.pixels import pixel_array  # pydicom >= 3: decodes from the file, caches nothing
except ImportError:  # pydicom 2, which MONAI Label 0.8.5 pins

    def pixel_array(path: str) -> np.ndarray:
        """The decoded pixels of the DICOM file ``path``."""
        return pydicom.dcmread(path).pixel_array

# GDCM SerieHelper's default series details (series number, sequence name, slice thickness, rows, columns), then the
# series date that MONAI's ITKReader and this bundle add as a restriction; the order is the identifier's
_DETAIL_TAGS = (Tag(0x0020, 0x0011), Tag(0x0018, 0x0024), Tag(0x0018, 0x0050), Tag(0x0028, 0x0010),
                Tag(0x0028, 0x0011), Tag(0x0008, 0x0021))  # fmt: skip
_BINARY_TAGS = (Tag(0x0028, 0x0010), Tag(0x0028, 0x0011))  # US: GDCM writes the number in decimal


@dataclass
class DicomSlice:
    """One DICOM file with pixel data: its path and its header (pixel data deferred: read from disk on access)."""

    path: str
    dataset: Any


def scan_folder(folder: str | os.PathLike) -> list[DicomSlice]:
    """
    The files of ``folder`` (not recursive) that pydicom reads as DICOM and that have pixel data.

    As ITK's GDCM scanner, files that are not DICOM or have no pixel data are left out without a message.

    Args:
        folder: a folder.

    Returns:
        the slices in file-name order.
    """
    slices = []
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if not entry.is_file():
            continue
        try:
            dataset = pydicom.dcmread(entry.path, defer_size=256, force=True)
        except Exception:  # pydicom raises many types for files that are not DICOM
            continue
        if "PixelData" in dataset and "Rows" in dataset and "Columns" in dataset:
            slices.append(DicomSlice(entry.path, dataset))
    return slices


def _text(dataset: Any, tag: Tag) -> str:
    """A header value as GDCM's ``GetEntryValue`` gives it: the stored text, or the number of a binary value."""
    if tag not in dataset:
        return ""
    if tag in _BINARY_TAGS:
        return str(int(dataset[tag].value))
    value = dataset.get_item(tag).value  # a raw element's stored bytes, before pydicom converts them
    if isinstance(value, (bytes, bytearray)):
        return value.decode("ascii", "ignore")
    original = getattr(value, "original_string", None)
    return str(original if original is not None else ("" if value is None else value))


def series_identifier(dataset: Any, use_series_details: bool = True) -> str:
    """
    ITK's ``GDCMSeriesFileNames`` identifier of the series a slice belongs to.

    GDCM's ``SerieHelper::CreateUniqueSeriesIdentifier``: the ``SeriesInstanceUID``, then (with series details) a
    dot and the values of series number, sequence name, slice thickness, rows, columns and series date run
    together, keeping only letters, digits and dots.

    Args:
        dataset: the slice's header.
        use_series_details: append the series details. Defaults to True.

    Returns:
        the identifier, e.g. ``"1.2.3.25.0051251220070404"`` (series number 2, slice thickness 5.00, 512 x 512,
        series date 20070404).
    """
    uid = _text(dataset, Tag(0x0020, 0x000E))
    identifier = uid
    if use_series_details:
        for tag in _DETAIL_TAGS:
            value = _text(dataset, tag)
            if identifier == uid and value:
                identifier += "."
            identifier += value
    return "".join(c for c in identifier if c == "." or (c.isascii() and c.isalnum()))


def _positions(slices: Sequence[DicomSlice]) -> np.ndarray | None:
    """Each slice's position along the first slice's normal, or None when a slice lacks position or orientation."""
    try:
        orientation = np.asarray(slices[0].dataset.ImageOrientationPatient, np.float64)
        normal = np.cross(orientation[:3], orientation[3:])
        return np.asarray([np.dot(np.asarray(s.dataset.ImagePositionPatient, np.float64), normal) for s in slices])
    except (AttributeError, TypeError, ValueError, IndexError):
        return None


def sort_slices(slices: Sequence[DicomSlice]) -> list[DicomSlice]:
    """
    The slices of one series in the order GDCM's ``SerieHelper::OrderFileList`` gives them.

    By increasing position along the first slice's normal when every slice has a position and no two share one;
    else by instance number when all slices have one and they are not all equal; else by file name.

    Args:
        slices: the slices of one series.

    Returns:
        the sorted slices.
    """
    slices = list(slices)
    positions = _positions(slices) if slices else None
    if positions is not None and np.isfinite(positions).all() and len(np.unique(positions)) == len(slices):
        return [slices[i] for i in np.argsort(positions, kind="stable")]
    try:
        numbers = [int(s.dataset.InstanceNumber) for s in slices]
    except (AttributeError, TypeError, ValueError):
        numbers = []
    if numbers and min(numbers) != max(numbers):
        return [slices[i] for i in np.argsort(numbers, kind="stable")]
    return sorted(slices, key=lambda s: s.path)


def group_series(slices: Sequence[DicomSlice], use_series_details: bool = True) -> dict[str, list[DicomSlice]]:
    """
    The series of a folder's slices, as ITK's ``GDCMSeriesFileNames`` groups them.

    Args:
        slices: from :func:`scan_folder`.
        use_series_details: tell series apart by their details too (see :func:`series_identifier`).

    Returns:
        identifier -> the series' slices sorted by :func:`sort_slices`.
    """
    groups: dict[str, list[DicomSlice]] = {}
    for s in slices:
        groups.setdefault(series_identifier(s.dataset, use_series_details), []).append(s)
    return {uid: sort_slices(group) for uid, group in groups.items()}


def _fast_path_problem(slices: Sequence[DicomSlice]) -> str:
    """Why :func:`read_series` leaves a series to ITK ("" when it does not)."""
    if len(slices) < 2:
        return "a single file"
    for s in slices:
        ds = s.dataset
        if int(getattr(ds, "NumberOfFrames", 1) or 1) != 1 or int(getattr(ds, "SamplesPerPixel", 1)) != 1:
            return f"{Path(s.path).name} is multi-frame or colour"
        if not all(k in ds for k in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing")):
            return f"{Path(s.path).name} has no position, orientation or pixel spacing"
        if (int(ds.Rows), int(ds.Columns)) != (int(slices[0].dataset.Rows), int(slices[0].dataset.Columns)):
            return "slices of different sizes"
    return ""


def _rescale(dataset: Any) -> tuple[float, float]:
    """A slice's rescale slope and intercept (1 and 0 when absent, as GDCM)."""
    slope = float(getattr(dataset, "RescaleSlope", 1.0) or 1.0)
    return slope, float(getattr(dataset, "RescaleIntercept", 0.0) or 0.0)


def read_series(slices: Sequence[DicomSlice]) -> ArrayVolume | None:
    """
    Stack a position-sorted series into a volume with ITK's geometry, or None when ITK must read it.

    Each slice is rescaled by its own ``RescaleSlope`` and ``RescaleIntercept``. The volume is int16 when every
    slope and intercept is a whole number and the values fit, else float32; no slice is held twice in memory. The
    geometry is ITK's ``ImageSeriesReader``'s: origin at the first slice's position, axes along the first slice's
    row and column cosines and their cross product, in-plane spacing from its pixel spacing, slice spacing the distance
    from the first to the second slice's position (with a gantry tilt that distance is longer than the step along the
    normal, and the affine ignores the shear, as ITK's does).

    Args:
        slices: one series sorted by :func:`sort_slices`.

    Returns:
        the volume; None for a single file, multi-frame or colour slices, slices of different sizes, slices without
        position, orientation or pixel spacing, or pixel data pydicom cannot decode (a compressed transfer syntax
        without its decoder): ITK (GDCM) reads those.
    """
    problem = _fast_path_problem(slices)
    if problem:
        logger.debug("series of %s left to ITK: %s", slices[0].path if slices else "?", problem)
        return None
    first = slices[0].dataset
    rows, cols = int(first.Rows), int(first.Columns)
    rescales = [_rescale(s.dataset) for s in slices]
    integral = all(float(a).is_integer() and float(b).is_integer() for a, b in rescales)
    out = np.empty((len(slices), rows, cols), np.int16 if integral else np.float32)
    int16 = np.iinfo(np.int16)
    for k, (s, (slope, intercept)) in enumerate(zip(slices, rescales)):
        try:
            pixels = pixel_array(s.path)  # from the file: nothing cached in the header
        except Exception as e:  # no decoder for a compressed transfer syntax, a damaged file, ...
            logger.debug("series of %s left to ITK: pydicom cannot decode %s (%s)", slices[0].path, s.path, e)
            return None
        if out.dtype == np.int16:
            values = pixels.astype(np.int32) * int(slope) + int(intercept)
            if values.size and (values.min() < int16.min or values.max() > int16.max):
                out = out.astype(np.float32)  # exact for integers below 2**24
            out[k] = values
        else:
            out[k] = pixels * slope + intercept
    orientation = np.asarray(first.ImageOrientationPatient, np.float64)
    row_spacing, col_spacing = (float(v) for v in first.PixelSpacing)
    p1 = np.asarray(first.ImagePositionPatient, np.float64)
    step = np.asarray(slices[1].dataset.ImagePositionPatient, np.float64) - p1
    slice_spacing = float(np.linalg.norm(step))
    direction = np.stack([orientation[:3], orientation[3:], np.cross(orientation[:3], orientation[3:])], axis=1)
    if math.isclose(slice_spacing, 0.0, abs_tol=1e-12):  # ITK: spacing 1 for coinciding slices
        slice_spacing = 1.0
    return ArrayVolume(out, (col_spacing, row_spacing, slice_spacing), tuple(float(v) for v in p1), direction)
