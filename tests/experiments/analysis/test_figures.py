"""bundle.experiments.analysis.figures: every figure is PNG bytes (the tables are bundle.experiments.markdown's)."""

from __future__ import annotations

import unittest

import numpy as np

from bundle.experiments.analysis.figures import plot_features, plot_layer_maps, plot_layer_ratios, plot_screening

PNG = b"\x89PNG"


class TestFigures(unittest.TestCase):
    def test_features(self):
        rows = [{"band": "3-6", "n": 2, "lesion_mean": -100.0, "lesion_mean_sd": 5.0, "surround_mean": -800.0,
                 "lesion_var": 25.0, "surround_var": None, "lesion_gradient": 30.0},
                {"band": "6-10", "n": 0}]  # an empty band: no bars
        self.assertEqual(plot_features(rows, "title")[:4], PNG)

    def test_layer_ratios_and_screening(self):
        self.assertEqual(plot_layer_ratios({"shallow": {"ratio": 1.5}, "deep": {"ratio": 3.0}})[:4], PNG)
        self.assertEqual(plot_screening([0.1, 0.9, 0.5], [False, True, True], 0.75, "windows")[:4], PNG)
        self.assertEqual(plot_screening([0.1], [False], None)[:4], PNG)

    def test_layer_maps_cropped_to_a_region(self):
        image = np.zeros((33, 35), np.float32)
        mask = np.zeros_like(image, dtype=bool)
        mask[10:14, 12:16] = True
        crop = np.zeros_like(mask)
        crop[5:25, 5:30] = True
        maps = {"shallow": np.random.default_rng(0).random(image.shape), "deep": mask.astype(np.float32)}
        for kwargs in ({}, {"crop": crop, "palette": True}, {"crop": np.zeros_like(mask)}):
            self.assertEqual(plot_layer_maps(image, maps, mask, "slice", **kwargs)[:4], PNG)


if __name__ == "__main__":
    unittest.main()
