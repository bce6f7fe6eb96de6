from __future__ import annotations

import os
import tempfile
import unittest
from pathlib import Path

import nibabel as nib
import numpy as np
from parameterized import parameterized

from bundle.io.atomic import atomic_save_nifti, atomic_write_bytes, atomic_write_text
from tests.io.test_writers import AFFINE, SHAPE


class TestAtomicWrites(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.root = Path(self.tmp.name)

    def tearDown(self):
        self.tmp.cleanup()

    def test_write_replace_no_temp_left(self):
        path = self.root / "sub" / "a.json"
        self.assertEqual(atomic_write_text(path, "one"), path.resolve())
        atomic_write_text(path, "two")
        self.assertEqual(path.read_text(), "two")
        self.assertEqual(os.listdir(path.parent), ["a.json"])
        self.assertEqual(path.stat().st_mode & 0o777, 0o644)

    def test_failure_keeps_old_file_and_leaves_no_temp(self):
        path = self.root / "a.bin"
        atomic_write_bytes(path, b"old")
        with self.assertRaises(TypeError):
            atomic_write_bytes(path, "not bytes")  # type: ignore[arg-type]
        self.assertEqual(path.read_bytes(), b"old")
        self.assertEqual(os.listdir(self.root), ["a.bin"])

    def test_refuses_input(self):
        inputs = self.root / "data"
        inputs.mkdir()
        image = inputs / "ct.nii.gz"
        image.write_bytes(b"input")
        link = self.root / "link.nii.gz"
        link.symlink_to(image)
        for dest, protected in [(image, [image]), (link, [image]), (inputs / "out" / "x.json", [inputs])]:
            with self.assertRaisesRegex(ValueError, "refusing to write over an input"):
                atomic_write_bytes(dest, b"output", protected=protected)
        self.assertEqual(image.read_bytes(), b"input")
        self.assertFalse((inputs / "out").exists())

    def test_nifti_roundtrip(self):
        data = np.arange(np.prod(SHAPE), dtype=np.int16).reshape(SHAPE)
        path = atomic_save_nifti(self.root / "x.nii.gz", data, AFFINE)
        img = nib.load(str(path))
        np.testing.assert_array_equal(np.asarray(img.dataobj), data)
        np.testing.assert_allclose(img.affine, AFFINE)
        self.assertEqual(os.listdir(self.root), ["x.nii.gz"])
        flat = atomic_save_nifti(self.root / "y.nii", np.ones((4, 5), np.uint8), np.diag([0.5, 0.5, 1.0]))
        self.assertEqual(nib.load(str(flat)).shape, (4, 5))

    @parameterized.expand([["x.nrrd", np.eye(4)], ["x.nii.gz", np.eye(3)]])
    def test_nifti_ill_arg(self, name, affine):
        with self.assertRaises(ValueError):
            atomic_save_nifti(self.root / name, np.zeros(SHAPE), affine)


if __name__ == "__main__":
    unittest.main()
