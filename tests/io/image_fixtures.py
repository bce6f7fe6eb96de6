"""Image files on disk for the reader, case-discovery and check tests: a CT DICOM series (pydicom) with shuffled
file names and known stored pixels, and volumes written as NIfTI (nibabel) or NRRD / MetaImage (ITK)."""

from __future__ import annotations

import random
from pathlib import Path

import itk
import nibabel as nib
import numpy as np
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

PIXEL_SPACING = (0.8, 0.7)  # (row spacing, column spacing) in mm, as DICOM's PixelSpacing
SLICE_SPACING = 5.0
SLOPE, INTERCEPT = 2.0, -1024.0


def stored_slice(index: int, rows: int, cols: int) -> np.ndarray:
    """Stored (pre-rescale) pixels of slice ``index``: value = index + 10 * row + column."""
    return (index + 10 * np.arange(rows)[:, None] + np.arange(cols)[None]).astype(np.int16)


def write_dicom_series(
    folder: Path,
    n_slices: int,
    rows: int = 6,
    cols: int = 5,
    prefix: str = "s",
    series_uid: str | None = None,
    with_pixels: bool = True,
    sizes: list[tuple[int, int]] | None = None,
    seed: int = 0,
    orientation: tuple[float, ...] = (1, 0, 0, 0, 1, 0),
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0),
    step: tuple[float, float, float] = (0.0, 0.0, SLICE_SPACING),
    rescale: tuple[float, float] = (SLOPE, INTERCEPT),
) -> list[Path]:
    """Write a CT series, one file per slice, with file names in shuffled (not positional) order; slice ``k`` lies at
    ``origin + k * step`` (LPS, mm) with ``orientation`` as its ImageOrientationPatient."""
    folder.mkdir(parents=True, exist_ok=True)
    series_uid = series_uid or generate_uid()
    study_uid = generate_uid()
    order = list(range(n_slices))
    random.Random(seed).shuffle(order)
    paths = []
    for index in range(n_slices):
        r, c = sizes[index] if sizes else (rows, cols)
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        path = folder / f"{prefix}{order[index]:03d}.dcm"
        ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
        ds.Modality, ds.PatientID, ds.SeriesNumber, ds.InstanceNumber = "CT", "test", 1, index + 1
        ds.ImagePositionPatient = [o + index * d for o, d in zip(origin, step)]
        ds.ImageOrientationPatient = list(orientation)
        ds.PixelSpacing, ds.SliceThickness = list(PIXEL_SPACING), SLICE_SPACING
        ds.Rows, ds.Columns = r, c
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleSlope, ds.RescaleIntercept = rescale
        if with_pixels:
            ds.PixelData = stored_slice(index, r, c).tobytes()
        ds.save_as(str(path), enforce_file_format=True)
        paths.append(path)
    return paths


def write_volume(path: Path, array: np.ndarray, spacing: tuple[float, ...] = (0.8, 0.9, 5.0)) -> None:
    """Write ``array`` (x, y, z) as NIfTI with nibabel, or as NRRD/MetaImage with ITK."""
    if path.name.endswith((".nii", ".nii.gz")):
        nib.save(nib.Nifti1Image(array, np.diag([*spacing, 1.0])), str(path))
        return
    image = itk.image_from_array(np.ascontiguousarray(array.transpose(2, 1, 0)))  # ITK arrays are (z, y, x)
    image.SetSpacing(list(spacing))
    itk.imwrite(image, str(path))
