"""The per-lesion weighted loss of the size-aware training experiment (bundle.experiments.lesion_loss)."""

from __future__ import annotations

import math
import unittest

import numpy as np
import torch

from bundle.experiments.lesion_loss import LesionBalancedLoss, lesion_weights


def _patch() -> np.ndarray:
    """(16, 16, 8): a big lesion of 4 x 4 x 4 = 64 voxels and a small one of 2 voxels."""
    label = np.zeros((16, 16, 8), dtype=np.uint8)
    label[2:6, 2:6, 2:6] = 1
    label[12, 12, 3:5] = 1
    return label


class TestLesionWeights(unittest.TestCase):
    def test_every_lesion_weighs_the_same(self):
        weights = lesion_weights(_patch(), reference_voxels=64.0, max_weight=50.0)
        self.assertEqual(float(weights[0, 0, 0]), 1.0)  # background
        self.assertEqual(float(weights[2:6, 2:6, 2:6].sum()), 64.0)  # the reference-sized lesion: weight 1
        self.assertEqual(float(weights[12, 12, 3:5].sum()), 64.0)  # 2 voxels of weight 32: the same total

    def test_clipped(self):
        weights = lesion_weights(_patch(), reference_voxels=640.0, max_weight=50.0)
        self.assertEqual(float(weights[3, 3, 3]), 10.0)
        self.assertEqual(float(weights[12, 12, 3]), 50.0)  # 320 clipped to max_weight
        larger = lesion_weights(_patch(), reference_voxels=8.0, max_weight=50.0)
        self.assertEqual(float(larger[3, 3, 3]), 1.0)  # larger than the reference: never below 1
        np.testing.assert_array_equal(lesion_weights(np.zeros((4, 4, 4)), 8.0, 50.0), np.ones((4, 4, 4)))


class TestLesionBalancedLoss(unittest.TestCase):
    def setUp(self):
        self.label = torch.from_numpy(_patch()).float()[None, None]  # (1, 1, 16, 16, 8)
        self.loss = LesionBalancedLoss(spacing_mm=(1.0, 1.0, 2.5), reference_diameter_mm=10.0)

    def _logits(self, find_big: bool, find_small: bool) -> torch.Tensor:
        found = torch.zeros_like(self.label)
        found[..., 2:6, 2:6, 2:6] = float(find_big)
        found[..., 12, 12, 3:5] = float(find_small)
        return torch.cat([-4.0 * (2 * found - 1), 4.0 * (2 * found - 1)], dim=1)

    def test_reference_volume(self):
        self.assertAlmostEqual(self.loss.reference_voxels, math.pi / 6 * 1000 / 2.5)

    def test_missing_the_small_lesion_costs(self):
        perfect = float(self.loss(self._logits(True, True), self.label))
        self.assertLess(perfect, float(self.loss(self._logits(True, False), self.label)))
        # a reference lesion of 64 voxels: missing the 2-voxel lesion costs the focal term as much as missing the big
        # one; without the weights (max_weight 1) 32 times less
        reference_mm = (64 * 2.5 * 6 / math.pi) ** (1 / 3)
        for max_weight, ratio in ((50.0, 1.0), (1.0, 1 / 32)):
            loss = LesionBalancedLoss(spacing_mm=(1.0, 1.0, 2.5), reference_diameter_mm=reference_mm,
                                      max_weight=max_weight)  # fmt: skip
            base = float(loss.focal(self._logits(True, True), self.label))
            small = float(loss.focal(self._logits(True, False), self.label)) - base
            big = float(loss.focal(self._logits(False, True), self.label)) - base
            self.assertAlmostEqual(small / big, ratio, places=4)

    def test_gradient(self):
        logits = self._logits(True, False).requires_grad_(True)
        self.loss(logits, self.label).backward()
        self.assertLess(float(logits.grad[0, 1, 12, 12, 3]), 0.0)  # pushes the missed lesion towards foreground

    def test_bad_arguments(self):
        for kwargs in ({"spacing_mm": (0.0, 1.0, 1.0)}, {"spacing_mm": (1, 1, 1), "max_weight": 0.5},
                       {"spacing_mm": (1, 1, 1), "gamma": -1.0}, {"spacing_mm": (1, 1, 1), "reference_diameter_mm": 0}):
            with self.assertRaises(ValueError, msg=str(kwargs)):
                LesionBalancedLoss(**kwargs)


if __name__ == "__main__":
    unittest.main()
