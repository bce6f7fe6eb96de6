"""A tiny synthetic CT DICOM series (pydicom) for the DICOM tests: known geometry, shuffled file names."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

ROWS, COLS, SLICES = 12, 10, 6
PIXEL_SPACING = (0.8, 0.7)  # (between rows, between columns) mm
SLICE_STEP = 2.5
ORIGIN = (-4.0, -3.0, 10.0)  # LPS of the first pixel of the lowest slice
IDS = {
    "PatientID": "ECO-0001",
    "PatientName": "Test^Ecosystem",
    "StudyInstanceUID": "1.2.826.0.1.3680043.8.498.1001",
    "SeriesInstanceUID": "1.2.826.0.1.3680043.8.498.1002",
    "FrameOfReferenceUID": "1.2.826.0.1.3680043.8.498.1003",
    "AccessionNumber": "ACC42",
}


def write_series(
    folder: Path, hu: np.ndarray | None = None, pixel_spacing: tuple[float, float] = PIXEL_SPACING,
    slice_step: float = SLICE_STEP,
) -> list[Path]:  # fmt: skip
    """Write axial slices (HU array (slices, rows, cols), default -800 of (SLICES, ROWS, COLS)) in a scrambled name
    order, ``pixel_spacing`` (between rows, between columns) and ``slice_step`` mm apart."""
    folder.mkdir(parents=True, exist_ok=True)
    hu = np.full((SLICES, ROWS, COLS), -800.0) if hu is None else hu
    slices, rows, cols = hu.shape
    paths = []
    for k in range(slices):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        for key, value in IDS.items():
            setattr(ds, key, value)
        ds.PatientBirthDate, ds.PatientSex, ds.StudyID, ds.StudyDate, ds.StudyTime = "19700101", "O", "1", "20240101", "120000"
        ds.ReferringPhysicianName, ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "", "CT", 3, k + 1
        ds.Manufacturer = "synthetic"
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [ORIGIN[0], ORIGIN[1], ORIGIN[2] + k * slice_step]
        ds.PixelSpacing, ds.SliceThickness = list(pixel_spacing), slice_step
        ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation = rows, cols, 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = -1024, 1, "HU"
        ds.PixelData = (hu[k] + 1024).astype(np.int16).tobytes()
        path = folder / f"im{(k * 7) % slices:03d}_{k}.dcm"  # names out of position order
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def pixel_centres_ras(k: int) -> np.ndarray:
    """RAS mm of every pixel centre of slice k, (ROWS, COLS, 3), written out for the axial case."""
    r, c = np.meshgrid(np.arange(ROWS), np.arange(COLS), indexing="ij")
    x_lps = ORIGIN[0] + c * PIXEL_SPACING[1]
    y_lps = ORIGIN[1] + r * PIXEL_SPACING[0]
    z = np.full(r.shape, ORIGIN[2] + k * SLICE_STEP)
    return np.stack([-x_lps, -y_lps, z], axis=-1)
