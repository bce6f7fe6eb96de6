"""The MRI variants: training (``configs/variants/mri_train.json`` on ``configs/train.json``) and evaluation
(``configs/train.json`` + ``configs/evaluate.json`` + ``configs/variants/mri_train.json`` +
``configs/variants/mri_evaluate.json``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from monai.bundle import ConfigParser
from monai.engines import default_prepare_batch

CT_ONLY = ("LungCandidateMaskd",)
CONFIGS = Path(__file__).resolve().parents[3] / "configs"


def write_head(folder: Path) -> dict[str, str]:
    """A tiny MRI-like volume (1 mm) with one bright 4-voxel lesion, and its label."""
    rng = np.random.default_rng(0)
    img = rng.normal(300.0, 20.0, (24, 24, 20)).astype(np.float32)
    lab = np.zeros(img.shape, dtype=np.uint8)
    lab[10:12, 10:12, 9:10] = 1
    img[lab > 0] += 200.0
    paths = {"image": str(folder / "img.nii.gz"), "label": str(folder / "lab.nii.gz")}
    nib.save(nib.Nifti1Image(img, np.eye(4)), paths["image"])
    nib.save(nib.Nifti1Image(lab, np.eye(4)), paths["label"])
    return paths


class TestMriOverride(unittest.TestCase):
    def test_train_sampling_has_no_ct_steps_and_yields_patches(self):
        parser = ConfigParser()
        parser.read_config([str(CONFIGS / "train.json"), str(CONFIGS / "variants" / "mri_train.json")])
        parser["patch_size"] = [16, 16, 8]
        parser["num_samples"] = 3
        with tempfile.TemporaryDirectory() as tmp:
            item = write_head(Path(tmp))
            pipeline = parser.get_parsed_content("train#preprocessing")
            names = [type(t).__name__ for t in pipeline.transforms]
            self.assertFalse(set(CT_ONLY) & set(names))
            self.assertIn("ClipIntensityPercentilesd", names)
            samples = pipeline(item)
        self.assertEqual(len(samples), 3)
        for s in samples:
            self.assertEqual(tuple(s["image"].shape), (1, 16, 16, 8))
            self.assertNotIn("sample_weight", s)
            self.assertLess(float(s["image"].abs().max()), 1.5)  # [0, 1] plus the augmentation's noise

    def test_evaluation_override_drops_the_lung_mask(self):
        parser = ConfigParser()
        parser.read_config(
            [str(CONFIGS / f) for f in ("train.json", "evaluate.json", "variants/mri_train.json", "variants/mri_evaluate.json")]
        )
        names = [type(t).__name__ for t in parser.get_parsed_content("validate#preprocessing").transforms]
        self.assertFalse(set(CT_ONLY) & set(names))
        self.assertIsNone(parser.get_parsed_content("validate#key_metric#heldout_cpm#output_transform").mask_key)
        self.assertTrue(parser.get_parsed_content("dataset_dir").endswith("synth_mri"))
        # no lung mask, so no mask for the inferer's gate either
        self.assertIs(parser.get_parsed_content("validate#evaluator#prepare_batch"), default_prepare_batch)
        self.assertFalse(parser.get_parsed_content("validate#inferer").mask_gate)


class TestMriInferenceVariant(unittest.TestCase):
    """``configs/variants/mri.json`` on ``configs/inference.json``: the MRI preprocessing, no lung mask, the shipped
    MRI weights (``models/mri/model.pt``, from ``configs/variants/mri_train.json``)."""

    def setUp(self):
        self.parser = ConfigParser()
        self.parser.read_config([str(CONFIGS / "inference.json"), str(CONFIGS / "variants" / "mri.json")])
        self.parser["bundle_root"] = str(CONFIGS.parent)

    def test_preprocessing_weights_and_no_sample(self):
        names = [type(t).__name__ for t in self.parser.get_parsed_content("preprocessing").transforms]
        self.assertFalse(set(CT_ONLY) & set(names))
        self.assertNotIn("ScaleIntensityRanged", names)  # no HU window
        self.assertFalse(self.parser.get_parsed_content("use_lung_mask"))
        ckpt = Path(self.parser.get_parsed_content("ckpt_path"))
        self.assertEqual(ckpt, CONFIGS.parent / "models" / "mri" / "model.pt")
        network = self.parser.get_parsed_content("network_def")
        network.load_state_dict(torch.load(ckpt, map_location="cpu", weights_only=True))  # strict: the same layout
        with self.assertRaises(RuntimeError) as ctx:  # no sample: a brain MRI folder must be given
            self.parser.get_parsed_content("dataset_scan")
        self.assertIn("dataset_dir is not set: pass --dataset_dir", str(ctx.exception.__cause__))

    def test_command_line_on_a_head(self):
        with tempfile.TemporaryDirectory() as tmp:
            data = Path(tmp) / "heads"
            data.mkdir()
            write_head(data)
            (data / "lab.nii.gz").unlink()
            out = Path(tmp) / "out"
            command = [sys.executable, "-m", "monai.bundle", "run", "--config_file",
                       "['configs/inference.json','configs/variants/mri.json']", "--dataset_dir", str(data),
                       "--output_dir", str(out), "--quiet", "True"]  # fmt: skip
            proc = subprocess.run(command, cwd=str(CONFIGS.parent), capture_output=True, text=True, timeout=600,
                                  env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip
            self.assertEqual(proc.returncode, 0, proc.stderr[-2000:])
            doc = json.loads((out / "img" / "lesions.json").read_text())
            self.assertEqual(doc["case"], "img")
            self.assertTrue((out / "img" / "seg.nii.gz").is_file())
            missing = [c for c in command if c not in ("--dataset_dir", str(data))]
            proc = subprocess.run(missing, cwd=str(CONFIGS.parent), capture_output=True, text=True, timeout=600)
            self.assertEqual(proc.returncode, 1, proc.stderr[-2000:])
            self.assertIn("error: ValueError: dataset_dir is not set: pass --dataset_dir", proc.stderr)


if __name__ == "__main__":
    unittest.main()
