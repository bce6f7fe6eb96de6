from __future__ import annotations

import tempfile
import unittest
from pathlib import Path

import numpy as np
import torch
from monai.utils import set_determinism
from parameterized import parameterized
from PIL import Image

from bundle.classification.figures import gradcam_maps, plot_gradcam_grid, plot_prediction_grid, prediction_title
from bundle.classification.networks import GhostCAClassifier

NAMES = ["normal", "pneumonia"]

# (y_true, y_pred, prob, expected text, expected colour)
TITLE_CASES = [
    [0, 0, None, "true: normal\npred: normal", "green"],
    [1, 0, 0.91, "true: pneumonia\npred: normal 0.91", "red"],
    [None, 1, 0.5, "pred: pneumonia 0.50", "black"],
]


class TestFigures(unittest.TestCase):
    @parameterized.expand(TITLE_CASES)
    def test_title(self, y_true, y_pred, prob, text, colour):
        self.assertEqual(prediction_title(y_true, y_pred, NAMES, prob), (text, colour))

    def test_grid_files(self):
        images = [torch.rand(3, 16, 16) for _ in range(5)]
        with tempfile.TemporaryDirectory() as tmp:
            path = plot_prediction_grid(images, [0, 1, 0, 1, 1], [0, 1, 1, 1, 0], NAMES, Path(tmp) / "f" / "g.png",
                                        probs=[0.9, 0.8, 0.6, 0.7, 0.55], n_columns=3, title="t")
            self.assertEqual(Image.open(path).format, "PNG")
            self.assertLess(path.stat().st_size, 300_000)
            maps = [[np.random.default_rng(i).random((16, 16)) for _ in range(5)] for i in range(2)]
            path = plot_gradcam_grid(images, maps, ["a", "b"], Path(tmp) / "cam.png", column_titles=list("vwxyz"))
            self.assertEqual(Image.open(path).size[1] > Image.open(path).size[0] / 5, True)
        with self.assertRaisesRegex(ValueError, "equal lengths"):
            plot_prediction_grid(images, [0], [0, 1, 1, 1, 0], NAMES, "x.png")
        with self.assertRaisesRegex(ValueError, "rows"):
            plot_gradcam_grid(images, [[None] * 4], ["a"], "x.png")

    def test_gradcam(self):
        set_determinism(seed=0)
        net = GhostCAClassifier(in_channels=1, num_classes=2, features=(4, 8, 8))
        net.train()
        x = torch.rand(2, 1, 24, 20)
        maps = gradcam_maps(net, x)
        self.assertEqual(maps.shape, (2, 24, 20))
        self.assertAlmostEqual(float(maps.reshape(2, -1).max(1).min()), 1.0, places=5)  # scaled per image, max -> 1
        self.assertAlmostEqual(float(maps.min()), 0.0, places=5)
        self.assertTrue(net.training)  # mode restored
        self.assertTrue(all(p.grad is None for p in net.parameters()))  # no gradients left behind
        with self.assertRaisesRegex(ValueError, "target_layer"):
            gradcam_maps(torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3)), x)


if __name__ == "__main__":
    unittest.main()
