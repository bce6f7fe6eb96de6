from __future__ import annotations

import json
import tempfile
import unittest
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

from bundle.experiments.analysis.pipeline import run_case_layers, run_features
from bundle.networks import GhostCAUNet
from bundle.transforms import ct_preprocessing


def write_cube_case(folder: Path, name: str, value: float = 100.0) -> dict:
    image = np.full((16, 16, 12), -800.0, np.float32)
    image[6:10, 6:10, 4:8] = value
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    nib.save(nib.Nifti1Image(image, affine), folder / f"{name}.nii.gz")
    nib.save(nib.Nifti1Image((image > -800).astype(np.uint8), affine), folder / f"{name}_label.nii.gz")
    return {"case": name, "image": f"{name}.nii.gz", "label": f"{name}_label.nii.gz"}


class TestPipeline(unittest.TestCase):
    def test_run_features_writes_tables(self):
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            entries = [write_cube_case(root, "a", 100.0), write_cube_case(root, "b", 300.0)]
            (root / "datalist.json").write_text(json.dumps({"training": entries[:1], "validation": entries[1:]}))
            result = run_features(root / "datalist.json", root / "out" / "feat", split="all", ring_mm=2.0)
            self.assertEqual((result["n_cases"], result["n_lesions"]), (2, 2))
            small = result["bands"][0]
            self.assertEqual((small["band"], small["n"], small["lesion_mean"], small["surround_mean"]),
                             ("3-5", 2, 200.0, -800.0))
            saved = json.loads((root / "out" / "feat.json").read_text())
            self.assertEqual(saved["lesions"][1]["case"], "b")
            self.assertIn("| 3-5 | 2 |", (root / "out" / "feat.md").read_text())
            self.assertEqual((root / "out" / "feat.png").read_bytes()[:4], b"\x89PNG")

    def test_run_features_bad_label(self):
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            entry = write_cube_case(root, "a")
            nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.uint8), np.eye(4)), root / "a_label.nii.gz")
            (root / "datalist.json").write_text(json.dumps({"training": [entry]}))
            with self.assertRaisesRegex(ValueError, "a_label.nii.gz: label shape"):
                run_features(root / "datalist.json", root / "feat", split="training")

    def test_run_case_layers_writes_slice_figure(self):
        torch.manual_seed(0)
        net = GhostCAUNet(features=(4, 8, 8, 8)).eval()
        pre = ct_preprocessing(keys=["image"], pixdim=None, normalize="window", reader="NibabelReader")
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            write_cube_case(root, "a")
            case_dir = root / "out" / "a"
            case_dir.mkdir(parents=True)
            inside = {"center_mm": [7.5, 7.5, 5.5], "diameter_mm": 4.0, "score": 0.9, "tier": "high"}
            outside = {"center_mm": [7.5, 7.5, 40.0], "diameter_mm": 4.0, "score": 0.5, "tier": "high"}  # off the slab
            (case_dir / "lesions.json").write_text(json.dumps({"case": "a", "image": str(root / "a.nii.gz"),
                                                               "lesions": [inside, outside]}))
            result = run_case_layers(net, pre, case_dir, root / "fig" / "layers", lesion=1, roi=(8, 8, 8))
            self.assertEqual((result["slab"], result["slice"]), ([2, 10], 6))  # 8 slices centred on z = 5.5 -> 6
            self.assertEqual(result["image"], "a.nii.gz")  # outside the working directory: no absolute path
            self.assertEqual([r["detection"] for r in result["ratios"]], [1])
            self.assertTrue(all(result["ratios"][0][k] > 0 for k in ("enc0", "enc3", "dec3")))
            self.assertEqual((root / "fig" / "layers.png").read_bytes()[:4], b"\x89PNG")
            self.assertIn("| 1 | 4.00 |", (root / "fig" / "layers.md").read_text())
            with self.assertRaisesRegex(ValueError, "lesions.json: lesion must be 1..2"):
                run_case_layers(net, pre, case_dir, root / "fig" / "layers", lesion=3, roi=(8, 8, 8))


if __name__ == "__main__":
    unittest.main()
