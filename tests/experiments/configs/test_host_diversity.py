"""bundle/experiments/configs/host_diversity.json (issue #21 part 6; layered on configs/train.json): augmentation that
imitates other patients and scanners (elastic deformation, HU offset and scale, noise level, reconstruction-kernel
blur and sharpening) after the source paper's augmentation, with image and label deformed together."""

from __future__ import annotations

import unittest
from pathlib import Path

import numpy as np
import torch
from monai.bundle import ConfigParser
from monai.transforms import Compose

ROOT = Path(__file__).resolve().parents[3]


class TestHostDiversity(unittest.TestCase):
    def setUp(self):
        self.parser = ConfigParser()
        self.parser.read_config([str(ROOT / "configs" / "train.json"),
                                 str(ROOT / "bundle" / "experiments" / "configs" / "host_diversity.json")])

    def test_appended_after_the_paper_augmentation(self):
        names = [type(t).__name__ for t in self.parser.get_parsed_content("train#preprocessing").transforms]
        added = ["Rand3DElasticd", "RandShiftIntensityd", "RandScaleIntensityd", "RandGaussianSmoothd",
                 "RandGaussianSharpend", "RandGaussianNoised"]
        self.assertEqual(names[-len(added):], added)
        default = ConfigParser()
        default.read_config(str(ROOT / "configs" / "train.json"))
        base = [type(t).__name__ for t in default.get_parsed_content("train#preprocessing").transforms]
        self.assertEqual(names[: len(base)], base)

    def test_label_follows_the_image(self):
        transforms = self.parser.get_parsed_content("host_diversity")
        for t in transforms:
            t.prob = 1.0  # every transform applied
        chain = Compose(transforms)
        chain.set_random_state(3)
        grid = np.stack(np.meshgrid(*[np.arange(s) - s / 2 for s in (48, 48, 24)], indexing="ij"))
        ball = ((grid[0] ** 2 + grid[1] ** 2 + (2.5 * grid[2]) ** 2) <= 10.0**2)[None]
        image = torch.as_tensor(0.2 + 0.6 * ball, dtype=torch.float32)
        for _ in range(5):
            out = chain({"image": image.clone(), "label": torch.as_tensor(ball, dtype=torch.float32)})
            img, lab = np.asarray(out["image"]), np.asarray(out["label"]) > 0.5
            self.assertTrue(set(np.unique(np.asarray(out["label"]))) <= {0.0, 1.0})  # nearest: still a label
            self.assertGreater(lab.sum(), 0.5 * ball.sum())
            self.assertGreater(img[lab].mean() - img[~lab].mean(), 0.4)  # the label still lies on the bright ball


if __name__ == "__main__":
    unittest.main()
