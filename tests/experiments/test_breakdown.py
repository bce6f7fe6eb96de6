"""Hits of an evaluation by lesion-record field and size band (bundle.experiments.breakdown)."""

from __future__ import annotations

import unittest

from bundle.experiments.breakdown import breakdown, format_breakdown

PER_SCAN = {"scans": [
    {"lesions": [{"center_mm": [0, 0, 0], "diameter_mm": 5.0, "score": 0.9},       # solid, hit
                 {"center_mm": [50, 0, 0], "diameter_mm": 8.0, "score": 0.2},      # ggo, missed
                 {"center_mm": [0, 80, 0], "diameter_mm": 50.0, "score": 0.7},     # the host's own tumour, hit
                 {"center_mm": [99, 99, 99], "diameter_mm": 12.0, "score": None},  # no record near it
                 {"center_mm": [0, 0, 40], "diameter_mm": 4.0, "score": 1.0, "ignore": True}]},
    {"lesions": [{"center_mm": [1, 1, 1], "diameter_mm": 2.5, "score": 0.5}]},     # solid, hit at the threshold
]}  # fmt: skip
ENTRIES = [
    {"lesions": [{"center_mm": [0.5, 0, 0], "kind": "solid", "shape": "lidc", "synthetic": True},
                 {"center_mm": [50, 2, 0], "kind": "ggo", "shape": "spherical", "synthetic": True},
                 {"center_mm": [0, 80, 1], "kind": "solid", "shape": "spiculated", "synthetic": False}]},
    {"lesions": [{"center_mm": [1, 1, 2], "kind": "solid", "shape": "lidc", "synthetic": True}]},
]  # fmt: skip


class TestBreakdown(unittest.TestCase):
    def test_rows(self):
        result = breakdown(PER_SCAN, ENTRIES, "kind")
        rows = {(r["value"], r["band"]): (r["hits"], r["n"]) for r in result["rows"]}
        self.assertEqual(rows, {("ggo", "all"): (0, 1), ("ggo", "6-10"): (0, 1),
                                ("real solid", "all"): (1, 1), ("real solid", ">= 30"): (1, 1),
                                ("solid", "all"): (2, 2), ("solid", "3-6"): (1, 1), ("solid", "< 3"): (1, 1),
                                ("unmatched", "all"): (0, 1), ("unmatched", "10-30"): (0, 1)})  # fmt: skip
        shapes = {(r["value"], r["band"]): r["n"] for r in breakdown(PER_SCAN, ENTRIES, "shape")["rows"]}
        self.assertEqual(shapes[("lidc", "all")], 2)

    def test_table(self):
        table = format_breakdown(breakdown(PER_SCAN, ENTRIES, "kind"))
        self.assertTrue(table.startswith("| kind | all | < 3 mm | 3-6 mm | 6-10 mm | 10-30 mm | >= 30 mm |\n"), table)
        self.assertIn("| solid | 2/2 | 1/1 | 1/1 |  |  |  |", table)

    def test_scan_count_mismatch(self):
        with self.assertRaisesRegex(ValueError, "2 scans but 1 datalist entries"):
            breakdown(PER_SCAN, ENTRIES[:1])


if __name__ == "__main__":
    unittest.main()
