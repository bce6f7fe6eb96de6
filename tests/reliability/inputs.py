"""Writers of the bad (and borderline) inputs of the reliability catalogue (docs/reliability.md), small and fast.

Each ``write_*`` function takes a folder and returns the path of the input it wrote there (a file or a DICOM
series folder).
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

SHAPE = (20, 18, 8)
SPACING = (2.0, 2.0, 5.0)


def ct_like(shape: tuple[int, ...] = SHAPE, seed: int = 0) -> np.ndarray:
    """A small CT-like volume in HU: air, a body, a dark lung and a small bright nodule, plus noise."""
    rng = np.random.default_rng(seed)
    vol = np.full(shape, -1000.0, np.float32)
    vol[2:-2, 2:-2] = 40.0
    vol[4:10, 4:14] = -850.0
    vol[6:8, 7:9, 3:5] = 30.0
    return vol + rng.normal(0, 10, shape).astype(np.float32)


def write_nifti(path: Path, array: np.ndarray, spacing: tuple[float, ...] = SPACING) -> Path:
    """Save ``array`` with a diagonal affine of ``spacing``."""
    nib.save(nib.Nifti1Image(array, np.diag([*spacing, 1.0])), str(path))
    return path


def write_nifti_pixdim(path: Path, array: np.ndarray, pixdim: tuple[float, float, float]) -> Path:
    """Save ``array`` with no qform/sform, so ``pixdim`` (possibly 0 or negative) is the declared spacing."""
    header = nib.Nifti1Header()
    header.set_data_shape(array.shape)
    header.set_data_dtype(array.dtype)
    image = nib.Nifti1Image(array, None, header)
    image.header.set_qform(None, code=0)
    image.header.set_sform(None, code=0)
    image.header["pixdim"][1:4] = pixdim
    nib.save(image, str(path))
    return path


def good_nifti(folder: Path, name: str = "good.nii.gz") -> Path:
    return write_nifti(folder / name, ct_like())


def text_as_nifti(folder: Path) -> Path:
    (folder / "notes.nii.gz").write_text("this is a text file, not an image\n")
    return folder / "notes.nii.gz"


def empty_file(folder: Path) -> Path:
    (folder / "empty.nii").write_bytes(b"")
    return folder / "empty.nii"


def truncated_gzip(folder: Path) -> Path:
    raw = good_nifti(folder, "full_gz.nii.gz").read_bytes()
    (folder / "cut.nii.gz").write_bytes(raw[: len(raw) // 2])
    return folder / "cut.nii.gz"


def truncated_nifti(folder: Path) -> Path:
    raw = good_nifti(folder, "full.nii").read_bytes()
    (folder / "cut.nii").write_bytes(raw[: len(raw) * 2 // 3])
    return folder / "cut.nii"


def corrupt_gzip(folder: Path) -> Path:
    """A complete gzip stream whose compressed data has one flipped byte (a CRC or inflate error)."""
    raw = bytearray(good_nifti(folder, "full_c.nii.gz").read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    (folder / "flipped.nii.gz").write_bytes(bytes(raw))
    return folder / "flipped.nii.gz"


def four_d(folder: Path) -> Path:
    return write_nifti(folder / "timeseries.nii.gz", np.stack([ct_like(), ct_like(seed=1)], -1))


def zero_size(folder: Path) -> Path:
    return write_nifti(folder / "zero.nii.gz", np.zeros((20, 0, 8), np.float32))


def pixdim(value: tuple[float, float, float], name: str):
    def write(folder: Path) -> Path:
        return write_nifti_pixdim(folder / name, ct_like(), value)

    return write


def affine_spacing(spacing: tuple[float, float, float], name: str):
    def write(folder: Path) -> Path:
        return write_nifti(folder / name, ct_like(), spacing)

    return write


def all_nan(folder: Path) -> Path:
    return write_nifti(folder / "all_nan.nii.gz", np.full(SHAPE, np.nan, np.float32))


def some_nan(folder: Path) -> Path:
    vol = ct_like()
    vol[0, 0, 0], vol[1, 1, 1], vol[2, 2, 2] = np.nan, np.inf, -np.inf
    return write_nifti(folder / "some_nan.nii.gz", vol)


def constant(folder: Path) -> Path:
    return write_nifti(folder / "constant.nii.gz", np.full(SHAPE, 40.0, np.float32))


def extreme(folder: Path) -> Path:
    vol = ct_like()
    vol[::2] = 3.0e38
    vol[1::2] = -3.0e38
    return write_nifti(folder / "extreme.nii.gz", vol)


def one_slice(folder: Path) -> Path:
    return write_nifti(folder / "one_slice.nii.gz", ct_like((20, 18, 1)))


def one_voxel(folder: Path) -> Path:
    return write_nifti(folder / "one_voxel.nii.gz", np.full((1, 1, 1), -500.0, np.float32))


def dicom_series(
    folder: Path,
    positions: list[float],
    sizes: list[tuple[int, int]] | None = None,
    with_pixels: bool = True,
    truncate_pixels: bool = False,
) -> Path:
    """A CT series with one file per slice at the given z positions (mm)."""
    folder.mkdir(parents=True, exist_ok=True)
    series_uid, study_uid = generate_uid(), generate_uid()
    for index, z in enumerate(positions):
        rows, cols = sizes[index] if sizes else (6, 5)
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        path = folder / f"s{index:03d}.dcm"
        ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
        ds.Modality, ds.PatientID, ds.SeriesNumber, ds.InstanceNumber = "CT", "test", 1, index + 1
        ds.ImagePositionPatient = [0.0, 0.0, float(z)]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing, ds.SliceThickness = [0.8, 0.8], 2.5
        ds.Rows, ds.Columns = rows, cols
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleSlope, ds.RescaleIntercept = 1.0, -1024.0
        if with_pixels:
            pixels = (np.arange(rows * cols, dtype=np.int16).reshape(rows, cols) + index).tobytes()
            ds.PixelData = pixels[: len(pixels) // 3] if truncate_pixels else pixels
        ds.save_as(str(path), enforce_file_format=True)
    return folder


def dicom_good(folder: Path) -> Path:
    return dicom_series(folder / "series_ok", [0.0, 2.5, 5.0, 7.5])


def dicom_missing(folder: Path) -> Path:
    return dicom_series(folder / "series_gap", [0.0, 2.5, 5.0, 12.5, 15.0])


def dicom_duplicate(folder: Path) -> Path:
    return dicom_series(folder / "series_dup", [0.0, 2.5, 2.5, 5.0, 7.5])


def dicom_mixed(folder: Path) -> Path:
    return dicom_series(folder / "series_mixed", [0.0, 2.5, 5.0, 7.5], sizes=[(6, 5), (6, 5), (4, 4), (6, 5)])


def dicom_no_pixels(folder: Path) -> Path:
    return dicom_series(folder / "series_nopix", [0.0, 2.5, 5.0], with_pixels=False)


def dicom_garbage(folder: Path) -> Path:
    """A folder whose only file has the DICOM preamble and magic, then garbage."""
    series = folder / "series_garbage"
    series.mkdir()
    (series / "x.dcm").write_bytes(b"\0" * 128 + b"DICM" + bytes(range(256)) * 4)
    return series


def dicom_truncated_pixels(folder: Path) -> Path:
    return dicom_series(folder / "series_cut", [0.0, 2.5, 5.0], truncate_pixels=True)


def write_datalist(folder: Path, entries: list, name: str = "datalist.json") -> Path:
    (folder / name).write_text(json.dumps({"training": entries}))
    return folder / name


def huge_extent(folder: Path) -> Path:
    """Spacing within bounds but 40 x 90 mm = 3.6 m along x: resampling it would allocate gigabytes."""
    return write_nifti(folder / "huge_extent.nii.gz", np.full((40, 4, 4), -500.0, np.float32), (90.0, 90.0, 90.0))
