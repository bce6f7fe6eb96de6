"""Tests of image-level classification; helpers that write tiny 2-D images (PNG, JPEG, DICOM) of known content."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid


def gradient(rows: int, cols: int, channels: int = 1, offset: int = 0) -> np.ndarray:
    """uint8 image whose value grows along the rows (so orientation is checkable): (rows, cols[, channels])."""
    base = (np.arange(rows)[:, None] * 255 // max(rows - 1, 1) + np.zeros((1, cols), int) + offset) % 256
    if channels == 1:
        return base.astype(np.uint8)
    return np.stack([base, base // 2, 255 - base][:channels] + [np.full_like(base, 255)] * (channels - 3), -1).astype(
        np.uint8
    )


def write_image(path: Path, array: np.ndarray) -> Path:
    """Write a PNG/JPEG with PIL (mode from the array: L, RGB or RGBA)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def write_dicom(path: Path, array: np.ndarray) -> Path:
    """Write a single-frame secondary-capture DICOM: (rows, cols) uint16 MONOCHROME2 or (rows, cols, 3) uint8 RGB."""
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = SecondaryCaptureImageStorage, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality, ds.PatientID = "OT", "test"
    ds.Rows, ds.Columns = int(array.shape[0]), int(array.shape[1])
    if array.ndim == 3:
        ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
        pixels = array.astype(np.uint8)
    else:
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
        pixels = array.astype(np.uint16)
    ds.PixelRepresentation = 0
    ds.PixelData = pixels.tobytes()
    ds.save_as(str(path), enforce_file_format=True)
    return path


def write_class_tree(root: Path, per_class: int = 3, size: int = 16) -> Path:
    """``root/<class>/<image>`` with two classes (dark "a", bright "b") in mixed formats: PNG, JPEG and DICOM."""
    for label, name in enumerate(("a", "b")):
        for i in range(per_class):
            array = gradient(size, size + 3, offset=80 * label + 7 * i)
            kind = i % 3
            if kind == 0:
                write_image(root / name / f"{name}{i}.png", array)
            elif kind == 1:
                write_image(root / name / f"{name}{i}.jpg", np.stack([array] * 3, -1))
            else:
                write_dicom(root / name / f"{name}{i}", array.astype(np.uint16) * 16)  # no suffix: found by content
    (root / "a" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    return root
