from __future__ import annotations

import tempfile
import unittest
from pathlib import Path

import numpy as np
from parameterized import parameterized

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


if __name__ == "__main__":
    unittest.main()
