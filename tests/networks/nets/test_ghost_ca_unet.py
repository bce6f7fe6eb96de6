from __future__ import annotations

import unittest

import torch
from monai.bundle import ConfigParser
from monai.networks import eval_mode
from parameterized import parameterized

from bundle.networks import GhostCAUNet

# 3 levels: fast, and still exercises every code path
TINY = {"features": (4, 8, 16), "ghost_levels": (1,), "ca_stages": (2,), "ca_reduction": 2}

# (kwargs, input_shape, expected_shape)
TEST_CASES = [
    [{"spatial_dims": 3}, (1, 1, 33, 34, 35), (1, 2, 33, 34, 35)],  # the 3D default, odd sizes
    [{"spatial_dims": 2}, (1, 1, 33, 34), (1, 2, 33, 34)],  # the 2D default, odd sizes
    [{**TINY, "spatial_dims": 2, "in_channels": 3, "out_channels": 4, "ghost_levels": (0, 1, 2), "ca_stages": (1, 2),
      "upsample": "nontrainable"}, (2, 3, 17, 18), (2, 4, 17, 18)],
    [{**TINY, "spatial_dims": 3, "upsample": "pixelshuffle", "ghost_levels": (), "ca_stages": (), "ghost_dw_size": 1,
      "dropout": 0.1, "act": ("leakyrelu", {"negative_slope": 0.1}), "norm": "batch"}, (2, 1, 9, 10, 11),
     (2, 2, 9, 10, 11)],
    # the light layout: strided stem, full-resolution refinement, learned screen heads; odd sizes
    [{"spatial_dims": 3, "features": (8, 16, 48, 96), "stem_stride": (2, 2, 1), "refine_channels": 4,
      "learned_screen": True}, (1, 1, 33, 34, 35), (1, 2, 33, 34, 35)],
    [{**TINY, "spatial_dims": 2, "stem_stride": 2, "learned_screen": True}, (2, 1, 17, 18), (2, 2, 17, 18)],
]
ILL_CASES = [
    [{"spatial_dims": 1}],
    [{"in_channels": 0}],
    [{"out_channels": -2}],
    [{"features": (16,)}],
    [{"features": (16, 0, 32)}],
    [{"ghost_levels": (4,)}],
    [{"ghost_levels": (-1,)}],
    [{"ca_stages": (0,)}],
    [{"ca_stages": (4,)}],
    [{"ca_drop_prob": 1.5}],
    [{"edge_weight": -0.1}],
    [{"semantic_weight": -0.1}],
    [{"edge_weight": 0.7, "semantic_weight": 0.4}],
    [{"screen_downsample": 0}],
    [{"screen_quantile": 0.0}],
    [{"stem_stride": 0}],
    [{"stem_stride": (2, 2)}],
    [{"refine_channels": 0}],
    [{"head_prior": 0.0}],
    [{"head_prior": 1.0}],
    [{"out_channels": 3, "head_prior": 0.01}],
    [{"upsample": "transpose"}],
    [{"ghost_ratio": 1}],  # raised by GhostModule
    [{"ca_reduction": 0}],  # raised by CoordinateAttention
]


def toy_windows(n: int, size: tuple[int, ...], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise windows; every second one holds a bright ball (the lesion) with its mask."""
    g = torch.Generator().manual_seed(seed)
    images = 0.1 * torch.randn((n, 1, *size), generator=g)
    labels = torch.zeros((n, 1, *size))
    grid = torch.stack(torch.meshgrid(*[torch.arange(s) for s in size], indexing="ij")).float()
    for i in range(0, n, 2):
        center = torch.randint(5, min(size) - 5, (len(size),), generator=g).float()
        ball = (grid - center.view(-1, *[1] * len(size))).pow(2).sum(0) <= 9.0
        images[i, 0][ball] += 1.0
        labels[i, 0][ball] = 1.0
    return images, labels


class TestGhostCAUNet(unittest.TestCase):
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
        net = GhostCAUNet(**kwargs)
        with eval_mode(net):
            x = torch.randn(input_shape)
            full, basic = net(x), net(x, enhancement="basic")
        self.assertEqual(tuple(full.shape), expected_shape)
        self.assertEqual(tuple(basic.shape), expected_shape)
        self.assertTrue(torch.isfinite(full).all() and torch.isfinite(basic).all())

    @parameterized.expand(ILL_CASES)
    def test_ill_arg(self, kwargs):
        with self.assertRaises(ValueError):
            GhostCAUNet(**kwargs)

    @parameterized.expand([(2, 0.01), (1, 0.01), (2, 0.001)])
    def test_head_prior_sets_the_initial_probability(self, out_channels, prior):
        net = GhostCAUNet(spatial_dims=2, out_channels=out_channels, head_prior=prior, **TINY)
        bias = net.head.bias.detach()
        start = torch.softmax(bias, 0)[-1] if out_channels == 2 else torch.sigmoid(bias[0])
        self.assertAlmostEqual(float(start), prior, places=6)
        default = GhostCAUNet(spatial_dims=2, out_channels=out_channels, **TINY).head.bias.detach()
        self.assertNotAlmostEqual(float(torch.softmax(default, 0)[-1] if out_channels == 2 else default.sigmoid()[0]),
                                  prior, places=3)  # fmt: skip

    def test_ill_enhancement(self):
        net = GhostCAUNet(spatial_dims=2, **TINY)
        with self.assertRaises(ValueError):
            net(torch.randn(1, 1, 16, 16), enhancement="fast")

    def test_enhancement_modes_differ(self):
        torch.manual_seed(0)
        net = GhostCAUNet(spatial_dims=3, **TINY)
        x = torch.randn(1, 1, 12, 13, 14)
        with eval_mode(net):
            self.assertGreater((net(x) - net(x, enhancement="basic")).abs().max().item(), 1e-4)
        # no CA stage: the two modes are identical
        net = GhostCAUNet(**{**TINY, "spatial_dims": 3, "ca_stages": ()})
        with eval_mode(net):
            torch.testing.assert_close(net(x), net(x, enhancement="basic"))

    def test_ca_drop_prob(self):
        torch.manual_seed(0)
        x = torch.randn(1, 1, 12, 13, 14)
        net = GhostCAUNet(spatial_dims=3, ca_drop_prob=1.0, **TINY).train()
        torch.testing.assert_close(net(x), net(x, enhancement="basic"))  # CA always dropped while training
        with eval_mode(net):  # never dropped at inference
            self.assertGreater((net(x) - net(x, enhancement="basic")).abs().max().item(), 1e-4)

    def test_gradients(self):
        torch.manual_seed(0)
        net = GhostCAUNet(spatial_dims=3, ca_drop_prob=0.0).train()
        out = net(torch.randn(1, 1, 16, 16, 16))
        self.assertFalse(torch.isnan(out).any())
        out.mean().backward()
        for name, p in net.named_parameters():
            self.assertIsNotNone(p.grad, f"no gradient for {name}")
            self.assertTrue(torch.isfinite(p.grad).all(), f"non-finite gradient for {name}")

    @parameterized.expand([[3, (2, 1, 33, 34, 35)], [2, (3, 1, 33, 34)]])
    def test_screen(self, spatial_dims, input_shape):
        torch.manual_seed(0)
        net = GhostCAUNet(spatial_dims=spatial_dims, edge_weight=0.5, semantic_weight=0.5)
        net.prototype.copy_(torch.randn(net.features[-1]))  # as if calibrated, so the semantic part is not 0
        with eval_mode(net):
            x = torch.randn(input_shape)
            score = net.screen(x)
            edge, semantic = net.screen_components(x)
        for t in (score, edge, semantic):
            self.assertEqual(tuple(t.shape), (input_shape[0],))
            self.assertTrue(((t >= 0) & (t <= 1)).all(), t)
        torch.testing.assert_close(score, 0.5 * edge + 0.5 * semantic)
        self.assertTrue((edge > 0).all())

    def test_light_layout(self):
        """A strided stem never convolves the input grid in the encoder; the refinement restores its resolution."""
        light = GhostCAUNet(stem_stride=(2, 2, 1), features=(8, 16, 48, 96), refine_channels=4, learned_screen=True)
        self.assertEqual(light.deep_stride, [16, 16, 8])
        self.assertEqual(light.num_convs, 15)  # 14 + the refinement
        x = torch.randn(1, 1, 32, 32, 16)
        with eval_mode(light):
            level0 = light._encode(x)[0]
            self.assertEqual(tuple(level0.shape[2:]), (16, 16, 16))
            # the refinement sees the input itself: a change of one input voxel changes that voxel's logits
            y = x.clone()
            y[0, 0, 9, 9, 9] += 5.0
            diff = (light(y) - light(x)).abs().sum(dim=(0, 1))
            self.assertGreater(float(diff[9, 9, 9]), 0.0)
        default = GhostCAUNet()
        self.assertTrue(light.pair_single_windows)  # PyTorch's batch-1 slow conv path (bundle.inferers.inferer)
        self.assertFalse(default.pair_single_windows)
        self.assertEqual(default.deep_stride, [8, 8, 8])
        self.assertIsInstance(default.refine, torch.nn.Identity)

    def test_learned_screen(self):
        torch.manual_seed(0)
        net = GhostCAUNet(spatial_dims=2, learned_screen=True, **TINY)
        x = torch.randn(3, 1, 32, 32)
        with eval_mode(net):
            edge_map, semantic_map = net.screen_maps(x)
            self.assertEqual(tuple(edge_map.shape), (3, 1, 16, 16))  # level 0 of the 2x pooled window
            self.assertEqual(tuple(semantic_map.shape), (3, 1, 4, 4))  # its bottleneck
            edge, semantic = net.screen_components(x)
            torch.testing.assert_close(edge, torch.sigmoid(edge_map.flatten(1).amax(1)))
            torch.testing.assert_close(semantic, torch.sigmoid(semantic_map.flatten(1).amax(1)))
            torch.testing.assert_close(net.screen(x), 0.6 * edge + 0.4 * semantic)
            # calibration keeps the trained heads and buffers and only measures
            before = {k: v.clone() for k, v in net.state_dict().items()}
            labels = torch.zeros(3, 1, 32, 32)
            labels[0, 0, 10:14, 10:14] = 1
            stats = net.calibrate_screening(x, labels)
            for k, v in net.state_dict().items():
                torch.testing.assert_close(v, before[k])
            self.assertIn("auc", stats)
        with self.assertRaisesRegex(ValueError, "learned_screen"):
            GhostCAUNet(spatial_dims=2, **TINY).screen_maps(x)
        scripted = torch.jit.script(net.eval())
        torch.testing.assert_close(scripted.screen(x), net.screen(x))

    def test_screen_too_small(self):
        net = GhostCAUNet(spatial_dims=3)
        with eval_mode(net), self.assertRaisesRegex(ValueError, "too small"):
            net.screen(torch.randn(1, 1, 12, 18, 19))  # 12 / 2 / 8 < 1 bottleneck position on the first axis

    def test_calibrate_screening(self):
        torch.manual_seed(0)
        net = GhostCAUNet(spatial_dims=2).train()
        images, labels = toy_windows(12, (32, 32))
        stats = net.calibrate_screening(images, labels, batch_size=5)
        self.assertTrue(net.training)  # mode restored
        self.assertGreater(stats["auc"], 0.5)
        self.assertEqual(stats["n_positive"], 6.0)
        self.assertAlmostEqual(float(net.prototype.norm()), 1.0, places=5)
        self.assertNotEqual(float(net.edge_scale), 1.0)
        self.assertAlmostEqual(stats["edge_scale"], float(net.edge_scale), places=6)
        self.assertGreater(float(net.feature_center.abs().sum()), 0.0)
        self.assertEqual(stats, net.calibrate_screening(images, labels, batch_size=5))  # deterministic
        # the buffers travel with the state dict
        other = GhostCAUNet(spatial_dims=2)
        other.load_state_dict(net.state_dict())
        with eval_mode(net, other):
            torch.testing.assert_close(other.screen(images[:2]), net.screen(images[:2]))

    def test_calibrate_screening_3d(self):
        torch.manual_seed(0)
        net = GhostCAUNet(spatial_dims=3)
        images, labels = toy_windows(6, (32, 32, 32))
        stats = net.calibrate_screening(images, labels)
        self.assertGreater(stats["auc"], 0.5)

    def test_calibrate_ill_arg(self):
        net = GhostCAUNet(spatial_dims=2, **TINY)
        images, labels = toy_windows(4, (16, 16))
        with self.assertRaises(ValueError):  # no lesion voxel
            net.calibrate_screening(images, torch.zeros_like(labels))
        with self.assertRaises(ValueError):  # label shape
            net.calibrate_screening(images, labels[:, :, :8])
        with self.assertRaises(ValueError):  # spatial dims
            net.calibrate_screening(images[:, :, 0], labels[:, :, 0])
        with self.assertRaises(ValueError):  # channels
            net.calibrate_screening(images.expand(-1, 2, -1, -1), labels)
        with self.assertRaises(ValueError):
            net.calibrate_screening(images, labels, batch_size=0)
        with self.assertRaisesRegex(ValueError, "too small"):  # 4 / 2 / 4 < 1 bottleneck position on an axis
            net.calibrate_screening(images[..., :4, :8], torch.ones_like(labels[..., :4, :8]))

    def test_script(self):
        torch.manual_seed(0)
        net = GhostCAUNet(spatial_dims=3)
        net.prototype.copy_(torch.randn(net.features[-1]))
        x = torch.randn(1, 1, 17, 18, 19)
        with eval_mode(net):
            scripted = torch.jit.script(net)
            for mode in ("full", "basic"):
                torch.testing.assert_close(scripted(x, mode), net(x, mode), atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(scripted(x), net(x), atol=1e-5, rtol=1e-5)
            x = torch.randn(2, 1, 32, 33, 17)
            torch.testing.assert_close(scripted.screen(x), net.screen(x), atol=1e-5, rtol=1e-5)

    def test_default_budget(self):
        net = GhostCAUNet()
        self.assertLessEqual(sum(p.numel() for p in net.parameters()), 1.5e6)
        self.assertGreaterEqual(net.ghost_fraction, 0.25)
        self.assertLessEqual(net.ghost_fraction, 0.35)
        self.assertEqual(GhostCAUNet(ghost_levels=()).ghost_fraction, 0.0)
        self.assertEqual(GhostCAUNet(ghost_levels=(0, 1, 2, 3)).ghost_fraction, 1.0)
        self.assertEqual(GhostCAUNet(ghost_levels=(3,)).ghost_fraction, 2 / 14)  # bottleneck: encoder only

    def test_json_config(self):
        config = {
            "network_def": {
                "_target_": "bundle.networks.GhostCAUNet", "spatial_dims": 2, "features": [4, 8, 16],
                "ghost_levels": [1], "ca_stages": [2], "act": ["leakyrelu", {"negative_slope": 0.1}],
                "norm": ["instance", {"affine": True}], "ca_gate_bias": None,
            }
        }
        net = ConfigParser(config).get_parsed_content("network_def")
        self.assertIsInstance(net, GhostCAUNet)
        with eval_mode(net):
            self.assertEqual(tuple(net(torch.randn(1, 1, 16, 16)).shape), (1, 2, 16, 16))


if __name__ == "__main__":
    unittest.main()
