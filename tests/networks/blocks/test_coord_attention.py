from __future__ import annotations

import unittest

import torch
import torch.nn.functional as F
from monai.networks import eval_mode
from parameterized import parameterized

from bundle.networks.blocks.coord_attention import CoordinateAttention

# (kwargs, input_shape, expected_shape)
TEST_CASES = [
    [{"spatial_dims": 2, "in_channels": 16}, (2, 16, 33, 34), (2, 16, 33, 34)],
    [{"spatial_dims": 2, "in_channels": 8, "reduction": 2, "min_channels": 2, "act": "relu", "norm": "instance"},
     (1, 8, 5, 7), (1, 8, 5, 7)],
    [{"spatial_dims": 3, "in_channels": 16}, (1, 16, 33, 34, 35), (1, 16, 33, 34, 35)],
    [{"spatial_dims": 3, "in_channels": 4, "gate_bias": 2.0}, (2, 4, 3, 1, 6), (2, 4, 3, 1, 6)],
]
ILL_CASES = [
    [{"spatial_dims": 1, "in_channels": 8}],
    [{"spatial_dims": 4, "in_channels": 8}],
    [{"spatial_dims": 2, "in_channels": 0}],
    [{"spatial_dims": 2, "in_channels": 8, "reduction": 0}],
    [{"spatial_dims": 2, "in_channels": 8, "min_channels": -1}],
]


def timm_coord_attn_2d(ca: CoordinateAttention, x: torch.Tensor) -> torch.Tensor:
    """timm CoordAttn.forward (2D layout with transposes and 2D 1x1 convs), using ``ca``'s weights."""
    _, _, h, w = x.shape
    x_h = x.mean(3, keepdim=True)  # (N, C, H, 1)
    x_w = x.mean(2, keepdim=True).transpose(-1, -2)  # (N, C, W, 1)
    y = torch.cat([x_h, x_w], dim=2)  # (N, C, H + W, 1)
    y = F.conv2d(y, ca.conv.weight.unsqueeze(-1))
    y = ca.act(ca.norm(y.squeeze(-1))).unsqueeze(-1)
    y_h, y_w = torch.split(y, [h, w], dim=2)
    g0, g1 = ca.gate_convs
    a_h = torch.sigmoid(F.conv2d(y_h, g0.weight.unsqueeze(-1), g0.bias))  # (N, C, H, 1)
    a_w = torch.sigmoid(F.conv2d(y_w.transpose(-1, -2), g1.weight.unsqueeze(-1), g1.bias))  # (N, C, 1, W)
    return x * a_w * a_h


class TestCoordinateAttention(unittest.TestCase):
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
        net = CoordinateAttention(**kwargs)
        with eval_mode(net):
            out = net(torch.randn(input_shape))
        self.assertEqual(tuple(out.shape), expected_shape)
        self.assertTrue(torch.isfinite(out).all())

    def test_matches_timm_2d(self):
        torch.manual_seed(0)
        ca = CoordinateAttention(2, 16, reduction=4, min_channels=2).eval()
        ca.norm.running_mean.uniform_(-0.5, 0.5)
        ca.norm.running_var.uniform_(0.5, 2.0)
        x = torch.randn(2, 16, 9, 13)
        torch.testing.assert_close(ca(x), timm_coord_attn_2d(ca, x), atol=1e-5, rtol=1e-5)

    def test_shared_bottleneck(self):
        ca = CoordinateAttention(3, 64, reduction=8, min_channels=4)
        self.assertEqual(ca.mid_channels, 8)
        self.assertEqual(CoordinateAttention(3, 16).mid_channels, 8)  # min_channels floor
        self.assertEqual(len(ca.gate_convs), 3)
        self.assertEqual(tuple(ca.conv.weight.shape), (8, 64, 1))

    def test_axis_gates(self):
        """The 3D gate of the depth axis depends only on depth: a feature varying only along D is reweighted per D."""
        torch.manual_seed(0)
        ca = CoordinateAttention(3, 8, min_channels=4).eval()
        profile = torch.randn(1, 8, 5, 1, 1).sign() * (0.5 + torch.rand(1, 8, 5, 1, 1))  # away from 0
        x = profile.expand(1, 8, 5, 6, 7).contiguous()
        out = ca(x)
        ratio = out / x  # = gate_D(d) * gate_H * gate_W, and the H / W strips of x are constant
        torch.testing.assert_close(ratio[:, :, :, :1, :1].expand_as(ratio), ratio)  # so constant over H, W
        self.assertTrue(((out.abs() <= x.abs() + 1e-6)).all())  # sigmoid gates only attenuate

    def test_gate_bias_near_identity(self):
        ca = CoordinateAttention(3, 8, gate_bias=20.0).eval()
        x = torch.randn(1, 8, 4, 5, 6)
        torch.testing.assert_close(ca(x), x, atol=1e-5, rtol=1e-5)

    @parameterized.expand(ILL_CASES)
    def test_ill_arg(self, kwargs):
        with self.assertRaises(ValueError):
            CoordinateAttention(**kwargs)

    def test_gradients(self):
        ca = CoordinateAttention(3, 8)
        ca(torch.randn(2, 8, 4, 5, 6)).mean().backward()
        for name, p in ca.named_parameters():
            self.assertIsNotNone(p.grad, f"no gradient for {name}")

    @parameterized.expand([[2, (1, 8, 6, 7)], [3, (2, 8, 4, 5, 6)]])
    def test_script(self, spatial_dims, input_shape):
        ca = CoordinateAttention(spatial_dims, 8).eval()
        x = torch.randn(input_shape)
        torch.testing.assert_close(torch.jit.script(ca)(x), ca(x), atol=1e-5, rtol=1e-5)


if __name__ == "__main__":
    unittest.main()
