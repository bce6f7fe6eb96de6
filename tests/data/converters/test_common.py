from __future__ import annotations

import tempfile
import unittest
from pathlib import Path

import numpy as np
from parameterized import parameterized

from bundle.data.converters.common import (
    SIZE_BANDS_MM,
    ConversionError,
    ConversionReport,
    check_geometry,
    lesion_records_from_mask,
    read_nifti,
    size_band,
)
from tests.data.converters.nifti_fixtures import AFFINE, SHAPE, blob_label, save

TEST_BANDS = [
    [2.9, "<3"], [3.0, "3-4"], [3.99, "3-4"], [4.0, "4-6"], [7.0, "6-10"], [10.0, "10-30"], [30.0, "10-30"],
    [30.5, ">30"],
]


class TestCommon(unittest.TestCase):
    @parameterized.expand(TEST_BANDS)
    def test_size_band(self, diameter, expected):
        self.assertEqual(size_band(diameter), expected)

    def test_lesion_records_from_mask(self):
        label = blob_label([(3, 3, 2), (11, 10, 6)], radius=1)
        label[6, 6, 4] = label[7, 7, 5] = 1  # touching by a corner: one lesion with 26-connectivity
        records = lesion_records_from_mask(label, AFFINE, note="x")
        self.assertEqual(len(records), 3)
        self.assertEqual(records[0]["center_voxel"], [3.0, 3.0, 2.0])
        self.assertEqual(records[0]["box_voxel"], [[2, 2, 1], [5, 5, 4]])
        self.assertAlmostEqual(records[0]["volume_mm3"], 27 * 0.8 * 0.8 * 2.0, places=1)
        self.assertEqual(records[0]["note"], "x")
        self.assertIn("size_band", records[0])
        self.assertEqual(len(lesion_records_from_mask(label, AFFINE, connectivity=1)), 4)
        with self.assertRaisesRegex(ValueError, "connectivity"):
            lesion_records_from_mask(label, AFFINE, connectivity=4)
        with self.assertRaisesRegex(ValueError, "3-D"):
            lesion_records_from_mask(label[..., 0], AFFINE)

    def test_check_geometry(self):
        check_geometry(SHAPE + (4,), AFFINE, SHAPE, AFFINE + 1e-5, "lab.nii.gz", "img.nii.gz")  # channels, tolerance
        with self.assertRaisesRegex(ConversionError, r"^lab.nii.gz: geometry mismatch: label shape \(16, 15, 8\)"):
            check_geometry(SHAPE, AFFINE, (16, 15, 8), AFFINE, "lab.nii.gz", "img.nii.gz")
        shifted = AFFINE.copy()
        shifted[0, 3] += 0.5
        with self.assertRaisesRegex(ConversionError, "label affine differs .* img.nii.gz by up to 0.5"):
            check_geometry(SHAPE, AFFINE, SHAPE, shifted, "lab.nii.gz", "img.nii.gz")

    def test_read_nifti(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = save(Path(tmp) / "x.nii.gz", np.arange(8, dtype=np.int16).reshape(2, 2, 2))
            data, affine = read_nifti(path)
            np.testing.assert_array_equal(data, np.arange(8).reshape(2, 2, 2))
            np.testing.assert_allclose(affine, AFFINE)
            with self.assertRaisesRegex(ConversionError, rf"^{tmp}/y.nii.gz: mask file does not exist"):
                read_nifti(Path(tmp) / "y.nii.gz", "mask")

    def test_report_summary(self):
        report = ConversionReport(dataset="d", converted=["a"])
        self.assertTrue(report.ok)
        report.add_failure("b", OSError("disk"), "/x/b.nii.gz")
        self.assertFalse(report.ok)
        self.assertEqual(report.failed[0]["error"], "/x/b.nii.gz: OSError: disk")
        self.assertIn("FAILED b: /x/b.nii.gz: OSError: disk", report.summary())

    def test_size_bands_match_metrics(self):
        from bundle.metrics.lesion import SIZE_BANDS_MM as METRIC_BANDS

        self.assertEqual(SIZE_BANDS_MM, METRIC_BANDS)


if __name__ == "__main__":
    unittest.main()
