"""NIfTI files read by nibabel (:func:`bundle.io.volumes.read_nifti`) against ITK's reader: the same voxels, affine
and spacing where the file's geometry is unambiguous, and ITK's reader everywhere else."""

from __future__ import annotations

import tempfile
import unittest
from pathlib import Path

import nibabel as nib
import numpy as np
from monai.transforms import LoadImage
from parameterized import parameterized

from bundle.io.readers import LargestSeriesITKReader
from bundle.io.volumes import ArrayVolume, read_nifti

C, S = np.cos(0.3), np.sin(0.3)
ROTATED = np.array([[C * 0.8, -S * 0.9, 0, 12.0], [S * 0.8, C * 0.9, 0, -7.0], [0, 0, 2.5, 30.0], [0, 0, 0, 1]])
SHEARED = np.array([[0.8, 0.3, 0, 0], [0, 0.9, 0, 0], [0, 0, 2.5, 0], [0, 0, 0, 1]])


def _write(path: Path, affine: np.ndarray, sform_code: int, qform_code: int, dtype=np.int16, scale=None) -> None:
    data = (np.arange(7 * 6 * 5).reshape(7, 6, 5) * 3 - 40).astype(dtype)
    image = nib.Nifti1Image(data, None)
    image.set_sform(affine, code=sform_code)
    image.set_qform(affine, code=qform_code)
    if scale is not None:
        image.header.set_slope_inter(*scale)
    nib.save(image, str(path))


# (name, affine, sform_code, qform_code, dtype, (scl_slope, scl_inter))
TEST_READ_BY_NIBABEL = [
    ("sform", np.diag([0.8, 0.9, 2.5, 1.0]), 2, 0, np.int16, None),
    ("qform", ROTATED, 0, 1, np.int16, None),
    ("both", ROTATED, 1, 1, np.float32, None),
    ("scaled", np.diag([0.8, 0.9, 2.5, 1.0]), 1, 0, np.int16, (0.5, -1024.0)),
]


class TestReadNifti(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.root = Path(cls.tmp.name)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    @parameterized.expand(TEST_READ_BY_NIBABEL)
    def test_same_as_itk(self, name, affine, sform_code, qform_code, dtype, scale):
        path = self.root / f"{name}.nii.gz"
        _write(path, affine, sform_code, qform_code, dtype, scale)
        self.assertIsInstance(read_nifti(path), ArrayVolume)
        ours = LoadImage(reader=LargestSeriesITKReader(), image_only=True)(str(path))
        theirs = LoadImage(reader=LargestSeriesITKReader(backend="itk"), image_only=True)(str(path))
        self.assertEqual(tuple(ours.shape), tuple(theirs.shape))
        np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-6)
        np.testing.assert_allclose(ours.affine.numpy(), theirs.affine.numpy(), atol=1e-5)
        np.testing.assert_allclose(ours.meta["spacing"], theirs.meta["spacing"], atol=1e-6)
        np.testing.assert_allclose(ours.meta["original_affine"], theirs.meta["original_affine"], atol=1e-5)

    @parameterized.expand([
        ("no_form", np.diag([0.8, 0.9, 2.5, 1.0]), 0, 0),
        ("sheared", SHEARED, 2, 0),
    ])  # fmt: skip
    def test_left_to_itk(self, name, affine, sform_code, qform_code):
        path = self.root / f"{name}.nii"
        _write(path, affine, sform_code, qform_code)
        self.assertIsNone(read_nifti(path))

    def test_disagreeing_forms_left_to_itk(self):
        path = self.root / "disagree.nii"
        image = nib.Nifti1Image(np.zeros((4, 4, 4), np.int16), None)
        image.set_sform(np.diag([1.0, 1.0, 1.0, 1.0]), code=2)
        image.set_qform(np.diag([2.0, 2.0, 2.0, 1.0]), code=1)
        nib.save(image, str(path))
        self.assertIsNone(read_nifti(path))

    def test_xyz_array_is_c_ordered_transpose(self):
        zyx = np.arange(40 * 3 * 2).reshape(40, 3, 2).astype(np.int16)
        volume = ArrayVolume(zyx, (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), np.eye(3))
        xyz = volume.xyz_array()
        self.assertTrue(xyz.flags["C_CONTIGUOUS"])
        np.testing.assert_array_equal(xyz, zyx.T)


if __name__ == "__main__":
    unittest.main()
