from __future__ import annotations

import json
import tempfile
import unittest
from pathlib import Path

import torch

from bundle.engines.report import DetectionReportHandler, per_scan_report
from bundle.metrics import LesionDetectionMetric

# scan 0: one lesion hit twice (tp + double) and one far candidate (fp); scan 1: a lesion nobody hits
PER_SCAN = [
    (
        [
            {"center_mm": [0.0, 0.0, 0.0], "score": 0.9},
            {"center_mm": [1.0, 0.0, 0.0], "score": 0.7},
            {"center_mm": [50.0, 0.0, 0.0], "score": 0.8},
        ],
        [{"center_mm": [0.2, 0.0, 0.0], "diameter_mm": 6.0}],
    ),
    ([], [{"center_mm": [10.0, 10.0, 10.0], "diameter_mm": 4.0}]),
]


class TestPerScanReport(unittest.TestCase):
    def test_statuses(self):
        report = per_scan_report(PER_SCAN)
        self.assertEqual([s["scan"] for s in report], [0, 1])
        self.assertEqual([c["status"] for c in report[0]["candidates"]], ["tp", "double", "fp"])
        self.assertEqual([c["lesion"] for c in report[0]["candidates"]], [0, 0, -1])
        self.assertEqual(report[0]["lesions"][0]["score"], 0.9)
        self.assertIsNone(report[1]["lesions"][0]["score"])
        self.assertEqual(report[1]["candidates"], [])

    def test_fixed_radius_changes_matches(self):
        # a 0.6 mm hit radius: the candidate 0.8 mm from the lesion no longer hits it and becomes a false positive
        report = per_scan_report(PER_SCAN, hit_radius=0.6, min_radius_mm=0.0)
        self.assertEqual([c["status"] for c in report[0]["candidates"]], ["tp", "fp", "fp"])


class TestHandlerWritesReports(unittest.TestCase):
    def test_files(self):
        metric = LesionDetectionMetric(metric_name="cpm")
        metric([c for c, _ in PER_SCAN], [les for _, les in PER_SCAN])
        with tempfile.TemporaryDirectory() as tmp:
            handler = DetectionReportHandler(metric, tmp, network=torch.nn.Linear(2, 1))
            handler(None)
            names = sorted(p.name for p in Path(tmp).iterdir())
            self.assertEqual(names, ["froc.png", "metrics.json", "per_scan.json"])
            saved = json.loads((Path(tmp) / "per_scan.json").read_text())
            self.assertEqual(saved["hit_radius"], "radius")
            self.assertEqual([c["status"] for c in saved["scans"][0]["candidates"]], ["tp", "double", "fp"])
            metrics = json.loads((Path(tmp) / "metrics.json").read_text())
            self.assertEqual((metrics["tp"], metrics["fp"], metrics["fn"]), (1, 1, 1))
            self.assertEqual(metrics["n_params"], 3)


if __name__ == "__main__":
    unittest.main()
