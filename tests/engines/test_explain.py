from __future__ import annotations

import json
import tempfile
import unittest
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from bundle.engines.explain import (
    LesionScore,
    ball_mask,
    explain_case,
    explain_outputs,
    lesion_gradcam,
    render_explanation,
)
from bundle.networks import GhostCAUNet
from bundle.transforms import ct_preprocessing
from tests.experiments.analysis.test_pipeline import write_cube_case


class _ConstLogits(nn.Module):
    """Logits: background 0, lesion = the input itself (so the lesion margin is x)."""

    def forward(self, x: torch.Tensor, enhancement: str = "full") -> torch.Tensor:
        return torch.cat([torch.zeros_like(x), x], dim=1)


def tiny_net() -> GhostCAUNet:
    torch.manual_seed(0)
    return GhostCAUNet(features=(4, 8, 8, 8)).eval()


class _FeatureLogits(nn.Module):
    """A 1x1 convolution (weight 1) as the Grad-CAM target layer; logits: background 0, lesion = its output."""

    def __init__(self) -> None:
        super().__init__()
        self.feat = nn.Conv3d(1, 1, 1)
        nn.init.ones_(self.feat.weight)
        nn.init.zeros_(self.feat.bias)

    def forward(self, x: torch.Tensor, enhancement: str = "full") -> torch.Tensor:
        f = self.feat(x)
        return torch.cat([torch.zeros_like(f), f], dim=1)


class TestExplain(unittest.TestCase):
    def test_ball_mask(self):
        self.assertEqual(int(ball_mask((5, 5, 5), (2, 2, 2), 1.0, (1, 1, 1)).sum()), 7)  # centre + 6 neighbours
        self.assertEqual(int(ball_mask((5, 5, 5), (2, 2, 2), 1.0, (1, 1, 2)).sum()), 5)  # z neighbours 2 mm away
        tiny = ball_mask((5, 5), (9.0, -3.0), 0.1, (1, 1))  # far outside: the nearest voxel only
        self.assertEqual(np.argwhere(tiny).tolist(), [[4, 0]])

    def test_lesion_score(self):
        mask = torch.zeros(1, 1, 4, 4)
        mask[0, 0, 1, 1] = mask[0, 0, 2, 2] = 1
        x = torch.arange(16.0).reshape(1, 1, 4, 4)
        out = LesionScore(_ConstLogits(), mask)(x)
        torch.testing.assert_close(out, torch.tensor([[-7.5, 7.5]]))  # mean of x at 5 and 10
        with self.assertRaisesRegex(ValueError, "empty mask"):
            LesionScore(_ConstLogits(), torch.zeros(1, 1, 4, 4))

    def test_gradcam_and_render(self):
        image = torch.rand(1, 20, 20, 12)
        result = lesion_gradcam(tiny_net(), image, (10.0, 9.0, 6.0), 3.0, (1.0, 1.0, 2.5), (16, 16, 8))
        self.assertEqual(result["cam"].shape, (16, 16, 8))
        self.assertTrue(result["cam"].min() >= 0.0 and result["cam"].max() <= 1.0 + 1e-6)
        self.assertEqual(result["center"], [8.0, 8.0, 4.0])  # window starts at (2, 1, 2)
        self.assertTrue(result["target"][8, 8, 4])
        png = render_explanation(result, "case #1", (1.0, 1.0, 2.5))
        self.assertEqual(png[:8], b"\x89PNG\r\n\x1a\n")
        with self.assertRaisesRegex(ValueError, "net must be a PyTorch network with parameters"):
            lesion_gradcam(_ConstLogits(), image, (10.0, 9.0, 6.0), 3.0, (1.0, 1.0, 2.5), (16, 16, 8))
        with self.assertRaisesRegex(ValueError, "target_layer"):
            lesion_gradcam(tiny_net(), image, (10.0, 9.0, 6.0), 3.0, (1.0, 1.0, 2.5), (16, 16, 8), "net.nothing")

    def test_gradcam_high_where_the_lesion_evidence_is(self):
        # the score's gradient at the 1x1 layer is a positive constant, so the CAM is the input itself, scaled:
        # 1 at the brightest voxel, 0 at the darkest (MONAI's default normaliser would give the reverse)
        image = torch.zeros(1, 8, 8, 8)
        image[0, 4, 4, 4], image[0, 3, 4, 4] = 2.0, 1.0
        result = lesion_gradcam(_FeatureLogits(), image, (4.0, 4.0, 4.0), 1.0, (1.0, 1.0, 1.0), (8, 8, 8), "net.feat")
        self.assertAlmostEqual(float(result["cam"][4, 4, 4]), 1.0, places=5)
        self.assertAlmostEqual(float(result["cam"][3, 4, 4]), 0.5, places=5)
        self.assertAlmostEqual(float(result["cam"][0, 0, 0]), 0.0, places=5)
        # the score is the mean of the input over the 7-voxel ball: its input gradient is 1/7 inside, 0 outside
        np.testing.assert_allclose(result["saliency"], result["target"].astype(np.float32), atol=1e-6)
        self.assertEqual(result["layer"], "feat")


class TestExplainOutputs(unittest.TestCase):
    def test_explain_case_writes_next_to_overlay(self):
        torch.manual_seed(0)
        net = GhostCAUNet(features=(4, 8, 8, 8)).eval()
        pre = ct_preprocessing(keys=["image"], pixdim=None, normalize="window", reader="NibabelReader")  # no ITK import
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            write_cube_case(root, "a")
            case_dir = root / "out" / "a"
            case_dir.mkdir(parents=True)
            lesion = {"center_mm": [7.5, 7.5, 5.5], "diameter_mm": 5.0, "score": 0.9, "tier": "high"}
            (case_dir / "lesions.json").write_text(json.dumps({"case": "a", "image": str(root / "a.nii.gz"),
                                                               "lesions": [lesion, lesion]}))
            written = explain_case(net, pre, case_dir, roi=(16, 16, 8), max_lesions=1)
            self.assertEqual([p.name for p in written], ["explain_1.png"])
            self.assertEqual((case_dir / "explain_1.png").read_bytes()[:4], b"\x89PNG")
            with self.assertRaisesRegex(ValueError, "lesions.json: cannot read"):
                explain_case(net, pre, root / "missing")

    def test_explain_outputs_every_case_and_skips_bad_ones(self):
        torch.manual_seed(0)
        net = GhostCAUNet(features=(4, 8, 8, 8)).eval()
        pre = ct_preprocessing(keys=["image"], pixdim=None, normalize="window", reader="NibabelReader")
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            write_cube_case(root, "a")
            lesion = {"center_mm": [7.5, 7.5, 5.5], "diameter_mm": 5.0, "score": 0.9, "tier": "high"}
            for case in ("a", "b", "c"):
                (root / "out" / case).mkdir(parents=True)
            (root / "out" / "a" / "lesions.json").write_text(
                json.dumps({"case": "a", "image": str(root / "a.nii.gz"), "lesions": [lesion]}))
            (root / "out" / "b" / "lesions.json").write_text("{")  # truncated file
            # "c" has no lesions.json (a failed case): not a case to explain
            with self.assertLogs("bundle.engines.explain", level="ERROR") as logs:
                written = explain_outputs(net, pre, root / "out", roi=(16, 16, 8))
            self.assertEqual([p.relative_to(root).as_posix() for p in written], ["out/a/explain_1.png"])
            self.assertEqual(len(logs.output), 1)
            self.assertIn("b/lesions.json: cannot read the lesions file", logs.output[0])
            with self.assertRaisesRegex(ValueError, "net must be a PyTorch network with parameters"):
                explain_outputs(torch.nn.Identity(), pre, root / "out")


if __name__ == "__main__":
    unittest.main()
