"""MONAI RetinaNet baselines: boxes from labels, boxes to lesion candidates, and train + evaluate end to end on tiny
synthetic volumes through the bundle's own configs."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

import numpy as np
import torch

from bundle.experiments.comparison import (
    DETECTORS,
    EVALUATE_CONFIG_FILES,
    TRAIN_CONFIG_FILES,
    boxes_from_label,
    boxes_to_candidates,
    build_detector,
    read_overrides_file,
)
from tests.configs.test_workflows import write_cases

ROOT = Path(__file__).resolve().parents[3]  # the bundle root: python -m scripts.<name> runs from it
SCRIPT = [sys.executable, "-m", "scripts.detector_baseline"]


class TestBoxes(unittest.TestCase):
    def test_boxes_from_label_one_per_component(self):
        label = np.zeros((1, 20, 20, 10), np.uint8)
        label[0, 2:5, 3:7, 1:2] = 1
        label[0, 10:16, 12:14, 4:9] = 1
        boxes = boxes_from_label(torch.as_tensor(label))
        self.assertEqual(sorted(boxes.tolist()), [[2, 3, 1, 5, 7, 2], [10, 12, 4, 16, 14, 9]])
        self.assertEqual(tuple(boxes_from_label(np.zeros((8, 8, 8))).shape), (0, 6))
        with self.assertRaises(ValueError):
            boxes_from_label(np.zeros((8, 8)))

    def test_boxes_to_candidates_centres_scores_and_mask(self):
        affine = np.diag([-2.0, 1.0, 2.5, 1.0])
        affine[:3, 3] = [100.0, -50.0, 10.0]
        boxes = torch.tensor([[2.0, 3, 1, 5, 7, 2], [10, 12, 4, 16, 14, 9]])
        candidates = boxes_to_candidates(boxes, torch.tensor([0.3, 0.9], dtype=torch.float64), affine)
        self.assertEqual([c["score"] for c in candidates], [0.9, 0.3])  # highest score first
        # box [10, 16) x [12, 14) x [4, 9): centre voxel (12.5, 12.5, 6)
        np.testing.assert_allclose(candidates[0]["center_mm"], [100 - 2 * 12.5, -50 + 12.5, 10 + 2.5 * 6])
        mask = np.zeros((20, 20, 10), bool)
        mask[:8] = True  # keeps only the first box's centre (3, 4.5, 1)
        kept = boxes_to_candidates(boxes, torch.tensor([0.3, 0.9], dtype=torch.float64), affine, mask)
        self.assertEqual([c["score"] for c in kept], [0.3])
        with self.assertRaises(ValueError):
            boxes_to_candidates(boxes, torch.tensor([0.3]), affine)

    def test_label_boxes_round_trip_to_lesion_centres(self):
        label = np.zeros((1, 24, 24, 12), np.uint8)
        label[0, 4:9, 6:11, 2:5] = 1
        affine = np.diag([0.8, 0.8, 2.5, 1.0])
        (candidate,) = boxes_to_candidates(boxes_from_label(label), torch.ones(1), affine)
        centroid = np.argwhere(label[0]).mean(0)
        np.testing.assert_allclose(candidate["center_mm"], (affine @ np.append(centroid, 1))[:3])


class TestDetectors(unittest.TestCase):
    def test_build(self):
        sizes = {n: sum(p.numel() for p in build_detector(n).network.parameters()) for n in DETECTORS}
        self.assertGreater(sizes["retinanet_resnet50"], 5 * sizes["retinanet_resnet10"])
        with self.assertRaises(ValueError):
            build_detector("retinanet_resnet18")

    def test_train_step_with_and_without_boxes(self):
        torch.manual_seed(0)
        detector = build_detector("retinanet_resnet10")
        detector.train()
        images = [torch.rand(1, 32, 32, 16), torch.rand(1, 32, 32, 16)]
        targets = [
            {"box": torch.tensor([[8.0, 8, 4, 14, 15, 8]]), "label": torch.zeros(1, dtype=torch.long)},
            {"box": torch.zeros(0, 6), "label": torch.zeros(0, dtype=torch.long)},
        ]
        losses = detector(images, targets)
        loss = losses[detector.cls_key] + losses[detector.box_reg_key]
        self.assertTrue(torch.isfinite(loss))
        loss.backward()
        grads = [p.grad for p in detector.network.parameters() if p.grad is not None]
        self.assertTrue(grads and any(float(g.abs().sum()) > 0 for g in grads))


class TestEndToEnd(unittest.TestCase):
    def test_train_and_evaluate_through_the_script(self):
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            entries = write_cases(tmp, 4)
            (tmp / "datalist.json").write_text(json.dumps({"training": entries[:3], "validation": entries[3:]}))
            overrides = {"bundle_root": str(ROOT), "dataset_dir": str(tmp), "num_val_cases": 1, "batch_size": 1,
                         "num_samples": 2, "patch_size": [32, 32, 16], "seed": 0}
            (tmp / "overrides.json").write_text(json.dumps(overrides))
            common = ["--name", "retinanet_resnet10", "--overrides_file", str(tmp / "overrides.json")]
            subprocess.run([*SCRIPT, "train", *common, "--output_dir", str(tmp / "det"), "--epochs", "2"],
                           check=True, cwd=ROOT, capture_output=True)
            record = json.loads((tmp / "det" / "train_time.json").read_text())
            self.assertEqual((record["epochs_completed"], record["iterations"]), (2, 4))  # 2 cases x 2 epochs
            proc = subprocess.run([*SCRIPT, "evaluate", *common, "--weights", str(tmp / "det" / "model.pt"),
                                   "--eval_dir", str(tmp / "eval")], cwd=ROOT, capture_output=True, text=True)
            self.assertEqual(proc.returncode, 0, proc.stderr[-2000:])
            results = json.loads((tmp / "eval" / "metrics.json").read_text())
            self.assertEqual((results["n_scans"], results["n_lesions"]), (1, 2))
            self.assertAlmostEqual(results["params_millions"], 2.072469, places=5)
            self.assertGreater(results["seconds_per_volume"], 0)
            self.assertIn("| recall", proc.stdout.lower())
            self.assertTrue((tmp / "eval" / "froc.png").is_file() and (tmp / "eval" / "per_scan.json").is_file())

    def test_bad_input_exits_with_one_line(self):
        proc = subprocess.run([*SCRIPT, "evaluate", "--name", "retinanet_resnet10", "--weights", "/nonexistent.pt",
                               "--eval_dir", "/tmp/x"], capture_output=True, text=True, cwd=ROOT)
        self.assertEqual(proc.returncode, 1)
        self.assertEqual(proc.stderr.strip(), "/nonexistent.pt: no such weights file.")
        with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
            f.write("[1, 2]")
            f.flush()
            proc = subprocess.run([*SCRIPT, "train", "--name", "retinanet_resnet10", "--output_dir", "/tmp/x",
                                   "--overrides_file", f.name], capture_output=True, text=True, cwd=ROOT)
        self.assertEqual(proc.returncode, 1)
        self.assertEqual(proc.stderr.strip(), f"{f.name}: the overrides file must hold a JSON object, got list.")


class TestOverridesFile(unittest.TestCase):
    def test_read(self):
        self.assertEqual(read_overrides_file(None), {})
        self.assertEqual(read_overrides_file(""), {})
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "o.json"
            path.write_text(json.dumps({"seed": 3}))
            self.assertEqual(read_overrides_file(str(path), weights=str(path)), {"seed": 3})
            with self.assertRaisesRegex(ValueError, r"w.pt: no such weights file.$"):
                read_overrides_file(str(path), weights=str(Path(tmp) / "w.pt"))  # checked first
            path.write_text("{")
            with self.assertRaisesRegex(ValueError, r"o.json: cannot read the overrides file \("):
                read_overrides_file(str(path))
            with self.assertRaisesRegex(ValueError, r"nowhere.json: cannot read the overrides file \("):
                read_overrides_file(str(Path(tmp) / "nowhere.json"))

    def test_config_files_are_the_bundles(self):
        self.assertEqual(TRAIN_CONFIG_FILES, [str(ROOT / "configs" / "train.json")])
        self.assertEqual(EVALUATE_CONFIG_FILES, [str(ROOT / "configs" / f) for f in ("train.json", "evaluate.json")])
        self.assertTrue(all(Path(f).is_file() for f in EVALUATE_CONFIG_FILES))


if __name__ == "__main__":
    unittest.main()
