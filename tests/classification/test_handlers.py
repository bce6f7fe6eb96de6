from __future__ import annotations

import csv
import json
import tempfile
import unittest
from pathlib import Path

import torch
from ignite.engine import Engine, Events

from bundle.classification.handlers import ClassificationReport, EpochHistory
from bundle.classification.networks import GhostCAClassifier


class TestEpochHistory(unittest.TestCase):
    def test_rows_table_and_best_epoch(self):
        val_acc = [0.5, 0.75, 0.75, 0.5]
        validator = Engine(lambda e, b: None)
        trainer = Engine(lambda e, b: None)
        trainer.optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)

        @trainer.on(Events.EPOCH_COMPLETED)
        def _fake_metrics(engine):  # registered before the history: metrics exist when it runs
            engine.state.metrics.update(train_loss=1.0 / engine.state.epoch, train_acc=0.5)
            validator.state.metrics = {"val_loss": 0.7, "val_acc": val_acc[engine.state.epoch - 1]}

        with tempfile.TemporaryDirectory() as tmp:
            history = EpochHistory(validator=validator, output_dir=tmp)
            history.attach(trainer)
            trainer.run([0], max_epochs=4)
            self.assertEqual(len(history.rows), 4)
            self.assertEqual(history.rows[1]["train_loss"], 0.5)
            self.assertEqual(history.rows[0]["lr"], 0.1)
            self.assertEqual(history.best_epoch(), 3)  # the last of the tied 0.75 epochs
            table = history.markdown()
            self.assertIn("| 3 * |", table)
            self.assertEqual(table.count("\n"), 6)
            with open(Path(tmp) / "history.csv") as f:
                self.assertEqual(len(list(csv.DictReader(f))), 4)
            self.assertTrue((Path(tmp) / "history.md").is_file())
        self.assertIsNone(EpochHistory().best_epoch())


class TestClassificationReport(unittest.TestCase):
    def _run(self, tmp, with_labels):
        net = GhostCAClassifier(in_channels=1, num_classes=2, features=(4, 8)).eval()
        images = torch.rand(3, 1, 16, 16)
        labels = torch.tensor([0, 1, 1])

        def step(engine, batch):
            with torch.no_grad():
                return {"image": batch["image"], "label": batch["label"] if with_labels else None,
                        "pred": net(batch["image"])}

        batches = [{"image": images[:2], "label": labels[:2], "path": ["p0", "p1"]},
                   {"image": images[2:], "label": labels[2:], "path": ["p2"]}]
        report = ClassificationReport(tmp, ["neg", "pos"], network=net, n_bootstrap=20, latency_threads=1)
        evaluator = Engine(step)
        report.attach(evaluator)
        evaluator.run(batches)
        return report

    def test_with_labels(self):
        with tempfile.TemporaryDirectory() as tmp:
            report = self._run(tmp, True)
            metrics = json.loads((Path(tmp) / "metrics.json").read_text())
            self.assertEqual(metrics["n"], 3)
            self.assertEqual(sum(map(sum, metrics["confusion_matrix"])), 3)
            self.assertGreater(metrics["latency_ms"], 0)
            self.assertGreater(metrics["size_mb"], 0)
            self.assertEqual(report.metrics["params"], sum(p.numel() for p in report.network.parameters()))
            for name in ("predictions.csv", "report.md", "grid.png", "gradcam.png"):
                self.assertTrue((Path(tmp) / name).is_file(), name)
            with open(Path(tmp) / "predictions.csv") as f:
                rows = list(csv.DictReader(f))
            self.assertEqual([r["path"] for r in rows], ["p0", "p1", "p2"])
            self.assertEqual([r["true"] for r in rows], ["neg", "pos", "pos"])
            self.assertAlmostEqual(float(rows[0]["p_neg"]) + float(rows[0]["p_pos"]), 1.0, places=5)

    def test_without_labels(self):
        with tempfile.TemporaryDirectory() as tmp:
            self._run(tmp, False)
            self.assertTrue((Path(tmp) / "predictions.csv").is_file())
            self.assertFalse((Path(tmp) / "report.md").exists())
            self.assertTrue((Path(tmp) / "grid.png").is_file())


if __name__ == "__main__":
    unittest.main()
