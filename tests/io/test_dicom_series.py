"""The pydicom series path (:mod:`bundle.io.dicom_series`) against ITK's GDCM reader on the same folders: the same
series identifiers, slice order, voxels and affine, and ITK left unloaded."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import unittest
from pathlib import Path
from unittest import mock

import itk
import numpy as np
from monai.transforms import LoadImage
from parameterized import parameterized
from pydicom.uid import generate_uid

from bundle.io.dicom_series import group_series, read_series, scan_folder, sort_slices
from bundle.io.readers import LargestSeriesITKReader
from tests.io.image_fixtures import write_dicom_series

S = 0.5**0.5
# (name, write_dicom_series kwargs): axial, oblique in-plane, gantry tilt (slices shifted along y), feet-first
# (positions decreasing), a non-integral rescale (float32 voxels)
TEST_GEOMETRIES = [
    ("axial", {}),
    ("oblique", {"orientation": (S, S, 0, -S, S, 0), "origin": (-10.0, 20.0, -30.0)}),
    ("tilt", {"step": (0.0, 1.2, 2.5)}),
    ("decreasing", {"origin": (0.0, 0.0, 100.0), "step": (0.0, 0.0, -3.0)}),
    ("float_rescale", {"rescale": (0.37, -1000.5)}),
]


def _itk_series(folder: Path, use_series_details: bool = True) -> dict[str, list[str]]:
    generator = itk.GDCMSeriesFileNames.New()
    generator.SetUseSeriesDetails(use_series_details)
    if use_series_details:
        generator.AddSeriesRestriction("0008|0021")
    generator.SetDirectory(str(folder))
    return {str(u): [str(f) for f in generator.GetFileNames(u)] for u in generator.GetSeriesUIDs()}


class TestDicomSeries(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.root = Path(cls.tmp.name)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def test_grouping_matches_itk(self):
        folder = self.root / "groups"
        write_dicom_series(folder, 5, prefix="a", seed=1)
        write_dicom_series(folder, 3, rows=4, cols=4, prefix="b", seed=2)
        write_dicom_series(folder, 4, prefix="c", series_uid=generate_uid(), sizes=[(6, 5), (6, 5), (4, 4), (6, 5)])
        (folder / "notes.txt").write_text("not DICOM\n")
        for details in (True, False):
            ours = {u: [s.path for s in g] for u, g in group_series(scan_folder(folder), details).items()}
            self.assertEqual(ours, _itk_series(folder, details))
        self.assertEqual(len(_itk_series(folder, True)), 4)  # the mixed series splits in two with the details

    def test_sort_without_positions_uses_instance_number(self):
        folder = self.root / "no_positions"
        write_dicom_series(folder, 4, seed=3)
        slices = scan_folder(folder)
        for s in slices:
            del s.dataset.ImagePositionPatient
        numbers = [int(s.dataset.InstanceNumber) for s in sort_slices(slices)]
        self.assertEqual(numbers, [1, 2, 3, 4])
        self.assertIsNone(read_series(sort_slices(slices)))  # no geometry: left to ITK

    @parameterized.expand(TEST_GEOMETRIES)
    def test_same_voxels_and_affine_as_itk(self, name, kwargs):
        folder = self.root / name
        write_dicom_series(folder, 5, seed=4, **kwargs)
        ours = LoadImage(reader=LargestSeriesITKReader(), image_only=True)(str(folder))
        theirs = LoadImage(reader=LargestSeriesITKReader(backend="itk"), image_only=True)(str(folder))
        self.assertEqual(tuple(ours.shape), tuple(theirs.shape))
        np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-6, atol=1e-3)
        np.testing.assert_allclose(ours.affine.numpy(), theirs.affine.numpy(), atol=1e-4)
        for key in ("spacing", "original_affine", "spatial_shape"):
            np.testing.assert_allclose(ours.meta[key], theirs.meta[key], atol=1e-4, err_msg=key)
        self.assertEqual(ours.meta["space"], theirs.meta["space"])

    def test_undecodable_series_falls_back_to_itk(self):
        folder = self.root / "fallback"
        write_dicom_series(folder, 4, seed=5)
        expected = LoadImage(reader=LargestSeriesITKReader(backend="itk"), image_only=True)(str(folder))
        with mock.patch("bundle.io.dicom_series.pixel_array", side_effect=NotImplementedError("no JPEG 2000 decoder")):
            self.assertIsNone(read_series(sort_slices(scan_folder(folder))))
            image = LoadImage(reader=LargestSeriesITKReader(), image_only=True)(str(folder))
        np.testing.assert_array_equal(image.numpy(), expected.numpy())

    def test_int16_when_exact(self):
        folder = self.root / "dtype"
        write_dicom_series(folder, 3, seed=6)
        self.assertEqual(read_series(sort_slices(scan_folder(folder))).array.dtype, np.int16)
        folder = self.root / "dtype_float"
        write_dicom_series(folder, 3, seed=6, rescale=(0.5, 0.0))
        self.assertEqual(read_series(sort_slices(scan_folder(folder))).array.dtype, np.float32)

    def test_itk_not_loaded(self):
        folder = self.root / "no_itk"
        write_dicom_series(folder, 4, seed=7)
        code = (
            "import sys\nfrom monai.transforms import LoadImage\nfrom bundle.io.readers import LargestSeriesITKReader\n"
            f"LoadImage(reader=LargestSeriesITKReader(), image_only=True)({str(folder)!r})\n"
            "print(sorted(m for m in sys.modules if m.startswith('itk.ITKIO')))"
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                             cwd=Path(__file__).resolve().parents[2])  # fmt: skip
        self.assertEqual(out.stdout.strip().splitlines()[-1], "[]")


if __name__ == "__main__":
    unittest.main()
