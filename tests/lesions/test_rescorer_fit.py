"""Fitting the false-positive-reduction stage (bundle.lesions.rescorer_fit)."""

from __future__ import annotations

import json
import tempfile
import unittest
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression

from bundle.lesions.rescore import FEATURE_NAMES
from bundle.lesions.rescorer_fit import fit_logistic, join_features


class TestFitLogistic(unittest.TestCase):
    def test_same_optimum_as_sklearn(self):
        rng = np.random.default_rng(0)
        x = rng.normal(size=(400, len(FEATURE_NAMES))) * rng.uniform(0.5, 3, len(FEATURE_NAMES))
        y = (x[:, 2] - 0.5 * x[:, 5] + rng.normal(size=400) > 0.3).astype(int)
        model = fit_logistic(x, y, l2=2.0)
        z = (x - np.asarray(model["mean"])) / np.asarray(model["std"])
        ref = LogisticRegression(C=0.5, tol=1e-10, max_iter=10000).fit(z, y)
        np.testing.assert_allclose(model["weights"], ref.coef_[0], atol=1e-4)
        self.assertAlmostEqual(model["bias"], float(ref.intercept_[0]), places=4)
        self.assertEqual(model["feature_names"], list(FEATURE_NAMES))
        self.assertEqual((model["n_fit"], model["n_positive"]), (400, int(y.sum())))

    def test_one_class_is_refused(self):
        with self.assertRaisesRegex(ValueError, "both classes"):
            fit_logistic(np.zeros((5, len(FEATURE_NAMES))), np.zeros(5))


class TestJoinFeatures(unittest.TestCase):
    def test_join_labels_and_mismatch(self):
        with tempfile.TemporaryDirectory() as tmp:
            log, per_scan = Path(tmp) / "f.jsonl", Path(tmp) / "per_scan.json"
            feats = [[float(i)] * len(FEATURE_NAMES) for i in range(3)]
            cands = [{"center_mm": [i, 0, 0], "score": 0.5, "features": feats[i]} for i in range(3)]
            log.write_text(json.dumps({"candidates": cands}) + "\n")
            statuses = ["tp", "fp", "ignored"]
            scans = [{"scan": 0, "candidates": [{"center_mm": [i, 0, 0], "score": 0.5, "status": statuses[i],
                                                  "lesion": 0} for i in range(3)], "lesions": []}]  # fmt: skip
            per_scan.write_text(json.dumps({"scans": scans}))
            x, y, joined = join_features(log, per_scan)
            np.testing.assert_array_equal(y, [1, 0])  # the ignored one is left out
            np.testing.assert_array_equal(x[:, 0], [0.0, 1.0])
            self.assertEqual(joined[0]["candidates"][2]["features"], feats[2])
            scans[0]["candidates"][1]["center_mm"] = [5, 0, 0]
            per_scan.write_text(json.dumps({"scans": scans}))
            with self.assertRaisesRegex(ValueError, "centres differ"):
                join_features(log, per_scan)


if __name__ == "__main__":
    unittest.main()
