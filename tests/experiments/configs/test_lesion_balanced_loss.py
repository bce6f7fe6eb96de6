"""bundle/experiments/configs/lesion_balanced_loss.json (issue #21, size-aware training; layered on configs/train.json):
the training loss becomes the per-lesion weighted one, on the training grid's spacing."""

from __future__ import annotations

import math
import unittest
from pathlib import Path

from monai.bundle import ConfigParser

from bundle.experiments.lesion_loss import LesionBalancedLoss

ROOT = Path(__file__).resolve().parents[3]


class TestLesionBalancedLossOverride(unittest.TestCase):
    def test_override_swaps_the_loss(self):
        parser = ConfigParser()
        parser.read_config([str(ROOT / "configs" / "train.json"),
                            str(ROOT / "bundle" / "experiments" / "configs" / "lesion_balanced_loss.json")])
        loss = parser.get_parsed_content("loss")
        self.assertIsInstance(loss, LesionBalancedLoss)
        spacing = parser.get_parsed_content("pixdim")
        self.assertAlmostEqual(loss.reference_voxels, math.pi / 6 * 10.0**3 / math.prod(spacing))
        default = ConfigParser()
        default.read_config(str(ROOT / "configs" / "train.json"))
        self.assertEqual(type(default.get_parsed_content("loss")).__name__, "DiceFocalLoss")


if __name__ == "__main__":
    unittest.main()
