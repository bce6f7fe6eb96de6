from __future__ import annotations

import json
import tempfile
import unittest
from pathlib import Path

import nibabel as nib
import numpy as np

from bundle.experiments.analysis.errors import (
    classify_false_positives,
    error_analysis,
    format_error_tables,
    recall_by_attribute,
    write_error_analysis,
)
from bundle.data.datalist import write_datalist

SPACING = 4.0
AFFINE = np.diag([SPACING, SPACING, SPACING, 1.0])


def phantom() -> np.ndarray:
    """A body (0 HU) holding two air-filled 'lungs' (-850 HU), in outside air (-1000 HU)."""
    hu = np.full((48, 48, 12), -1000.0, np.float32)
    hu[2:46, 2:46, :] = 0.0
    hu[10:22, 12:36, 2:10] = -850.0
    hu[26:38, 12:36, 2:10] = -850.0
    return hu


def mm(ijk) -> list[float]:
    return [float(v) * SPACING for v in ijk]


class TestClassify(unittest.TestCase):
    def test_regions(self):
        hu = phantom()
        out = classify_false_positives(hu, AFFINE, [mm((14, 20, 5)), mm((24, 20, 5)), mm((100, 0, 0))])
        self.assertEqual([o["region"] for o in out], ["lung", "outside lung", "outside image"])
        self.assertAlmostEqual(out[0]["hu"], -850.0)
        self.assertEqual(out[0]["distance_to_lung_mm"], 0.0)
        # 2 voxels from either lung (columns 22..25 are tissue): 8 mm
        self.assertAlmostEqual(out[1]["distance_to_lung_mm"], 2 * SPACING)

    def test_ill_shape(self):
        with self.assertRaisesRegex(ValueError, "3-D"):
            classify_false_positives(np.zeros((4, 4)), AFFINE, [])


class TestRecallByAttribute(unittest.TestCase):
    def test_counts(self):
        records = [{"hit": True, "kind": "solid"}, {"hit": False, "kind": "solid"}, {"hit": False, "kind": "ggo"}]
        table = recall_by_attribute(records, ["kind"])
        self.assertEqual(table["kind"]["solid"], {"hits": 1, "total": 2, "recall": 0.5})
        self.assertEqual(table["kind"]["ggo"]["recall"], 0.0)


class TestErrorAnalysis(unittest.TestCase):
    def test_end_to_end(self):
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            nib.save(nib.Nifti1Image(phantom(), AFFINE), root / "img.nii.gz")
            lesions = [
                {"center_mm": mm((14, 20, 5)), "diameter_mm": 8.0, "kind": "solid", "shape": "spherical",
                 "location": "isolated"},
                {"center_mm": mm((30, 30, 5)), "diameter_mm": 4.0, "kind": "ggo", "shape": "lobulated",
                 "location": "juxta-pleural"},
            ]
            write_datalist(root / "datalist.json", {"validation": [
                {"case": "c0", "image": str(root / "img.nii.gz"), "label": str(root / "img.nii.gz"), "lesions": lesions}
            ]})
            per_scan = {"scans": [{
                "scan": 0,
                "candidates": [
                    {"center_mm": mm((14, 20, 5)), "score": 0.9, "status": "tp", "lesion": 0},
                    {"center_mm": mm((15, 30, 5)), "score": 0.8, "status": "fp", "lesion": -1},
                    {"center_mm": mm((24, 20, 5)), "score": 0.7, "status": "fp", "lesion": -1},
                    {"center_mm": mm((24, 30, 5)), "score": 0.2, "status": "fp", "lesion": -1},  # below threshold
                ],
                "lesions": [{"center_mm": mm((14, 20, 5)), "diameter_mm": 8.0, "ignore": False, "score": 0.9},
                            {"center_mm": mm((30, 30, 5)), "diameter_mm": 4.0, "ignore": False, "score": None}],
            }]}
            (root / "per_scan.json").write_text(json.dumps(per_scan))
            result = error_analysis(root / "datalist.json", root / "per_scan.json")
            self.assertEqual(result["fp_by_region"], {"lung": 1, "outside lung": 1})
            self.assertEqual(result["recall"]["kind"]["solid"]["hits"], 1)
            self.assertEqual(result["recall"]["kind"]["ggo"]["hits"], 0)
            self.assertEqual(result["recall"]["size_band"]["3-6 mm"]["total"], 1)
            table = format_error_tables(result)
            self.assertIn("| lung | 1 | 1.00 | -850 |", table)
            # written next to per_scan.json, or to output_dir
            self.assertEqual(write_error_analysis(root / "datalist.json", root / "per_scan.json"), table)
            self.assertEqual((root / "errors.md").read_text(), table)
            self.assertEqual(json.loads((root / "errors.json").read_text()), json.loads(json.dumps(result)))
            write_error_analysis(root / "datalist.json", root / "per_scan.json", output_dir=root / "out")
            self.assertEqual((root / "out" / "errors.md").read_text(), table)
            with self.assertRaisesRegex(FileNotFoundError, r"nowhere.json: no such file.$"):
                write_error_analysis(root / "nowhere.json", root / "per_scan.json")
            # a per-scan file from another data set is refused
            per_scan["scans"].append(per_scan["scans"][0])
            (root / "per_scan.json").write_text(json.dumps(per_scan))
            with self.assertRaisesRegex(ValueError, "2 scans"):
                error_analysis(root / "datalist.json", root / "per_scan.json")


if __name__ == "__main__":
    unittest.main()
