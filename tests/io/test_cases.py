from __future__ import annotations

import logging
import os
import tempfile
import unittest
from pathlib import Path
from unittest import mock

import itk
import numpy as np
import pydicom
from PIL import Image

from bundle.io.cases import is_dicom_file, list_cases, scan_dataset
from tests.io.image_fixtures import write_dicom_series, write_volume
from tests.reliability import inputs as I


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

    def test_every_entry_accounted_for(self):
        """An empty folder, a folder of DICOM objects without pixel data and a non-image file are each listed with
        a one-line reason; a folder of damaged DICOM files stays a case (its read fails and is reported)."""
        write_volume(self.root / "good.nii.gz", np.zeros((3, 3, 2), np.float32))
        (self.root / "empty_series").mkdir()
        (self.root / "patient" / "nothing_here").mkdir(parents=True)  # a folder holding only an empty folder
        I.dicom_no_pixels(self.root)
        I.dicom_garbage(self.root)
        (self.root / "notes.txt").write_text("x")
        cases, skipped = scan_dataset(self.root)
        self.assertEqual([c["case"] for c in cases], ["good", "series_garbage"])
        reasons = {os.path.relpath(s["path"], self.root): s["reason"] for s in skipped}
        self.assertEqual(set(reasons), {"empty_series", "patient/nothing_here", "series_nopix", "notes.txt"})
        self.assertEqual(reasons["empty_series"], "empty folder (no files, no subfolders)")
        self.assertRegex(reasons["series_nopix"], "no image series: its 3 DICOM file\\(s\\) hold no pixel data "
                                                  "\\(SOP class CT Image Storage\\)")
        for reason in reasons.values():
            self.assertNotIn("\n", reason)

    def test_image_series_beside_a_report(self):
        """A folder with one image slice among objects without pixel data is a case: one file with pixels is enough,
        and the files are probed only until the first image."""
        I.dicom_no_pixels(self.root)
        write_dicom_series(self.root / "series_nopix", 3)
        cases, skipped = scan_dataset(self.root)
        self.assertEqual(([c["case"] for c in cases], skipped), (["series_nopix"], []))

    def test_unreadable_folder(self):
        """A folder that cannot be listed (no permission) is reported, not dropped as os.walk does by default."""
        write_volume(self.root / "good.nii.gz", np.zeros((3, 3, 2), np.float32))
        (self.root / "locked").mkdir()
        scandir = os.scandir

        def refuse_locked(path):
            if Path(path).name == "locked":
                raise PermissionError(13, "Permission denied", str(path))
            return scandir(path)

        with mock.patch("os.scandir", refuse_locked):
            cases, skipped = scan_dataset(self.root)
        self.assertEqual([c["case"] for c in cases], ["good"])
        reason = "folder cannot be read (Permission denied)"
        self.assertEqual(skipped, [{"path": str(self.root / "locked"), "reason": reason}])

    def test_list_cases_reuses_a_scan(self):
        self._make_dataset()
        scan = scan_dataset(self.root)
        with mock.patch("bundle.io.cases.scan_dataset") as rescan, self.assertLogs("bundle.io.cases", logging.WARNING):
            cases = list_cases(self.root, scan=scan)
        rescan.assert_not_called()
        self.assertEqual(cases, scan[0])

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


if __name__ == "__main__":
    unittest.main()
