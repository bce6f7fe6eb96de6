from __future__ import annotations

import tempfile
import unittest
from pathlib import Path

import numpy as np
import torch
from monai.transforms import LoadImaged
from parameterized import parameterized

from bundle.classification.transforms import (
    Dicom2DReader,
    EnsureChannelCount,
    EnsureChannelCountd,
    classification_transforms,
    image_2d_readers,
)
from tests.classification import gradient, write_dicom, write_image

# (file name, array, expected channels as loaded) - rows 8 x cols 12 so a transposed read is caught
LOAD_CASES = [
    ["gray.png", gradient(8, 12), 1],
    ["rgb.png", gradient(8, 12, 3), 3],
    ["rgba.png", gradient(8, 12, 4), 3],
    ["gray.jpg", gradient(8, 12), 1],
    ["rgb.jpeg", gradient(8, 12, 3), 3],
    ["gray_dicom", gradient(8, 12).astype(np.uint16) * 200, 1],
    ["gray.dcm", gradient(8, 12).astype(np.uint16) * 200, 1],
    ["rgb_dicom", gradient(8, 12, 3), 3],
]


def _write(path: Path, array: np.ndarray) -> Path:
    return write_dicom(path, array) if "dicom" in path.name or path.suffix == ".dcm" else write_image(path, array)


class TestLoading(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.root = Path(self.tmp.name)

    def tearDown(self):
        self.tmp.cleanup()

    @parameterized.expand(LOAD_CASES)
    def test_load_orientation_and_channels(self, name, array, channels):
        path = _write(self.root / name, array)
        image = LoadImaged("image", reader=image_2d_readers(), ensure_channel_first=True, image_only=True)(
            {"image": str(path)}
        )["image"]
        self.assertEqual(tuple(image.shape), (channels, 8, 12))
        first = np.asarray(image[0], dtype=float)
        self.assertLess(first[0].mean(), first[-1].mean())  # values grow along the rows: not transposed

    @parameterized.expand([[name, array, c, n] for name, array, c in LOAD_CASES for n in (1, 3)])
    def test_transforms_output(self, name, array, _, in_channels):
        path = _write(self.root / name, array)
        for train in (False, True):
            item = classification_transforms(train, spatial_size=(16, 20), in_channels=in_channels)(
                {"image": str(path), "label": 1}
            )
            self.assertEqual(tuple(item["image"].shape), (in_channels, 16, 20))
            self.assertEqual(item["image"].dtype, torch.float32)
            self.assertGreaterEqual(float(item["image"].min()), 0.0)
            self.assertLessEqual(float(item["image"].max()), 1.0 + 1e-6)
            self.assertEqual(item["label"], 1)

    def test_dicom_reader_by_content(self):
        dicom = write_dicom(self.root / "IM0001", gradient(4, 5).astype(np.uint16))
        png = write_image(self.root / "x.png", gradient(4, 5))
        self.assertTrue(Dicom2DReader().verify_suffix(dicom))
        self.assertFalse(Dicom2DReader().verify_suffix(png))

    def test_unreadable_file(self):
        bad = self.root / "bad.png"
        bad.write_bytes(b"not an image")
        with self.assertRaises(RuntimeError):  # MONAI wraps the reader's error
            classification_transforms(False)({"image": str(bad)})


class TestEnsureChannelCount(unittest.TestCase):
    @parameterized.expand([[1, 3], [3, 3], [4, 3], [1, 1], [3, 1], [4, 1]])
    def test_shapes_numpy_and_torch(self, c_in, c_out):
        x = np.random.default_rng(0).random((c_in, 5, 6)).astype(np.float32)
        for img in (x, torch.as_tensor(x)):
            out = EnsureChannelCount(c_out)(img)
            self.assertEqual(tuple(out.shape), (c_out, 5, 6))
            self.assertIs(type(out), type(img))

    def test_values(self):
        gray = np.arange(6, dtype=np.float32).reshape(1, 2, 3)
        np.testing.assert_allclose(EnsureChannelCount(3)(gray), np.concatenate([gray] * 3))
        rgb = np.stack([np.full((2, 2), v, np.float32) for v in (100.0, 50.0, 10.0)])
        luma = 0.299 * 100 + 0.587 * 50 + 0.114 * 10
        np.testing.assert_allclose(EnsureChannelCount(1)(rgb), np.full((1, 2, 2), luma), rtol=1e-6)
        np.testing.assert_allclose(EnsureChannelCount(1)(torch.as_tensor(rgb)).numpy(), np.full((1, 2, 2), luma),
                                   rtol=1e-6)
        d = EnsureChannelCountd("image", num_channels=3)({"image": gray, "label": 0})
        self.assertEqual(d["image"].shape[0], 3)

    def test_ill_arg(self):
        with self.assertRaisesRegex(ValueError, "num_channels"):
            EnsureChannelCount(2)
        with self.assertRaisesRegex(ValueError, "1, 3 or 4 channels"):
            EnsureChannelCount(3)(np.zeros((2, 4, 4)))

if __name__ == "__main__":
    unittest.main()
