"""bundle/experiments/configs/balanced_sampling.json (not adopted; layered on configs/train.json): lesion-balanced
sampling with negatives mostly inside the lung envelope."""

from __future__ import annotations

import unittest
from pathlib import Path

from monai.bundle import ConfigParser

ROOT = Path(__file__).resolve().parents[3]


class TestBalancedSamplingOverride(unittest.TestCase):
    def test_override_swaps_the_sampler(self):
        default = ConfigParser()
        default.read_config(str(ROOT / "configs" / "train.json"))
        balanced = ConfigParser()
        balanced.read_config([str(ROOT / "configs" / "train.json"),
                              str(ROOT / "bundle" / "experiments" / "configs" / "balanced_sampling.json")])
        names = [type(t).__name__ for t in default.get_parsed_content("train#preprocessing").transforms]
        self.assertIn("RandCropByPosNegLabeld", names)
        names = [type(t).__name__ for t in balanced.get_parsed_content("train#preprocessing").transforms]
        self.assertNotIn("RandCropByPosNegLabeld", names)
        i = names.index("LesionBalancedWeightd")
        self.assertEqual(names[i - 1 : i + 3], ["LungCandidateMaskd", "LesionBalancedWeightd", "RandWeightedCropd",
                                                "DeleteItemsd"])


if __name__ == "__main__":
    unittest.main()
