from __future__ import annotations

import json
import tempfile
import unittest
from pathlib import Path

import numpy as np

from bundle.classification.ct_slices import build_slice_dataset, slice_datalist
from bundle.classification.holdout import holdout_evaluate, holdout_markdown, split_by_case
from tests.classification.test_ct_slices import write_case


class TestHoldout(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        root = Path(cls.tmp.name) / "synth"
        train = [write_case(root, f"tra_{i:03d}", {1: 4, 3: 2}, seed=i) for i in range(3)]
        val = [write_case(root, "val_000", {2: 5, 4: 3}, seed=9)]
        (root / "datalist.json").write_text(json.dumps({"training": train, "validation": val}))
        cls.slices = Path(cls.tmp.name) / "slices"
        build_slice_dataset(root / "datalist.json", cls.slices, max_per_class=2, seed=0)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def test_split_by_case(self):
        items = slice_datalist(self.slices, "train")
        train, val = split_by_case(items, 1, seed=0)
        self.assertEqual(len(train) + len(val), len(items))
        self.assertEqual(len({d["case"] for d in val}), 1)
        self.assertFalse({d["case"] for d in val} & {d["case"] for d in train})  # no case on both sides
        with self.assertRaisesRegex(ValueError, "n_val_cases"):
            split_by_case(items, 3)
        with self.assertRaisesRegex(ValueError, "case"):
            split_by_case([{"label": 0}], 1)

    def test_holdout_evaluate(self):
        result = holdout_evaluate(self.slices, "ghost_ca", epochs=1, batch_size=2, spatial_size=(32, 32),
                                  n_val_cases=1, work_dir=Path(self.tmp.name) / "work", n_bootstrap=20)
        self.assertEqual(result["probs_last"].shape, (4, 2))
        np.testing.assert_allclose(result["probs_last"].sum(1), 1.0, rtol=1e-5)
        self.assertEqual((result["n_train"], result["n_val"]), (8, 4))
        for key in ("last", "best"):
            self.assertEqual(result[key]["n"], 4)
            self.assertTrue(0.0 <= result[key]["accuracy"] <= 1.0)
        table = holdout_markdown([result])
        self.assertEqual(len(table.strip().splitlines()), 3)
        self.assertIn("| GhostCAClassifier", table)
        with self.assertRaisesRegex(ValueError, "network"):
            holdout_evaluate(self.slices, "vgg16")


if __name__ == "__main__":
    unittest.main()
