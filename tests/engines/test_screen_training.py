from __future__ import annotations

import unittest

import torch
from monai.losses import DiceFocalLoss

from bundle.engines.screen_training import ScreenSupervisedLoss, ScreenTrainingInferer, segmentation_logits
from bundle.networks import GhostCAUNet

TINY = {"features": (4, 8, 16), "ghost_levels": (1,), "ca_stages": (2,), "ca_reduction": 2}


def patches(n: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise patches; the first holds a bright square lesion, the others none."""
    torch.manual_seed(0)
    image = torch.rand(n, 1, 32, 32) * 0.1
    label = torch.zeros(n, 1, 32, 32)
    image[0, 0, 4:8, 20:24] += 1.0
    label[0, 0, 4:8, 20:24] = 1
    return image, label


class TestScreenTraining(unittest.TestCase):
    def test_inferer_outputs(self):
        image, _ = patches()
        learned = GhostCAUNet(spatial_dims=2, learned_screen=True, **TINY)
        logits, edge, semantic = ScreenTrainingInferer()(image, learned)
        self.assertEqual(tuple(logits.shape), (2, 2, 32, 32))
        self.assertEqual((tuple(edge.shape), tuple(semantic.shape)), ((2, 1, 16, 16), (2, 1, 4, 4)))
        torch.testing.assert_close(segmentation_logits((logits, edge, semantic)), logits)
        plain = GhostCAUNet(spatial_dims=2, **TINY)
        out = ScreenTrainingInferer()(image, plain)
        self.assertIsInstance(out, torch.Tensor)
        self.assertIs(segmentation_logits(out), out)

    def test_loss_targets(self):
        """The screen terms compare each map with the lesion mask max-pooled to its grid."""
        image, label = patches()
        seg = DiceFocalLoss(include_background=False, to_onehot_y=True, softmax=True)
        loss = ScreenSupervisedLoss(seg, screen_weight=1.0)
        logits = torch.zeros(2, 2, 32, 32)
        # maps that say exactly where the lesion is (large logits) cost almost nothing beyond the segmentation loss
        right = torch.full((2, 1, 4, 4), -20.0)
        right[0, 0, 0, 2] = 20.0  # the lesion (rows 4-7, cols 20-23) lies in the bottleneck cell (0, 2)
        wrong = torch.full((2, 1, 4, 4), -20.0)
        wrong[1, 0, 3, 3] = 20.0
        base = float(seg(logits, label))
        self.assertAlmostEqual(float(loss((logits, right), label)), base, places=4)
        self.assertGreater(float(loss((logits, wrong), label)), base + 10.0)
        self.assertAlmostEqual(float(loss(logits, label)), base, places=6)  # a plain prediction: segmentation only
        with self.assertRaises(ValueError):
            ScreenSupervisedLoss(seg, screen_weight=-1.0)

    def test_heads_get_gradients(self):
        image, label = patches()
        net = GhostCAUNet(spatial_dims=2, learned_screen=True, **TINY)
        loss = ScreenSupervisedLoss(DiceFocalLoss(include_background=False, to_onehot_y=True, softmax=True))
        loss(ScreenTrainingInferer()(image, net), label).backward()
        for head in (net.edge_head, net.semantic_head):
            self.assertGreater(float(head.weight.grad.abs().sum()), 0.0)


if __name__ == "__main__":
    unittest.main()
