from __future__ import annotations

import csv
import io
import json
import os
import tempfile
import unittest
from pathlib import Path

import nibabel as nib
import numpy as np
from parameterized import parameterized
from PIL import Image

from bundle.io.writers import (
    case_done,
    check_output_dir,
    safe_case_name,
    write_case_outputs,
    write_summary,
)

AFFINE = np.array([[-0.8, 0, 0, 30.0], [0, 0.9, 0, -12.0], [0, 0, 1.25, 40.0], [0, 0, 0, 1]])
SHAPE = (33, 34, 35)
LESION = {
    "center_voxel": [np.float64(10.0), 12.0, 14.0],
    "center_mm": [22.0, -1.2, 57.5],
    "box_voxel": [[8, 10, 12], [13, 15, 17]],
    "diameter_mm": np.float32(4.5),
    "volume_mm3": 47.7,
    "score": 0.93,
    "tier": "high",
}
SCHEMA_KEYS = ["center_voxel", "center_mm", "box_voxel", "diameter_mm", "volume_mm3", "score", "tier"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def case_arrays() -> tuple[np.ndarray, np.ndarray]:
    """A CT-like image in HU and a label map holding one 5-voxel cube lesion at LESION's box."""
    image = np.full(SHAPE, -800.0, np.float32)
    seg = np.zeros(SHAPE, np.uint16)
    seg[8:13, 10:15, 12:17] = 1
    image[seg > 0] = 40.0
    return image, seg


class TestOutputDir(unittest.TestCase):
    @parameterized.expand([["data", False], ["data/out", False], ["data", True]])
    def test_refused(self, output, allow_inside):
        with tempfile.TemporaryDirectory() as tmp:
            with self.assertRaisesRegex(ValueError, "output_dir.*dataset_dir") as ctx:
                check_output_dir(Path(tmp) / "data", Path(tmp) / output, allow_inside)
            self.assertIn(str(Path(tmp).resolve() / output), str(ctx.exception))

    @parameterized.expand([["out", False], ["data/out", True], ["data2", False]])
    def test_accepted(self, output, allow_inside):
        with tempfile.TemporaryDirectory() as tmp:
            out = check_output_dir(Path(tmp) / "data", Path(tmp) / output, allow_inside)
            self.assertEqual(out, Path(tmp).resolve() / output)

    def test_case_names(self):
        self.assertEqual(safe_case_name("lung 1/series:2"), "lung_1_series_2")
        for bad in ["", ".", ".."]:
            with self.assertRaises(ValueError):
                safe_case_name(bad)


class TestCaseOutputs(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.out = Path(self.tmp.name) / "out"
        self.input = Path(self.tmp.name) / "ct.nii.gz"
        self.input.write_bytes(b"input")

    def tearDown(self):
        self.tmp.cleanup()

    def test_outputs_and_schema(self):
        image, seg = case_arrays()
        paths = write_case_outputs(self.out, "ct", self.input, seg, AFFINE, [LESION], image, {"seconds": 1.5})
        self.assertEqual(set(paths), {"seg", "overlay", "meta", "lesions"})
        self.assertEqual(
            sorted(os.listdir(self.out / "ct")), ["lesions.json", "meta.json", "overlay.png", "seg.nii.gz"]
        )
        doc = json.loads((self.out / "ct" / "lesions.json").read_text())
        self.assertEqual(list(doc), ["case", "image", "lesions"])
        self.assertEqual((doc["case"], doc["image"]), ("ct", str(self.input)))
        (lesion,) = doc["lesions"]
        self.assertEqual(list(lesion), SCHEMA_KEYS)
        self.assertEqual(lesion["center_voxel"], [10.0, 12.0, 14.0])
        self.assertEqual(lesion["box_voxel"], [[8, 10, 12], [13, 15, 17]])
        self.assertTrue(all(isinstance(lesion[k], float) for k in ("diameter_mm", "volume_mm3", "score")))
        self.assertEqual(lesion["tier"], "high")
        nii = nib.load(str(paths["seg"]))
        np.testing.assert_array_equal(np.asarray(nii.dataobj), seg)
        np.testing.assert_allclose(nii.affine, AFFINE)
        self.assertEqual(nii.get_data_dtype(), np.uint8)
        png = paths["overlay"].read_bytes()
        self.assertEqual(png[:8], PNG_MAGIC)
        with Image.open(io.BytesIO(png)) as im:
            self.assertGreater(min(im.size), 200)
            rgb = np.asarray(im.convert("RGB")).astype(int)
        red = (rgb[..., 0] > 180) & (rgb[..., 1] < 80) & (rgb[..., 2] < 80)
        self.assertGreater(int(red.sum()), 10)  # the lesion contour is drawn in red
        self.assertEqual(json.loads(paths["meta"].read_text()), {"seconds": 1.5})
        self.assertTrue(case_done(self.out, "ct"))

    def test_no_lesion_and_rerun_policy(self):
        image, _ = case_arrays()
        empty = np.zeros(SHAPE, np.uint8)
        paths = write_case_outputs(self.out, "ct", self.input, empty, AFFINE, [], image)
        self.assertNotIn("meta", paths)
        self.assertEqual(json.loads(paths["lesions"].read_text())["lesions"], [])
        with Image.open(paths["overlay"]) as im:
            self.assertEqual(im.format, "PNG")
        before = paths["lesions"].stat().st_mtime_ns
        self.assertEqual(write_case_outputs(self.out, "ct", self.input, empty, AFFINE, [LESION], overwrite=False), {})
        self.assertEqual(paths["lesions"].stat().st_mtime_ns, before)
        write_case_outputs(self.out, "ct", self.input, empty, AFFINE, [LESION], overwrite=True)
        self.assertEqual(len(json.loads(paths["lesions"].read_text())["lesions"]), 1)

    def test_refuses_input_destination(self):
        image, seg = case_arrays()
        with self.assertRaisesRegex(ValueError, "refusing"):
            write_case_outputs(self.input.parent, "ct.nii.gz", self.input, seg, AFFINE, [], image)
        with self.assertRaisesRegex(ValueError, "refusing"):
            write_case_outputs(self.out, "ct", self.input, seg, AFFINE, [], image, protected=[self.out])
        self.assertEqual(self.input.read_bytes(), b"input")

    @parameterized.expand([[{k: v for k, v in LESION.items() if k != "score"}], [{**LESION, "tier": "top"}]])
    def test_ill_lesion(self, lesion):
        with self.assertRaises(ValueError):
            write_case_outputs(self.out, "ct", self.input, np.zeros(SHAPE), AFFINE, [lesion])


class TestSummary(unittest.TestCase):
    def test_summary(self):
        records = [
            {"case": "a", "image": "/d/a.nii.gz", "status": "done", "seconds": 2.0, "n_lesions": 2,
             "windows": {"high": 3, "medium": 1, "low": 4}, "skipped_fraction": 0.5, "largest_diameter_mm": 12.5,
             "max_score": 0.9},
            {"case": "b", "image": "/d/b.nii.gz", "status": "failed", "error": "/d/b.nii.gz: EOFError: truncated"},
            {"case": "c", "image": "/d/c.nii.gz", "status": "done", "seconds": 1.0, "n_lesions": 0,
             "windows": None, "skipped_fraction": None},
            {"case": "d", "image": "/d/d.nii.gz", "status": "skipped"},
        ]  # fmt: skip
        ignored = [{"path": "/d/notes.txt", "reason": "not a recognised image file"},
                   {"path": "/d/empty", "reason": "empty folder\n(no files)"}]  # fmt: skip
        with tempfile.TemporaryDirectory() as tmp:
            path = write_summary(tmp, records, total_seconds=4.25, ignored=ignored)
            summary = json.loads(path.read_text())
            self.assertEqual(sorted(os.listdir(tmp)), ["summary.csv", "summary.json"])
            with open(Path(tmp) / "summary.csv", newline="") as f:
                rows = list(csv.DictReader(f))
        # summary.csv: a row per case in record order, then one per ignored entry
        self.assertEqual([(r["case"], r["status"]) for r in rows],
                         [("a", "done"), ("b", "failed"), ("c", "done"), ("d", "skipped"), ("", "ignored"), ("", "ignored")])  # fmt: skip
        self.assertEqual(
            {k: rows[0][k] for k in ("n_lesions", "largest_diameter_mm", "max_score", "seconds", "windows_high",
                                     "windows_low", "skipped_fraction", "error")},
            {"n_lesions": "2", "largest_diameter_mm": "12.5", "max_score": "0.9", "seconds": "2.0", "windows_high": "3",
             "windows_low": "4", "skipped_fraction": "0.5", "error": ""},
        )  # fmt: skip
        self.assertEqual(rows[1]["error"], records[1]["error"])
        self.assertEqual((rows[2]["windows_high"], rows[5]["image"], rows[5]["error"]), ("", "/d/empty", "empty folder (no files)"))
        self.assertEqual(summary["cases_done"], ["a", "c"])
        self.assertEqual(summary["cases_failed"], [{"case": "b", "image": "/d/b.nii.gz", "error": records[1]["error"]}])
        self.assertEqual(summary["cases_skipped"], ["d"])
        # every input entry that is no case is listed with its reason on one line, and counted
        self.assertEqual(
            summary["entries_ignored"],
            [{"path": "/d/notes.txt", "reason": "not a recognised image file"},
             {"path": "/d/empty", "reason": "empty folder (no files)"}],
        )  # fmt: skip
        self.assertEqual(
            summary["per_case"]["a"],
            {"seconds": 2.0, "windows": {"high": 3, "medium": 1, "low": 4}, "skipped_fraction": 0.5, "n_lesions": 2},
        )
        self.assertEqual(summary["per_case"]["c"]["windows"], {"high": None, "medium": None, "low": None})
        self.assertEqual(
            summary["totals"],
            {"cases": 4, "done": 2, "failed": 1, "skipped": 1, "ignored": 2, "seconds": 4.25,
             "windows": {"high": 3, "medium": 1, "low": 4}, "skipped_fraction": 0.5, "n_lesions": 2},
        )  # fmt: skip

    def test_ill_status(self):
        with tempfile.TemporaryDirectory() as tmp, self.assertRaises(ValueError):
            write_summary(tmp, [{"case": "a", "status": "odd"}])

    def test_nothing_ignored_and_ill_entry(self):
        with tempfile.TemporaryDirectory() as tmp:
            summary = json.loads(write_summary(tmp, []).read_text())
            self.assertEqual((summary["entries_ignored"], summary["totals"]["ignored"]), ([], 0))
            with self.assertRaisesRegex(ValueError, "'path' and 'reason'"):
                write_summary(tmp, [], ignored=[{"path": "/d/x"}])


if __name__ == "__main__":
    unittest.main()
