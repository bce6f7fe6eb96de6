"""Smoke tests: every bundle config runs end to end through MONAI's ConfigWorkflow on tiny synthetic NIfTI files."""

from __future__ import annotations

import json
import os
import tempfile
import unittest
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from monai.bundle import ConfigWorkflow

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs"


def write_cases(folder: Path, n: int, shape=(48, 48, 24), seed: int = 0) -> list[dict]:
    """Tiny CT-like volumes in HU with bright spherical 'nodules' and their label masks."""
    rng = np.random.default_rng(seed)
    affine = np.diag([1.0, 1.0, 2.5, 1.0])
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), -1).astype(np.float32)
    entries = []
    for i in range(n):
        image = rng.normal(-800.0, 30.0, shape).astype(np.float32)  # lung-like background
        label = np.zeros(shape, np.uint8)
        for _ in range(2):
            center = rng.uniform([10, 10, 6], [shape[0] - 10, shape[1] - 10, shape[2] - 6])
            radius = rng.uniform(3.0, 5.0)
            dist = np.linalg.norm((grid - center) * np.array([1.0, 1.0, 2.5]), axis=-1)
            image[dist <= radius] = 40.0
            label[dist <= radius] = 1
        nib.save(nib.Nifti1Image(image, affine), folder / f"case{i}.nii.gz")
        nib.save(nib.Nifti1Image(label, affine), folder / f"case{i}_label.nii.gz")
        entries.append({"image": f"case{i}.nii.gz", "label": f"case{i}_label.nii.gz", "host": f"h{i}"})
    return entries


class TestTrainWorkflow(unittest.TestCase):
    def test_train_one_epoch_and_calibrate(self):
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            entries = write_cases(tmp, 5)
            (tmp / "datalist.json").write_text(json.dumps({"training": entries[:4], "validation": entries[4:]}))
            override = {
                "bundle_root": str(ROOT),
                "dataset_dir": str(tmp),
                "output_dir": str(tmp / "run"),
                "ckpt_dir": str(tmp / "models"),
                "epochs": 2,
                "val_interval": 1,
                "num_val_cases": 1,
                "batch_size": 1,
                "num_samples": 2,
                "patch_size": [32, 32, 16],
                "pixdim": [1.0, 1.0, 2.5],
                "calibration_windows_per_case": 2,
            }
            os.makedirs(tmp / "models")
            workflow = ConfigWorkflow(
                config_file=str(CONFIGS / "train.json"),
                meta_file=str(CONFIGS / "metadata.json"),
                logging_file=str(CONFIGS / "logging.conf"),
                workflow_type="train",
                **override,
            )
            workflow.initialize()
            workflow.run()
            workflow.finalize()
            trainer = workflow.parser.get_parsed_content("train#trainer")
            self.assertEqual(trainer.state.epoch, 2)
            evaluator = workflow.parser.get_parsed_content("validate#evaluator")
            self.assertIn("val_cpm", evaluator.state.metrics)
            self.assertTrue(0.0 <= evaluator.state.metrics["val_cpm"] <= 1.0)
            # the finalize step writes calibrated weights: the prototype is a unit vector after calibration
            state = torch.load(tmp / "models" / "model.pt", weights_only=True)
            self.assertAlmostEqual(float(state["prototype"].norm()), 1.0, places=4)
            self.assertTrue((tmp / "run").is_dir())
            self.assertTrue(any(p.name.startswith("last") for p in (tmp / "run").iterdir()))

            # evaluate.json on top of train.json: held-out list, routed inference, lung mask, report files
            evaluation = ConfigWorkflow(
                config_file=[str(CONFIGS / "train.json"), str(CONFIGS / "evaluate.json")],
                meta_file=str(CONFIGS / "metadata.json"),
                logging_file=str(CONFIGS / "logging.conf"),
                workflow_type="train",
                eval_dir=str(tmp / "eval"),
                **override,
            )
            evaluation.initialize()
            evaluation.run()
            results = json.loads((tmp / "eval" / "metrics.json").read_text())
            self.assertEqual(results["n_scans"], 1)
            self.assertGreater(results["n_lesions"], 0)
            for key in ("recall", "precision", "f1", "cpm"):
                self.assertTrue(0.0 <= results[key] <= 1.0, key)
            self.assertTrue((tmp / "eval" / "froc.png").stat().st_size > 1000)
            self.assertTrue((tmp / "eval" / "per_scan.json").is_file())
            # the lung mask reaches the routed inferer's gate, as in configs/inference.json
            evaluator = evaluation.parser.get_parsed_content("validate#evaluator")
            self.assertEqual(evaluator.prepare_batch.extra_keys, {"mask": "lung_mask"})
            self.assertTrue(evaluator.inferer.mask_gate)


if __name__ == "__main__":
    unittest.main()
