from __future__ import annotations

import math
import unittest

import numpy as np
import torch
import torch.nn as nn
from parameterized import parameterized

from bundle.experiments.analysis.responses import (
    attention_gain,
    layer_responses,
    region_means,
    response_map,
    screening_auc,
    sliding_response_maps,
    stage_modules,
)
from bundle.networks import GhostCAUNet


class _Scale(nn.Module):
    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor, *_: object) -> torch.Tensor:
        return x * self.factor


class _StubNet(nn.Module):
    """enc0 = x, enc1 = 2 x, dec1 = -3 x (responses are absolute values); screen_components = (mean, 0)."""

    edge_weight, semantic_weight = 0.6, 0.4

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.ModuleList([_Scale(1.0), _Scale(2.0)])
        self.decoder = nn.ModuleList([_Scale(-3.0)])

    def forward(self, x: torch.Tensor, enhancement: str = "full") -> torch.Tensor:
        return self.decoder[0](self.encoder[1](self.encoder[0](x)), None, True)

    def screen_components(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        m = x.flatten(1).mean(1)
        return m, torch.zeros_like(m)


def lesion_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Two 8^3 windows: value 3 in a 2^3 lesion, 1 elsewhere."""
    masks = torch.zeros(2, 1, 8, 8, 8)
    masks[0, 0, 2:4, 2:4, 2:4] = 1
    masks[1, 0, 5:7, 1:3, 3:5] = 1
    return 1.0 + 2.0 * masks, masks


class TestResponses(unittest.TestCase):
    def test_region_means_and_map(self):
        values, masks = lesion_batch()
        inside, outside = region_means(values, masks)
        np.testing.assert_allclose(inside, [3, 3])
        np.testing.assert_allclose(outside, [1, 1])
        feats = torch.stack([torch.full((2, 2), 2.0), torch.full((2, 2), -4.0)])[None]  # (1, 2, 2, 2)
        torch.testing.assert_close(response_map(feats, (4, 4)), torch.full((1, 1, 4, 4), 3.0))
        inside, outside = region_means(torch.ones(1, 1, 2, 2), torch.zeros(1, 1, 2, 2))
        self.assertTrue(math.isnan(inside[0]))

    def test_layer_responses_known(self):
        windows, masks = lesion_batch()
        result = layer_responses(_StubNet(), windows, masks)
        self.assertEqual(list(result), ["enc0", "enc1", "dec1"])
        for name, scale in (("enc0", 1), ("enc1", 2), ("dec1", 6)):
            self.assertAlmostEqual(result[name]["lesion"], 3.0 * scale, places=5)
            self.assertAlmostEqual(result[name]["background"], 1.0 * scale, places=5)
            self.assertAlmostEqual(result[name]["ratio"], 3.0, places=5)
            self.assertEqual(result[name]["n_windows"], 2)

    def test_attention_gain_with_constant_gates(self):
        torch.manual_seed(0)
        net = GhostCAUNet(features=(4, 8, 8, 8), ca_stages=(3,), ca_gate_bias=0.0).eval()
        for conv in net.decoder[2].ca.gate_convs:  # gate = sigmoid(b) on each of the 3 axes
            nn.init.zeros_(conv.weight)
            nn.init.constant_(conv.bias, 1.0)
        windows, masks = lesion_batch()
        result = attention_gain(net, torch.cat([windows, windows]).repeat(1, 1, 2, 2, 1)[:, :, :16, :16, :8],
                                torch.cat([masks, masks]).repeat(1, 1, 2, 2, 1)[:, :, :16, :16, :8])
        stage = result["stages"]["dec3"]
        gate = 1.0 / (1.0 + math.exp(-1.0))
        self.assertAlmostEqual(stage["lesion_gain"], gate**3, places=5)
        self.assertAlmostEqual(stage["background_gain"], gate**3, places=5)
        self.assertAlmostEqual(stage["contrast_gain"], 1.0, places=5)
        self.assertEqual(set(result["probability"]), {"full", "basic", "lesion_gain", "background_gain",
                                                      "contrast_gain"})

    def test_screening_auc(self):
        windows = torch.stack([torch.full((1, 4, 4), v) for v in (0.1, 0.2, 0.9, 0.8, 0.3)])
        result = screening_auc(_StubNet(), windows, [False, False, True, True, False])
        self.assertEqual((result["auc"], result["auc_edge"], result["n_positive"]), (1.0, 1.0, 2))
        self.assertEqual(result["auc_semantic"], 0.5)  # constant part: ties
        self.assertAlmostEqual(result["scores"][2], 0.6 * 0.9, places=5)
        reverse = screening_auc(_StubNet(), windows, [True, True, False, False, False])
        self.assertEqual(reverse["auc"], 0.0)
        self.assertIsNone(screening_auc(_StubNet(), windows, [True] * 5)["auc"])

    @parameterized.expand([
        [lambda: stage_modules(nn.Linear(2, 2)), "encoder"],
        [lambda: layer_responses(_StubNet(), torch.zeros(2, 1, 4, 4, 4), torch.zeros(2, 1, 4, 4, 5)), "masks"],
        [lambda: attention_gain(_StubNet(), *lesion_batch()), "Coordinate Attention"],
        [lambda: screening_auc(_StubNet(), torch.zeros(3, 1, 4, 4), [True]), "one entry per window"],
        [lambda: layer_responses(_StubNet(), *lesion_batch(), batch_size=0), "batch_size"],
    ])
    def test_ill_arg(self, call, message):
        with self.assertRaisesRegex(ValueError, message):
            call()



class TestSlidingResponseMaps(unittest.TestCase):
    def test_pointwise_stages_stitch_exactly(self):
        # pointwise stages: every window's map is |k x| there, so the blended volume must be |k x| everywhere
        x = torch.randn(1, 9, 11, 7, generator=torch.Generator().manual_seed(0))
        maps = sliding_response_maps(_StubNet(), x, roi=(4, 4, 4), overlap=0.25)
        self.assertEqual(list(maps), ["enc0", "enc1", "dec1"])
        for name, factor in (("enc0", 1.0), ("enc1", 2.0), ("dec1", 6.0)):
            self.assertEqual(tuple(maps[name].shape), (9, 11, 7))
            torch.testing.assert_close(maps[name], factor * x[0].abs(), rtol=1e-5, atol=1e-5)

    def test_ghost_ca_unet_shapes(self):
        net = GhostCAUNet(features=(4, 8, 8, 8))
        maps = sliding_response_maps(net, torch.rand(1, 17, 16, 9), roi=(16, 16, 8))
        self.assertEqual(len(maps), len(stage_modules(net)))
        self.assertTrue(all(tuple(m.shape) == (17, 16, 9) and bool((m >= 0).all()) for m in maps.values()))

    def test_ill_arg(self):
        with self.assertRaisesRegex(ValueError, "image must be"):
            sliding_response_maps(_StubNet(), torch.rand(9, 11, 7), roi=(4, 4, 4))


if __name__ == "__main__":
    unittest.main()
