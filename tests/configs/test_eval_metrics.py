from __future__ import annotations

import json
import unittest


class TestEvalMetricsAgree(unittest.TestCase):
    def test_metadata_quotes_the_committed_evaluation(self):
        # docs/heldout_metrics.json is the metrics.json written by configs/evaluate.json for the shipped weights
        with open("configs/metadata.json") as f:
            quoted = json.load(f)["eval_metrics"]
        with open("docs/heldout_metrics.json") as f:
            measured = json.load(f)
        for key in ("recall", "precision", "f1", "cpm", "fp_per_scan"):
            self.assertAlmostEqual(quoted[f"heldout_{key}"], round(measured[key], 3), places=6, msg=key)


if __name__ == "__main__":
    unittest.main()
