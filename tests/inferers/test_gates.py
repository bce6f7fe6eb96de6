"""The routed inferer's gates: the candidate-mask gate and the router's tissue gate (LOW without screening)."""

from __future__ import annotations

import unittest

import torch
from monai.data import MetaTensor
from monai.inferers import sliding_window_inference
from parameterized import parameterized

from bundle.inferers import RoutedSlidingWindowInferer, SuspicionRouter
from tests.inferers.test_inferer import BACKGROUND, ToyNet, make_input

SHAPE = (1, 1, 33, 34, 35)


def box_mask(shape: tuple[int, ...], region: tuple[slice, ...]) -> torch.Tensor:
    mask = torch.zeros(shape[2:], dtype=torch.uint8)
    mask[region] = 1
    return mask


def background(shape: tuple[int, ...]) -> torch.Tensor:
    return torch.tensor(BACKGROUND).view(1, 2, *[1] * (len(shape) - 2)).expand(shape[0], 2, *shape[2:])


# (mask layout, expected number of windows holding a mask voxel) for 16^3 windows on 33 x 34 x 35 (27 windows)
MASK_CASES = [
    ("corner", (slice(0, 4), slice(0, 4), slice(0, 4)), 1),  # only the first window
    ("last_axis_end", (slice(None), slice(None), slice(30, 35)), 9),  # the 9 windows of the last x column
    ("all", (slice(None), slice(None), slice(None)), 27),
]


class TestMaskGate(unittest.TestCase):
    def test_empty_mask_keeps_nothing(self):
        net = ToyNet(fixed_score=1.0)
        inferer = RoutedSlidingWindowInferer((16, 16, 16))
        result = inferer(make_input(SHAPE), net, mask=torch.zeros(SHAPE[2:]))
        torch.testing.assert_close(result, background(SHAPE), rtol=0, atol=0)
        self.assertEqual((net.forward_calls, net.screen_calls), ([], 0))  # gated windows are not even screened
        stats = inferer.last_stats
        self.assertEqual((stats["num_low"], stats["num_gated"], stats["skipped_fraction"]), (27, 27, 1.0))
        self.assertTrue(all(w["score"] is None for w in stats["windows"]))

    @parameterized.expand(MASK_CASES)
    def test_windows_without_mask_voxel_are_low(self, _, region, expected_kept):
        inputs = make_input(SHAPE)
        net = ToyNet(fixed_score=1.0)  # every screened window is HIGH
        inferer = RoutedSlidingWindowInferer((16, 16, 16))
        mask = box_mask(SHAPE, region)
        result = inferer(inputs, net, mask=mask[None, None])
        stats = inferer.last_stats
        self.assertEqual((stats["num_high"], stats["num_low"]), (expected_kept, 27 - expected_kept))
        self.assertEqual(stats["num_gated"], 27 - expected_kept)
        self.assertEqual(sum(len(means) for _, means in net.forward_calls), expected_kept)
        for window in stats["windows"]:
            holds = bool(mask[tuple(slice(a, b) for a, b in window["slices"])].any())
            self.assertEqual(window["tier"], 2 if holds else 0)
            self.assertEqual(window["score"] is None, not holds)
        # every mask voxel lies in a window that ran: there the output is exactly the network's (2 * x)
        inside = mask.bool()
        torch.testing.assert_close(result[0, 0][inside], 2 * inputs[0, 0][inside], rtol=1e-5, atol=1e-5)
        self.assertTrue(bool((inferer.last_tier_map[inside] == 2).all()))

    def test_routing_off_ignores_mask(self):
        inputs = make_input(SHAPE)
        net = ToyNet(fixed_score=0.0)
        mask = torch.zeros(SHAPE[2:])
        expected = sliding_window_inference(inputs, (16, 16, 16), 4, net, 0.25, "gaussian")
        for inferer in (
            RoutedSlidingWindowInferer((16, 16, 16), routing=False),
            RoutedSlidingWindowInferer((16, 16, 16), router=SuspicionRouter(enabled=False, tissue_threshold=0.5)),
        ):
            result = inferer(inputs, net, mask=mask)
            torch.testing.assert_close(result, expected, rtol=1e-6, atol=1e-6)
            self.assertEqual(inferer.last_stats["num_gated"], 0)

    def test_mask_gate_off(self):
        inputs = make_input(SHAPE)
        with_mask = RoutedSlidingWindowInferer((16, 16, 16), mask_gate=False)
        without = RoutedSlidingWindowInferer((16, 16, 16))
        torch.testing.assert_close(
            with_mask(inputs, ToyNet(), mask=torch.zeros(SHAPE[2:])), without(inputs, ToyNet()), rtol=0, atol=0
        )
        self.assertEqual(with_mask.last_stats["num_gated"], 0)

    def test_mask_per_batch_item(self):
        shape = (2, 1, 20, 21)
        inputs = make_input(shape)
        mask = torch.zeros(2, 1, 20, 21)
        mask[1, 0, 5, 5] = 1  # only the second image has candidates
        inferer = RoutedSlidingWindowInferer((16, 16))
        result = inferer(inputs, ToyNet(fixed_score=1.0), mask=MetaTensor(mask))
        torch.testing.assert_close(result[0], background(shape)[0], rtol=0, atol=0)
        self.assertAlmostEqual(float(result[1, 0, 5, 5]), float(2 * inputs[1, 0, 5, 5]), places=5)
        kept = {w["batch"] for w in inferer.last_stats["windows"] if w["tier"] > 0}
        self.assertEqual(kept, {1})

    def test_bad_mask_shape(self):
        with self.assertRaisesRegex(ValueError, r"mask\.shape=\(20, 20\)"):
            RoutedSlidingWindowInferer((16, 16, 16))(make_input((1, 1, 20, 20, 20)), ToyNet(), mask=torch.ones(20, 20))
        with self.assertRaisesRegex(ValueError, "mask must be"):
            RoutedSlidingWindowInferer((16, 16))(make_input((1, 1, 20, 20)), ToyNet(), mask=torch.ones(3, 1, 20, 20))

    def test_ill_arg(self):
        with self.assertRaisesRegex(TypeError, "mask_gate"):
            RoutedSlidingWindowInferer(16, mask_gate="yes")


class TestTissueGate(unittest.TestCase):
    def test_air_windows_are_skipped_unscreened(self):
        # tissue only for x < 10: the windows starting at x = 12 and 19 hold none
        inputs = torch.zeros(SHAPE)
        inputs[..., :10] = 0.8
        net = ToyNet(fixed_score=0.45)  # air would be MEDIUM without the gate
        inferer = RoutedSlidingWindowInferer((16, 16, 16), router=SuspicionRouter(tissue_threshold=0.15))
        result = inferer(inputs, net)
        stats = inferer.last_stats
        self.assertEqual((stats["num_medium"], stats["num_low"], stats["num_gated"]), (9, 18, 18))
        self.assertEqual(sum(len(means) for _, means in net.forward_calls), 9)
        torch.testing.assert_close(result[0, 0, ..., :10], 3 * inputs[0, 0, ..., :10], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(result[..., 16:], background(SHAPE)[..., 16:], rtol=0, atol=0)

    def test_gate_keeps_nothing(self):
        net = ToyNet(fixed_score=1.0)
        inferer = RoutedSlidingWindowInferer(16, router=SuspicionRouter(tissue_threshold=2.0))
        result = inferer(make_input((1, 1, 20, 20)), net)
        torch.testing.assert_close(result, background((1, 1, 20, 20)), rtol=0, atol=0)
        self.assertEqual((net.forward_calls, net.screen_calls), ([], 0))


if __name__ == "__main__":
    unittest.main()
