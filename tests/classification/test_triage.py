from __future__ import annotations

import json
import tempfile
import unittest
from pathlib import Path

import numpy as np
from parameterized import parameterized

from bundle.classification.triage import (
    MANIFEST,
    lesion_free_slab,
    max_lesion_scores,
    score_triage,
    triage_auc,
    triage_markdown,
)

# (labels, highest lesion score per scan, AUC worked out by hand over the positive x negative pairs)
AUC_CASES = [
    ([1, 1, 0, 0], [0.9, 0.8, 0.3, 0.0], 1.0),  # every positive above every negative
    ([1, 1, 0, 0], [0.0, 0.2, 0.9, 0.8], 0.0),  # reversed
    ([1, 0, 1, 0], [0.0, 0.0, 0.0, 0.0], 0.5),  # no lesion reported anywhere: all ties
    ([1, 1, 0, 0], [0.8, 0.35, 0.4, 0.1], 0.75),  # pairs: (0.8>0.4, 0.8>0.1, 0.35<0.4, 0.35>0.1) -> 3/4
    ([1, 1, 0, 0, 0], [0.7, 0.0, 0.0, 0.6, 0.0], (3 + 0.5 + 0 + 0.5) / 6),  # 0.0 vs 0.0 ties count half
]
SLAB_CASES = [
    (64, [(42, 53)], 2, (0, 40)),
    (64, [(42, 53), (41, 53)], 2, (0, 39)),
    (20, [(2, 4)], 1, (6, 20)),
    (10, [], 0, (0, 10)),
    (10, [(3, 3), (6, 6)], 0, (0, 3)),  # equal runs: the first
]


class TestTriage(unittest.TestCase):
    @parameterized.expand(AUC_CASES)
    def test_known_auc(self, labels, scores, expected):
        result = triage_auc(labels, scores, n_bootstrap=200, seed=0)
        self.assertAlmostEqual(result["auc"], expected)
        low, high = result["auc_ci"]
        self.assertLessEqual(low, high)
        self.assertEqual((result["n_positive"], result["n_negative"]), (labels.count(1), labels.count(0)))

    def test_operating_point_and_interval(self):
        result = triage_auc([1, 1, 1, 0, 0, 0], [0.9, 0.0, 0.6, 0.7, 0.0, 0.0], n_bootstrap=300, seed=0)
        self.assertAlmostEqual(result["sensitivity_any"], 2 / 3)  # scans with any lesion reported
        self.assertAlmostEqual(result["specificity_any"], 2 / 3)
        perfect = triage_auc([1] * 6 + [0] * 6, np.linspace(1, 0.1, 12), n_bootstrap=100)
        self.assertEqual(perfect["auc_ci"], [1.0, 1.0])  # every resample ranks perfectly

    def test_ill_arg(self):
        with self.assertRaisesRegex(ValueError, "equal length"):
            triage_auc([1, 0], [0.5])
        with self.assertRaisesRegex(ValueError, "0/1"):
            triage_auc([2, 0], [0.5, 0.1])
        with self.assertRaisesRegex(ValueError, "finite"):
            triage_auc([1, 0], [float("nan"), 0.1])

    @parameterized.expand(SLAB_CASES)
    def test_slab(self, depth, excluded, margin, expected):
        self.assertEqual(lesion_free_slab(depth, excluded, margin), expected)

    def test_slab_ill_arg(self):
        with self.assertRaisesRegex(ValueError, "no slice"):
            lesion_free_slab(5, [(0, 4)], 0)
        with self.assertRaisesRegex(ValueError, "depth"):
            lesion_free_slab(0, [])

    def test_max_lesion_scores(self):
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            for case, scores in (("a", [0.4, 0.9, 0.6]), ("b", [])):
                (root / case).mkdir()
                lesions = [{"score": s, "center_voxel": [0, 0, 0]} for s in scores]
                (root / case / "lesions.json").write_text(json.dumps({"case": case, "lesions": lesions}))
            self.assertEqual(max_lesion_scores(root, ["a", "b"]), [0.9, 0.0])
            with self.assertRaisesRegex(ValueError, "c/lesions.json"):
                max_lesion_scores(root, ["c"])
            (root / "d").mkdir()
            (root / "d" / "lesions.json").write_text("[1, 2]")
            with self.assertRaisesRegex(ValueError, "d/lesions.json"):
                max_lesion_scores(root, ["d"])

    def test_markdown(self):
        manifest = {"settings": {"host": "h:left", "slab_slices": [0, 39]},
                    "scans": [{"case": "p", "source": "held-out case", "lesion_diameters_mm": [5.2, 18.0]},
                              {"case": "n", "source": "host without inserted lesions", "lesion_diameters_mm": []}]}
        result = triage_auc([1, 0], [0.8, 0.2], n_bootstrap=10)
        text = triage_markdown(manifest, [0.8, 0.2], result)
        self.assertIn("| 1 / 1 | 1.00", text)
        self.assertIn("| p | held-out case | 5, 18 | 0.800 |", text)
        self.assertIn("slices 0..38", text)

    def test_score_triage(self):
        manifest = {"settings": {"host": "h:left", "slab_slices": [0, 39]},
                    "scans": [{"case": "p", "label": 1, "source": "held-out case", "lesion_diameters_mm": [5.2]},
                              {"case": "n", "label": 0, "source": "host", "lesion_diameters_mm": []}]}
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            with self.assertRaisesRegex(FileNotFoundError, "triage.json: not found; run `python -m scripts.triage"):
                score_triage(root)
            (root / MANIFEST).write_text(json.dumps(manifest))
            with self.assertRaisesRegex(ValueError, "p/lesions.json: missing"):
                score_triage(root)
            for case, scores in (("p", [0.7]), ("n", [])):
                (root / "det" / case).mkdir(parents=True)
                lesions = {"lesions": [{"score": s} for s in scores]}
                (root / "det" / case / "lesions.json").write_text(json.dumps(lesions))
            table = score_triage(root, root / "det", n_bootstrap=10)
            result = triage_auc([1, 0], [0.7, 0.0], n_bootstrap=10)
            self.assertEqual(table, triage_markdown(manifest, [0.7, 0.0], result))
            written = json.loads((root / "triage_result.json").read_text())
            self.assertEqual((written["auc"], written["scores"]), (1.0, {"p": 0.7, "n": 0.0}))


if __name__ == "__main__":
    unittest.main()
