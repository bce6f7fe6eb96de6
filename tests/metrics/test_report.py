from __future__ import annotations

import json
import os
import tempfile
import unittest

import numpy as np
from matplotlib.image import imread
from parameterized import parameterized

from bundle.metrics.lesion import balance_score, froc
from bundle.metrics.report import evaluate_detection, format_table, plot_froc, save_json


def cand(x: float, score: float) -> dict:
    return {"center_mm": [x, 0.0, 0.0], "score": score}


def les(x: float, d: float, ignore: bool = False) -> dict:
    return {"center_mm": [x, 0.0, 0.0], "diameter_mm": d, "ignore": ignore}


# 2 scans, 4 lesions (+1 ignored): at 0.5 TP = 2 (0.9, 0.6), FP = 2 (0.8, 0.55), FN = 2 (one scored 0.3, one missed)
PER_SCAN = [
    ([cand(0, 0.9), cand(50, 0.8), cand(20, 0.3), cand(70, 0.1)], [les(0, 5), les(20, 8), les(90, 12, ignore=True)]),
    ([cand(0, 0.6), cand(40, 0.55)], [les(0, 3.5), les(99, 20)]),
]

ILL_CASES = [
    ("negative_params", {"n_params": -5}, ValueError, "n_params=-5"),
    ("float_params", {"n_params": 1.5}, TypeError, "n_params=1.5"),
    ("negative_seconds", {"seconds_per_image": -1.0}, ValueError, "seconds_per_image=-1.0"),
    ("nan_seconds", {"seconds_per_volume": float("nan")}, ValueError, "seconds_per_volume=nan"),
    ("bad_threshold", {"threshold": 3.0}, ValueError, "threshold=3.0"),
]


class TestEvaluateDetection(unittest.TestCase):
    def test_values(self):
        r = evaluate_detection(PER_SCAN)
        self.assertEqual((r["tp"], r["fp"], r["fn"]), (2, 2, 2))
        self.assertEqual((r["n_scans"], r["n_lesions"], r["n_ignored_lesions"], r["n_candidates"]), (2, 4, 1, 6))
        self.assertAlmostEqual(r["recall"], 0.5)
        self.assertAlmostEqual(r["precision"], 0.5)
        self.assertAlmostEqual(r["f1"], 0.5)
        self.assertAlmostEqual(r["fp_per_scan"], 1.0)
        direct = froc(PER_SCAN)
        self.assertEqual(r["cpm"], direct["cpm"])
        self.assertEqual(r["froc"]["sensitivities"], direct["sensitivities"])
        bands = [(b["n"], b["hits"]) for b in r["size_bands"]["bands"]]
        self.assertEqual(bands, [(1, 1), (1, 1), (1, 0), (1, 0)])
        self.assertNotIn("balance_score_per_image", r)
        self.assertIsNone(r["params_millions"])

    def test_balance(self):
        r = evaluate_detection(PER_SCAN, n_params=2_500_000, seconds_per_image=0.4, seconds_per_volume=30.0)
        self.assertAlmostEqual(r["params_millions"], 2.5)
        self.assertAlmostEqual(r["balance_score_per_image"], 0.5 - 0.5 * (0.2 + 0.05))
        self.assertAlmostEqual(r["balance_score_per_volume"], balance_score(0.5, 0.5, 30.0, 2.5))

    def test_balance_needs_params(self):
        r = evaluate_detection(PER_SCAN, seconds_per_image=0.4)
        self.assertNotIn("balance_score_per_image", r)
        self.assertEqual(r["seconds_per_image"], 0.4)

    @parameterized.expand(ILL_CASES)
    def test_ill_arg(self, _, kwargs, error, fragment):
        with self.assertRaises(error) as ctx:
            evaluate_detection(PER_SCAN, **kwargs)
        self.assertIn(fragment, str(ctx.exception))


class TestOutputs(unittest.TestCase):
    def test_format_table(self):
        table = format_table(evaluate_detection(PER_SCAN, n_params=1_000_000, seconds_per_image=1.0))
        self.assertIn("| TP / FP / FN | 2 / 2 / 2 |", table)
        self.assertIn("| Recall | 0.500 |", table)
        self.assertIn("| FP/scan | 0.125 | 0.25 | 0.5 | 1 | 2 | 4 | 8 | CPM |", table)
        self.assertIn("| [10, 30) | 1 | 0 | 0.000 |", table)
        self.assertIn("| Diameter (mm) | 0.125 FP/scan | 0.25 FP/scan | 0.5 FP/scan | 1 FP/scan | 2 FP/scan |", table)
        self.assertIn("| [10, 30) | " + "0.000 | " * 7 + "0.000 |", table)  # its one lesion is never hit
        self.assertIn("| [4, 6) | " + "1.000 | " * 7 + "1.000 |", table)  # hit at 0.9, above every other candidate
        # 3.5 mm lesion hit at 0.6, after one FP (0.8) of 2 scans: 0 below 0.5 FP/scan, CPM 5/7
        self.assertIn("| [3, 4) | 0.000 | 0.000 | 1.000 | 1.000 | 1.000 | 1.000 | 1.000 | 0.714 |", table)
        self.assertIn("Balance score (per image)", table)
        self.assertIn("| Seconds per volume | n/a |", table)

    def test_format_table_ill(self):
        with self.assertRaises(ValueError) as ctx:
            format_table({"recall": 1.0})
        self.assertIn("missing keys", str(ctx.exception))

    def test_save_json(self):
        results = evaluate_detection(PER_SCAN)
        results["extra"] = {"nan": float("nan"), "array": np.arange(3), "scalar": np.float32(0.5)}
        with tempfile.TemporaryDirectory() as tmp:
            path = save_json(results, os.path.join(tmp, "sub", "metrics.json"))
            with open(path, encoding="utf-8") as f:
                loaded = json.load(f)
            self.assertEqual(os.listdir(os.path.dirname(path)), ["metrics.json"])  # no temp file left
        self.assertEqual(loaded["cpm"], results["cpm"])
        self.assertEqual(loaded["froc"]["curve"]["thresholds"], results["froc"]["curve"]["thresholds"])
        self.assertEqual(loaded["extra"], {"nan": None, "array": [0, 1, 2], "scalar": 0.5})

    def test_save_json_failure_leaves_nothing(self):
        with tempfile.TemporaryDirectory() as tmp:
            with self.assertRaises(TypeError):
                save_json({"bad": object()}, os.path.join(tmp, "metrics.json"))
            self.assertEqual(os.listdir(tmp), [])

    @parameterized.expand([("evaluate", True), ("froc_only", False)])
    def test_plot_froc(self, _, full):
        results = evaluate_detection(PER_SCAN) if full else froc(PER_SCAN)
        with tempfile.TemporaryDirectory() as tmp:
            path = plot_froc(results, os.path.join(tmp, "froc.png"), title="test")
            with open(path, "rb") as f:
                self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")
            image = imread(path)
            self.assertEqual(os.listdir(tmp), ["froc.png"])
        self.assertEqual(image.shape[:2], (450, 600))
        self.assertGreater(float(image.std()), 0.0)

    def test_plot_froc_ill(self):
        with tempfile.TemporaryDirectory() as tmp:
            with self.assertRaises(ValueError) as ctx:
                plot_froc({"cpm": 1.0}, os.path.join(tmp, "froc.png"))
        self.assertIn("FROC data", str(ctx.exception))


if __name__ == "__main__":
    unittest.main()
