from __future__ import annotations

import tempfile
import unittest
from pathlib import Path

import numpy as np
from monai.transforms import LoadImage
from parameterized import parameterized

from bundle.io.checks import check_itk_image
from bundle.io.readers import LargestSeriesITKReader
from tests.io.image_fixtures import write_volume


class TestNiftiFileChecks(unittest.TestCase):
    """:py:func:`bundle.io.checks.check_nifti_file`, as the reader runs it on every NIfTI file it reads."""

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.root = Path(self.tmp.name)

    def tearDown(self):
        self.tmp.cleanup()

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


class TestImageSize(unittest.TestCase):
    """:py:func:`bundle.io.checks.check_itk_image`'s size check: an image too small to hold a lesion, or 2-D, is
    refused with one line naming the file; ``min_size=None`` reads it."""

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.root = Path(self.tmp.name)

    def tearDown(self):
        self.tmp.cleanup()

    @parameterized.expand(
        [
            ["one_voxel", (1, 1, 1), "size \\(1, 1, 1\\) has fewer than 3 voxels along axes 1, 2, 3\\."],
            ["one_slice", (20, 18, 1), "size \\(20, 18, 1\\) has fewer than 3 voxels along axis 3\\."],
            ["two_rows", (20, 2, 8), "along axis 2\\."],
            ["two_d", (20, 18), "is 2-D \\(size \\(20, 18\\)\\); a 3-D volume is needed"],
        ]
    )
    def test_too_small(self, name, shape, message):
        path = self.root / f"{name}.nii.gz"
        write_volume(path, np.zeros(shape, np.float32))
        with self.assertRaisesRegex(ValueError, message) as raised:
            LargestSeriesITKReader().read(path)
        self.assertIn(str(path), str(raised.exception))
        self.assertNotIn("\n", str(raised.exception))
        for backend in ("auto", "itk"):  # nibabel (3-D) or ITK (2-D) reads it; ITK only with backend="itk"
            image = LoadImage(reader=LargestSeriesITKReader(min_size=None, backend=backend), image_only=True)(path)
            self.assertEqual(tuple(image.shape), shape)

    def test_smallest_accepted(self):
        path = self.root / "three.nii.gz"
        write_volume(path, np.zeros((3, 3, 3), np.float32))
        LargestSeriesITKReader().read(path)
        with self.assertRaisesRegex(ValueError, "fewer than 4 voxels"):
            LargestSeriesITKReader(min_size=4).read(path)
        with self.assertRaisesRegex(ValueError, "fewer than 4 voxels"):
            check_itk_image(LargestSeriesITKReader(min_size=None, backend="itk").read(path), str(path), min_size=4)


if __name__ == "__main__":
    unittest.main()
