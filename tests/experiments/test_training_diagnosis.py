"""The training-pipeline diagnosis: contrast through the percentile clip, and the one-case overfit (phantom set)."""

from __future__ import annotations

import json
import tempfile
import unittest
from pathlib import Path

import nibabel as nib
import numpy as np

from bundle.experiments.training_diagnosis import dataset_contrasts, lesion_contrasts, overfit_case
from tests.data.synthetic.phantom_fixtures import build_phantom_dataset

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def _head(shape=(40, 40, 20)) -> tuple[np.ndarray, np.ndarray]:
    """Background 0, tissue 100, a hyper lesion (300, brighter than everything else) and a hypo one (50)."""
    image = np.zeros(shape, np.float32)
    image[5:35, 5:35, 3:17] = 100.0
    label = np.zeros(shape, np.uint8)
    image[10:14, 10:14, 8:12], label[10:14, 10:14, 8:12] = 300.0, 1  # 64 voxels: above the 99.5th percentile
    image[25:29, 25:29, 8:12], label[25:29, 25:29, 8:12] = 50.0, 1
    return image, label


class TestLesionContrasts(unittest.TestCase):
    def test_clip_flattens_the_bright_lesion_only(self):
        image, label = _head()
        hyper, hypo = lesion_contrasts(image, label)
        self.assertAlmostEqual(hyper["raw"], 200.0, places=3)
        self.assertEqual(hyper["above_upper"], 1.0)
        self.assertLess(hyper["clipped"], 0.5 * hyper["raw"])
        self.assertAlmostEqual(hypo["raw"], -50.0, places=3)
        self.assertAlmostEqual(hypo["clipped"], hypo["raw"], places=3)
        self.assertEqual(hypo["above_upper"], 0.0)
        # no clip at the top: the bright lesion keeps its contrast
        self.assertAlmostEqual(lesion_contrasts(image, label, upper=100.0)[0]["clipped"], 200.0, places=3)

    def test_dataset_summary(self):
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            image, label = _head()
            nib.save(nib.Nifti1Image(image, np.eye(4)), str(root / "i.nii.gz"))
            nib.save(nib.Nifti1Image(label, np.eye(4)), str(root / "l.nii.gz"))
            (root / "datalist.json").write_text(json.dumps({"training": [{"image": "i.nii.gz", "label": "l.nii.gz"}]}))
            summary = dataset_contrasts(root)
        self.assertEqual((summary["lesions"], summary["flattened"]), (2, 1))


class TestOverfitCase(unittest.TestCase):
    def test_runs_the_training_pipeline_on_one_case(self):
        with tempfile.TemporaryDirectory() as tmp:
            datalist = build_phantom_dataset(Path(tmp) / "set")
            overrides = {"dataset_dir": str(datalist.parent), "num_val_cases": 1, "patch_size": [32, 32, 16]}
            result = overfit_case([str(CONFIGS / "train.json")], steps=2, overrides=overrides)
            with self.assertRaisesRegex(ValueError, "case_index"):
                overfit_case([str(CONFIGS / "train.json")], steps=1, case_index=5, overrides=overrides)
            labels = json.loads(datalist.read_text())["training"][0]["lesions"]
        self.assertEqual(result["lesions"], len(labels))
        self.assertTrue(0.0 <= result["dice"] <= 1.0)
        self.assertTrue(0 <= result["lesions_hit"] <= result["lesions"])
        self.assertTrue(np.isfinite(result["first_loss"]) and np.isfinite(result["last_loss"]))
        self.assertEqual(result["steps"], 2)
        self.assertEqual(len(result["loss_curve"]), 2)  # one mean per tenth of the steps, at most one per step
        self.assertAlmostEqual(result["loss_curve"][0], result["first_loss"], places=3)

    def test_ill_arg(self):
        with self.assertRaisesRegex(ValueError, "steps"):
            overfit_case([str(CONFIGS / "train.json")], steps=0)


if __name__ == "__main__":
    unittest.main()
