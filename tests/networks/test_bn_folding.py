from __future__ import annotations

import unittest

import torch
from monai.networks.nets import BasicUNet, UNet
from parameterized import parameterized

from bundle.inferers import RoutedSlidingWindowInferer
from bundle.networks import GhostCAUNet
from bundle.networks.bn_folding import count_batchnorm, fold_batchnorm
from tests.networks.nets.test_ghost_ca_unet import TINY


def trained_like(net: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give every BatchNorm non-trivial running statistics and affine parameters, so folding is not a no-op."""
    g = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(0.1 * torch.randn(m.num_features, generator=g))
            m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=g))
            m.weight.data.copy_(1.0 + 0.2 * torch.randn(m.num_features, generator=g))
            m.bias.data.copy_(0.1 * torch.randn(m.num_features, generator=g))
    return net.eval()


# (network factory, input shape, BatchNorm layers left after folding)
CASES = [
    ("ghost_3d", lambda: GhostCAUNet(spatial_dims=3, **TINY), (2, 1, 17, 18, 19), 1),  # CA's own BN stays
    ("ghost_2d", lambda: GhostCAUNet(spatial_dims=2), (1, 1, 33, 34), 1),
    ("ghost_no_ca", lambda: GhostCAUNet(spatial_dims=3, **{**TINY, "ca_stages": ()}), (1, 1, 16, 16, 16), 0),
    ("basic_unet", lambda: BasicUNet(2, 1, 2, features=(4, 4, 8, 8, 16, 4), norm="batch"), (1, 1, 32, 32), 0),
]


class TestFoldBatchNorm(unittest.TestCase):
    @parameterized.expand(CASES)
    def test_same_function(self, _, factory, shape, left):
        torch.manual_seed(0)
        net = trained_like(factory())
        before = {k: v.clone() for k, v in net.state_dict().items()}
        folded = fold_batchnorm(net)
        self.assertLess(count_batchnorm(folded), count_batchnorm(net))
        self.assertEqual(count_batchnorm(folded), left)
        x = torch.rand(shape, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            torch.testing.assert_close(folded(x), net(x), rtol=1e-4, atol=1e-4)
            if isinstance(net, GhostCAUNet):
                torch.testing.assert_close(folded(x, "basic"), net(x, "basic"), rtol=1e-4, atol=1e-4)
                torch.testing.assert_close(folded.screen(x), net.screen(x), rtol=1e-4, atol=1e-4)
        # the original is untouched: same keys, same values, still loadable into a fresh network
        after = net.state_dict()
        self.assertEqual(list(after), list(before))
        for key, value in before.items():
            torch.testing.assert_close(after[key], value, rtol=0, atol=0)
        factory().load_state_dict(after)
        self.assertTrue(all(not p.requires_grad for p in folded.parameters()))

    def test_keeps_channels_last(self):
        folded = fold_batchnorm(trained_like(GhostCAUNet(spatial_dims=3, **TINY)))
        conv = folded.encoder[0].conv_0.conv
        self.assertTrue(conv.weight.is_contiguous(memory_format=torch.channels_last_3d))

    def test_instance_norm_untouched(self):
        net = UNet(3, 1, 2, channels=(4, 8), strides=(2,), num_res_units=1).eval()  # instance norm
        self.assertEqual(count_batchnorm(fold_batchnorm(net)), 0)
        x = torch.rand(1, 1, 16, 16, 16)
        with torch.no_grad():
            torch.testing.assert_close(fold_batchnorm(net)(x), net(x), rtol=0, atol=0)


class TestInfererFolding(unittest.TestCase):
    def test_inferer_folds_a_copy(self):
        torch.manual_seed(0)
        net = trained_like(GhostCAUNet(spatial_dims=3, **TINY))
        x = torch.rand(1, 1, 20, 21, 22, generator=torch.Generator().manual_seed(2))
        layers = count_batchnorm(net)
        with torch.no_grad():
            folded = RoutedSlidingWindowInferer(16, routing=False, fold_batchnorm=True)(x, net)
            exact = RoutedSlidingWindowInferer(16, routing=False)(x, net)
        torch.testing.assert_close(folded, exact, rtol=1e-4, atol=1e-4)
        self.assertEqual(count_batchnorm(net), layers)  # folded in the copy only

    def test_training_network_not_folded(self):
        net = GhostCAUNet(spatial_dims=3, **TINY).train()
        inferer = RoutedSlidingWindowInferer(16, routing=False, fold_batchnorm=True)
        self.assertIs(inferer._inference_copy(net), net)
        self.assertIsNot(inferer._inference_copy(net.eval()), net)
        self.assertIs(RoutedSlidingWindowInferer(16)._inference_copy(net), net)  # off by default

    def test_folded_copy_follows_weight_changes(self):
        net = trained_like(GhostCAUNet(spatial_dims=3, **TINY))
        inferer = RoutedSlidingWindowInferer(16, routing=False, fold_batchnorm=True)
        first = inferer._inference_copy(net)
        self.assertIs(inferer._inference_copy(net), first)  # cached while nothing changed
        net.load_state_dict(trained_like(GhostCAUNet(spatial_dims=3, **TINY), seed=3).state_dict())
        second = inferer._inference_copy(net)
        self.assertIsNot(second, first)  # new weights: folded again
        x = torch.rand(1, 1, 16, 16, 16)
        with torch.no_grad():
            torch.testing.assert_close(second(x), net(x), rtol=1e-4, atol=1e-4)

    def test_ill_arg(self):
        with self.assertRaisesRegex(TypeError, "fold_batchnorm"):
            RoutedSlidingWindowInferer(16, fold_batchnorm=1)


if __name__ == "__main__":
    unittest.main()
