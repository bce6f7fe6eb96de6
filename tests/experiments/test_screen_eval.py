"""bundle.experiments.screen_eval: the mask-gated sliding-window grid of one case, screened and labelled."""

from __future__ import annotations

import unittest

import numpy as np
import torch
from monai.networks import eval_mode

from bundle.experiments.screen_eval import screen_case
from bundle.networks import GhostCAUNet


class TestScreenCase(unittest.TestCase):
    def test_grid_gate_and_labels(self):
        torch.manual_seed(0)
        net = GhostCAUNet(features=(4, 8, 8, 16), stem_stride=(2, 2, 1), refine_channels=4, learned_screen=True)
        image = torch.rand(1, 56, 40, 20) * 0.1
        label = torch.zeros(1, 56, 40, 20)
        label[0, 2:5, 2:5, 2:5] = 1  # one lesion, in the first x windows only
        mask = torch.zeros(1, 56, 40, 20)
        mask[0, :10] = 1  # the mask gate keeps the windows that start at x = 0
        with eval_mode(net):
            case = screen_case(net, image, label, mask, (32, 32, 16))
        # x starts 0, 24; y starts 0, 8; z starts 0, 4: 8 windows, 4 of them hold a mask voxel
        self.assertEqual(case["num_windows"], 8)
        self.assertEqual(len(case["positive"]), 4)
        self.assertTrue((case["starts"][:, 0] == 0).all())
        # the lesion (x, y, z in 2..4) has voxels in every window whose y and z starts are <= 4
        expected = [bool(s[1] <= 4 and s[2] <= 4) for s in case["starts"]]
        self.assertEqual(sum(expected), 2)
        self.assertEqual(case["positive"].tolist(), expected)
        self.assertEqual(case["edge"].shape, (4,))
        self.assertTrue(((case["semantic"] >= 0) & (case["semantic"] <= 1)).all())
        np.testing.assert_allclose(case["lesion_centres"], [[3.0, 3.0, 3.0]])

    def test_small_volume_is_padded_like_the_inferer(self):
        net = GhostCAUNet(features=(4, 8, 8, 16), stem_stride=(2, 2, 1), refine_channels=4, learned_screen=True)
        image = torch.rand(1, 20, 40, 16)
        with eval_mode(net):
            case = screen_case(net, image, torch.zeros_like(image), torch.ones_like(image), (32, 32, 16))
        self.assertEqual(case["num_windows"], 2)  # x padded to 32; y starts 0, 8
        self.assertFalse(case["positive"].any())


if __name__ == "__main__":
    unittest.main()
