from __future__ import annotations

import unittest

import torch
from monai.networks import eval_mode
from monai.networks.layers.factories import Conv
from parameterized import parameterized

from bundle.networks.blocks.ghost import GhostConvBlock, GhostModule

# (kwargs, input_shape, expected_shape)
TEST_CASES = [
    [{"spatial_dims": 2, "in_channels": 4, "out_channels": 8}, (2, 4, 33, 34), (2, 8, 33, 34)],
    [{"spatial_dims": 2, "in_channels": 3, "out_channels": 5, "ratio": 3, "dw_size": 1}, (1, 3, 16, 17),
     (1, 5, 16, 17)],
    [{"spatial_dims": 3, "in_channels": 1, "out_channels": 7}, (1, 1, 33, 34, 35), (1, 7, 33, 34, 35)],
    [{"spatial_dims": 3, "in_channels": 4, "out_channels": 6, "stride": 2, "kernel_size": 1}, (2, 4, 9, 10, 11),
     (2, 6, 5, 5, 6)],
    [{"spatial_dims": 3, "in_channels": 2, "out_channels": 4, "relu": False, "norm": "batch",
      "act": ("leakyrelu", {"negative_slope": 0.1})}, (2, 2, 8, 8, 8), (2, 4, 8, 8, 8)],
]
BLOCK_CASES = [
    [{"spatial_dims": 2, "in_channels": 2, "out_channels": 6, "dropout": 0.1}, (2, 2, 15, 16), (2, 6, 15, 16)],
    [{"spatial_dims": 3, "in_channels": 8, "out_channels": 8, "ratio": 4, "dw_size": 5}, (1, 8, 9, 10, 11),
     (1, 8, 9, 10, 11)],
]
ILL_CASES = [
    [{"spatial_dims": 1, "in_channels": 2, "out_channels": 4}],
    [{"spatial_dims": 2, "in_channels": 0, "out_channels": 4}],
    [{"spatial_dims": 2, "in_channels": 2, "out_channels": -1}],
    [{"spatial_dims": 2, "in_channels": 2, "out_channels": 4, "ratio": 1}],
    [{"spatial_dims": 2, "in_channels": 2, "out_channels": 4, "dw_size": 0}],
    [{"spatial_dims": 2, "in_channels": 2, "out_channels": 4, "dw_size": 2}],
    [{"spatial_dims": 2, "in_channels": 2, "out_channels": 4, "kernel_size": 4}],
    [{"spatial_dims": 2, "in_channels": 2, "out_channels": 4, "stride": 0}],
]


class TestGhostModule(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        # tiny tensors on a shared 2-core machine: one thread avoids OpenMP oversubscription stalls (seconds per op)
        cls._num_threads = torch.get_num_threads()
        torch.set_num_threads(1)

    @classmethod
    def tearDownClass(cls) -> None:
        torch.set_num_threads(cls._num_threads)

    @parameterized.expand(TEST_CASES)
    def test_shape(self, kwargs, input_shape, expected_shape):
        net = GhostModule(**kwargs)
        with eval_mode(net):
            out = net(torch.randn(input_shape))
        self.assertEqual(tuple(out.shape), expected_shape)
        self.assertTrue(torch.isfinite(out).all())

    @parameterized.expand(BLOCK_CASES)
    def test_block_shape(self, kwargs, input_shape, expected_shape):
        net = GhostConvBlock(**kwargs)
        with eval_mode(net):
            out = net(torch.randn(input_shape))
        self.assertEqual(tuple(out.shape), expected_shape)

    def test_channel_split(self):
        m = GhostModule(3, 4, 9, ratio=3, dw_size=1)
        self.assertEqual(m.primary_conv[0].out_channels, 3)  # ceil(9 / 3)
        self.assertEqual(m.cheap_operation[0].out_channels, 6)  # 3 * (3 - 1)
        self.assertEqual(m.cheap_operation[0].groups, 3)  # depthwise over the intrinsic maps
        self.assertEqual(tuple(m.cheap_operation[0].kernel_size), (1, 1, 1))

    def test_cheaper_than_conv(self):
        ghost = sum(p.numel() for p in GhostModule(3, 32, 64).parameters())
        conv = sum(p.numel() for p in Conv[Conv.CONV, 3](32, 64, 3, bias=False).parameters())
        self.assertLess(ghost, 0.6 * conv)

    def test_gradients(self):
        net = GhostConvBlock(2, 2, 6, norm="batch")
        net(torch.randn(2, 2, 8, 8)).mean().backward()
        for name, p in net.named_parameters():
            self.assertIsNotNone(p.grad, f"no gradient for {name}")

    @parameterized.expand(ILL_CASES)
    def test_ill_arg(self, kwargs):
        with self.assertRaises(ValueError):
            GhostModule(**kwargs)

    def test_script(self):
        net = GhostConvBlock(3, 2, 6).eval()
        x = torch.randn(1, 2, 7, 8, 9)
        scripted = torch.jit.script(net)
        torch.testing.assert_close(scripted(x), net(x), atol=1e-5, rtol=1e-5)


if __name__ == "__main__":
    unittest.main()
