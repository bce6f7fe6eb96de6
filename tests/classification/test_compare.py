from __future__ import annotations

import tempfile
import unittest
from pathlib import Path

import numpy as np

from bundle.classification.compare import cross_validate, results_markdown, write_markdown_block
from bundle.classification.datalists import classification_datalist
from bundle.classification.engine import predict, train_with_config
from bundle.classification.transforms import classification_transforms
from tests.classification import write_class_tree

TINY_NET = {"_target_": "bundle.classification.networks.GhostCAClassifier", "in_channels": 1,
            "num_classes": "@num_classes", "features": [4, 8]}


class TestEngineAndCompare(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.data = write_class_tree(Path(cls.tmp.name) / "images", per_class=4, size=12)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def test_train_with_config_and_predict(self):
        out = Path(self.tmp.name) / "run"
        net, history, info = train_with_config(
            dataset_dir=str(self.data), output_dir=str(out), epochs=2, batch_size=2, spatial_size=[16, 16],
            in_channels=1, network_def=dict(TINY_NET), num_threads=1,
        )
        self.assertFalse(net.training)
        self.assertEqual([int(r["epoch"]) for r in history.rows], [1, 2])
        self.assertEqual(info["class_names"], ["a", "b"])
        self.assertEqual(info["epochs_run"], 2)
        datalist, _ = classification_datalist(str(self.data))
        result = predict(net, datalist, classification_transforms(False, spatial_size=(16, 16), in_channels=1),
                         cache_dir=Path(self.tmp.name) / "cache")
        self.assertEqual(result["probs"].shape, (8, 2))
        np.testing.assert_allclose(result["probs"].sum(1), 1.0, rtol=1e-5)
        self.assertEqual(result["labels"].tolist(), [0, 0, 0, 0, 1, 1, 1, 1])
        self.assertEqual(tuple(result["images"].shape), (8, 1, 16, 16))
        self.assertEqual(result["paths"], [d["path"] for d in datalist])
        with self.assertRaisesRegex(ValueError, "train#history"):
            train_with_config(
                dataset_dir=str(self.data), output_dir=str(out), epochs=1, batch_size=2, spatial_size=[16, 16],
                in_channels=1, network_def=dict(TINY_NET), num_threads=1,
                **{"train#history": {"_target_": "StatsHandler", "iteration_log": False}},
            )

    def test_cross_validate_and_table(self):
        work = Path(self.tmp.name) / "cv"
        result = cross_validate(str(self.data), "ghost_ca", n_splits=2, epochs=1, spatial_size=(16, 16), work_dir=work)
        self.assertEqual(result["probs_last"].shape, (8, 2))
        np.testing.assert_allclose(result["probs_last"].sum(1), 1.0, rtol=1e-5)  # every image predicted once
        np.testing.assert_allclose(result["probs_best"].sum(1), 1.0, rtol=1e-5)
        self.assertEqual(len(result["fold_acc_last"]), 2)
        self.assertTrue(all(c is not None and c.shape == (16, 16) for c in result["cams"]))
        self.assertEqual(set(result["latency_ms"]), {1, 2})
        self.assertTrue((work / "images" / "ghost_ca" / "fold1" / "history.md").is_file())
        table = results_markdown([result], n_bootstrap=20)
        self.assertEqual(len(table.strip().splitlines()), 3)
        self.assertIn("| images (n=8) | GhostCAClassifier", table)
        with self.assertRaisesRegex(ValueError, "network"):
            cross_validate(str(self.data), "vgg16")

    def test_markdown_block(self):
        path = Path(self.tmp.name) / "doc.md"
        path.write_text("# Title\n\ntext\n")
        write_markdown_block(path, "first")
        write_markdown_block(path, "second\n")
        text = path.read_text()
        self.assertTrue(text.startswith("# Title\n\ntext\n"))
        self.assertEqual(text.count("classify_compare:begin"), 1)
        self.assertIn("second", text)
        self.assertNotIn("first", text)
        write_markdown_block(path, "other block", name="ct_slices")  # a second, independent block
        write_markdown_block(path, "third")
        text = path.read_text()
        self.assertEqual(text.count("<!-- ct_slices:begin -->"), 1)
        self.assertIn("other block", text)
        self.assertIn("third", text)
        self.assertNotIn("second", text)


if __name__ == "__main__":
    unittest.main()
