from __future__ import annotations

import unittest
from unittest import mock

import torch
from monai.bundle import ConfigParser
from monai.data import MetaTensor
from monai.inferers import sliding_window_inference
from monai.networks.nets import UNet
from monai.networks import eval_mode
from parameterized import parameterized

from bundle.inferers import RoutedSlidingWindowInferer, SuspicionRouter
from bundle.inferers.windows import gate_box, sliding_window_slices

BACKGROUND = (10.0, -10.0)


class ToyNet(torch.nn.Module):
    """
    Toy contract network with known outputs: "full" gives ``2 * x`` and "basic" gives ``3 * x`` on both channels;
    ``screen`` is the window's mean intensity, or ``fixed_score`` when given. Records every call.
    """

    def __init__(self, fixed_score: float | None = None) -> None:
        super().__init__()
        self.fixed_score = fixed_score
        self.forward_calls: list[tuple[str, list[float]]] = []  # (enhancement, window means)
        self.screen_calls = 0

    def forward(self, x: torch.Tensor, enhancement: str = "full") -> torch.Tensor:
        self.forward_calls.append((enhancement, x.mean(dim=tuple(range(1, x.ndim))).tolist()))
        factor = 2.0 if enhancement == "full" else 3.0
        return torch.cat([factor * x, factor * x], dim=1)

    def screen(self, x: torch.Tensor) -> torch.Tensor:
        self.screen_calls += 1
        if self.fixed_score is not None:
            return torch.full((x.shape[0],), self.fixed_score)
        return x.mean(dim=tuple(range(1, x.ndim)))


class ConvScreenNet(torch.nn.Module):
    """A real (small) conv net that implements the contract: a MONAI UNet plus a mean-intensity screen."""

    def __init__(self, spatial_dims: int) -> None:
        super().__init__()
        self.net = UNet(spatial_dims, 1, 2, channels=(4, 8), strides=(2,), num_res_units=1)

    def forward(self, x: torch.Tensor, enhancement: str = "full") -> torch.Tensor:
        return self.net(x)

    def screen(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(x.mean(dim=tuple(range(1, x.ndim))))


def make_net(kind: str, spatial_dims: int) -> torch.nn.Module:
    torch.manual_seed(0)  # deterministic weights for the conv nets
    if kind == "toy":
        return ToyNet()
    if kind == "conv_screen":
        return ConvScreenNet(spatial_dims)
    return UNet(spatial_dims, 1, 2, channels=(4, 8), strides=(2,), num_res_units=1)  # plain: no screen


def make_input(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed))


# (net kind, inferer kwargs, input shape): routing off must equal plain MONAI sliding window inference
PLAIN_CASES = [
    (kind, kwargs, (1, 1, 33, 34, 35))
    for kind in ("toy", "conv_screen", "plain")
    for kwargs in (
        {"roi_size": (16, 16, 16), "routing": False},
        {"roi_size": 16, "router": SuspicionRouter(enabled=False), "mode": "constant", "sw_batch_size": 3},
    )
] + [
    ("toy", {"roi_size": (16, 16, 16), "routing": False, "overlap": 0.5, "sw_batch_size": 8}, (1, 1, 33, 34, 35))
] + [
    (kind, {"roi_size": (16, 16), "routing": False, "mode": mode}, (2, 1, 33, 34))
    for kind in ("toy", "conv_screen", "plain")
    for mode in ("gaussian", "constant")
] + [("plain", {"roi_size": (16, 16, 16)}, (1, 1, 33, 34, 35))]  # MONAI Label: plain net, routing left on

# (input shape, sw_batch_size)
STATS_CASES = [((1, 1, 33, 34, 35), 4), ((2, 1, 33, 34, 35), 3), ((3, 1, 33, 34), 1), ((1, 1, 9, 12, 7), 2)]

# (inferer kwargs, expected error)
ILL_CASES = [
    ({"roi_size": (16, 0, 16)}, ValueError),
    ({"roi_size": -1}, ValueError),
    ({"roi_size": ()}, TypeError),
    ({"roi_size": (16.0, 16, 16)}, TypeError),
    ({"roi_size": 16, "overlap": 1.0}, ValueError),
    ({"roi_size": 16, "overlap": -0.1}, ValueError),
    ({"roi_size": 16, "overlap": (0.25, 1.5)}, ValueError),
    ({"roi_size": 16, "sw_batch_size": 0}, ValueError),
    ({"roi_size": 16, "sw_batch_size": 2.0}, TypeError),
    ({"roi_size": 16, "mode": "median"}, ValueError),
    ({"roi_size": 16, "padding_mode": "wrap"}, ValueError),
    ({"roi_size": 16, "high_enhancement": "fancy"}, ValueError),
    ({"roi_size": 16, "medium_enhancement": "none"}, ValueError),
    ({"roi_size": 16, "background_logits": ()}, ValueError),
    ({"roi_size": 16, "background_logits": 10.0}, TypeError),
    ({"roi_size": 16, "routing": "yes"}, TypeError),
    ({"roi_size": 16, "foreground_channel": 2}, ValueError),
    ({"roi_size": 16, "foreground_channel": 1, "background_logits": (10.0, -10.0, 0.0)}, ValueError),
]


class TestRoutedSlidingWindowInferer(unittest.TestCase):
    @parameterized.expand(PLAIN_CASES)
    def test_routing_off_equals_plain(self, kind, kwargs, shape):
        net = make_net(kind, len(shape) - 2)
        inputs = make_input(shape)
        inferer = RoutedSlidingWindowInferer(**kwargs)
        with eval_mode(net):
            result = inferer(inputs, net)
            expected = sliding_window_inference(
                inputs, kwargs["roi_size"], inferer.sw_batch_size, net, inferer.overlap, inferer.mode
            )
        self.assertEqual(result.shape, shape[:1] + (2,) + shape[2:])
        torch.testing.assert_close(result, expected, rtol=1e-6, atol=1e-6)
        stats = inferer.last_stats
        self.assertFalse(stats["routing"])
        self.assertEqual(stats["num_high"], stats["num_windows"])
        self.assertEqual((stats["skipped_fraction"], stats["compute_saved_fraction"]), (0.0, 0.0))
        self.assertTrue(bool((inferer.last_tier_map == 2).all()))
        if kind == "toy":
            self.assertEqual({e for e, _ in net.forward_calls}, {"full"})
            self.assertEqual(net.screen_calls, 0)

    @parameterized.expand([("gaussian",), ("constant",)])
    def test_all_high_routed_matches_plain(self, mode):
        net = make_net("conv_screen", 3)
        net.screen = lambda x: torch.ones(x.shape[0])  # every window HIGH, through the routed path
        inputs = make_input((1, 1, 33, 34, 35))
        inferer = RoutedSlidingWindowInferer((16, 16, 16), mode=mode)
        with eval_mode(net):
            result = inferer(inputs, net)
            expected = sliding_window_inference(inputs, (16, 16, 16), 4, net, 0.25, mode)
        self.assertTrue(inferer.last_stats["routing"])
        self.assertEqual(inferer.last_stats["num_high"], 27)
        torch.testing.assert_close(result, expected, rtol=1e-5, atol=1e-5)

    @parameterized.expand([((1, 1, 33, 34, 35), (16, 16, 16)), ((2, 1, 33, 34), (16, 16)), ((1, 1, 9, 12, 7), 16)])
    def test_keep_nothing_gives_background(self, shape, roi_size):
        net = ToyNet(fixed_score=0.0)
        inferer = RoutedSlidingWindowInferer(roi_size)
        result = inferer(make_input(shape), net)
        expected = torch.tensor(BACKGROUND).view(1, 2, *[1] * (len(shape) - 2)).expand(shape[0], 2, *shape[2:])
        self.assertEqual(result.shape, expected.shape)
        torch.testing.assert_close(result, expected, rtol=0, atol=0)
        self.assertEqual(net.forward_calls, [])
        self.assertGreater(net.screen_calls, 0)
        stats = inferer.last_stats
        self.assertEqual((stats["num_low"], stats["skipped_fraction"]), (stats["num_windows"], 1.0))
        self.assertIsNone(stats["compute_saved_fraction"])
        self.assertIsNone(stats["compute_saved_reference"])
        self.assertEqual(inferer.last_tier_map.shape, shape[2:])
        self.assertEqual(int(inferer.last_tier_map.max()), 0)

    def test_each_tier_gets_its_enhancement(self):
        # intensity ramp along the last axis: windows x in [0,16) -> mean ~0.22 (low), [12,28) ~0.57 (medium),
        # [19,35) ~0.78 (high)
        ramp = torch.arange(35, dtype=torch.float32) / 34.0
        inputs = ramp.expand(1, 1, 33, 34, 35).clone()
        net = ToyNet()
        inferer = RoutedSlidingWindowInferer((16, 16, 16), sw_batch_size=5)
        result = inferer(inputs, net)
        stats = inferer.last_stats
        self.assertEqual((stats["num_low"], stats["num_medium"], stats["num_high"]), (9, 9, 9))
        seen = {"full": 0, "basic": 0}
        for enhancement, means in net.forward_calls:
            seen[enhancement] += len(means)
            for mean in means:
                self.assertTrue(mean >= 0.6 if enhancement == "full" else 0.3 < mean < 0.6, (enhancement, mean))
        self.assertEqual(seen, {"full": stats["num_high"], "basic": stats["num_medium"]})
        for window in stats["windows"]:
            expected_tier = 2 if window["score"] >= 0.6 else (0 if window["score"] <= 0.3 else 1)
            self.assertEqual(window["tier"], expected_tier)
        # x in [0,12): only the low window covers it -> background; x in [28,35): only high windows -> 2 * x
        background = torch.tensor(BACKGROUND).view(2, 1, 1, 1).expand(2, 33, 34, 12)
        torch.testing.assert_close(result[0, :, :, :, :12], background)
        torch.testing.assert_close(result[0, 0, :, :, 28:], 2 * inputs[0, 0, :, :, 28:])
        # x in [16,19): medium only -> 3 * x
        torch.testing.assert_close(result[0, 0, :, :, 16:19], 3 * inputs[0, 0, :, :, 16:19])
        self.assertEqual(inferer.last_tier_map[0, 0].tolist(), [0] * 12 + [1] * 7 + [2] * 16)

    def test_custom_enhancements(self):
        net = ToyNet(fixed_score=0.45)  # every window MEDIUM
        inferer = RoutedSlidingWindowInferer(16, medium_enhancement="full")
        inferer(make_input((1, 1, 20, 20, 20)), net)
        self.assertEqual({e for e, _ in net.forward_calls}, {"full"})
        self.assertEqual(inferer.last_stats["compute_saved_reference"], "medium")  # no HIGH window: a lower bound
        self.assertIsInstance(inferer.last_stats["compute_saved_fraction"], float)

    def test_half_bright_seam_not_diluted(self):
        # bright for x < 14; windows along x: [0,16) mean 0.875 -> high, [12,28) 0.125 -> low, [19,35) 0 -> low.
        # The seam x in {12, 13} is covered by a high and a low window: the low one must not dilute it.
        inputs = torch.zeros(1, 1, 33, 34, 35)
        inputs[..., :14] = 1.0
        net = ToyNet()
        inferer = RoutedSlidingWindowInferer((16, 16, 16))
        result = inferer(inputs, net)
        tolerance = 1e-5
        torch.testing.assert_close(result[..., :14], torch.full((1, 2, 33, 34, 14), 2.0), rtol=0, atol=tolerance)
        torch.testing.assert_close(result[..., 14:16], torch.zeros(1, 2, 33, 34, 2), rtol=0, atol=tolerance)
        background = torch.tensor(BACKGROUND).view(1, 2, 1, 1, 1).expand(1, 2, 33, 34, 19)
        torch.testing.assert_close(result[..., 16:], background, rtol=0, atol=0)
        self.assertFalse(torch.isnan(result).any())
        self.assertEqual(inferer.last_tier_map[:, :, :16].unique().tolist(), [2])
        self.assertEqual(inferer.last_tier_map[:, :, 16:].unique().tolist(), [0])
        self.assertEqual(net.forward_calls[0][0], "full")
        # control: giving the low windows' background logits their usual weight dilutes the seam by far more
        def naive(w: torch.Tensor) -> torch.Tensor:
            if float(w.mean()) >= 0.6:
                return torch.cat([2 * w, 2 * w], dim=1)
            return torch.tensor(BACKGROUND).view(1, 2, 1, 1, 1).expand(w.shape[0], 2, *w.shape[2:]).clone()

        diluted = sliding_window_inference(inputs, (16, 16, 16), 1, naive, 0.25, "gaussian")
        self.assertGreater(float((diluted[:, 0, :, :, 12:14] - 2.0).abs().max()), 100 * tolerance)

    @parameterized.expand(STATS_CASES)
    def test_stats_add_up(self, shape, sw_batch_size):
        roi_size = (16,) * (len(shape) - 2)
        # noisy ramp along the last axis: windows there score ~0.25 (low), ~0.58 (medium), ~0.75 (high)
        inputs = 0.1 * make_input(shape) + 0.9 * torch.linspace(0.0, 1.0, shape[-1])
        inferer = RoutedSlidingWindowInferer(roi_size, sw_batch_size=sw_batch_size, progress=True)
        inferer(inputs, ToyNet())
        stats = inferer.last_stats
        self.assertEqual(stats["num_high"] + stats["num_medium"] + stats["num_low"], stats["num_windows"])
        if shape[-1] > 16:
            counts = (stats["num_high"], stats["num_medium"], stats["num_low"])
            self.assertTrue(min(counts) > 0, counts)
        self.assertEqual(len(stats["windows"]), stats["num_windows"])
        self.assertEqual(stats["num_windows"] % shape[0], 0)
        self.assertEqual(sorted({w["batch"] for w in stats["windows"]}), list(range(shape[0])))
        self.assertAlmostEqual(stats["skipped_fraction"], stats["num_low"] / stats["num_windows"])
        for window in stats["windows"]:
            self.assertEqual(len(window["slices"]), len(shape) - 2)
            for (start, stop), size in zip(window["slices"], shape[2:]):
                self.assertTrue(0 <= start < stop <= size)
            self.assertIn(window["tier"], (0, 1, 2))
            self.assertIsInstance(window["score"], float)
        self.assertGreater(stats["time_screen_s"], 0.0)
        if stats["num_high"]:
            spent = stats["time_screen_s"] + stats["time_high_s"] + stats["time_medium_s"]
            unrouted = stats["num_windows"] * stats["time_high_s"] / stats["num_high"]
            self.assertEqual(stats["compute_saved_reference"], "high")
            self.assertAlmostEqual(stats["compute_saved_fraction"], 1.0 - spent / unrouted)
        self.assertEqual(inferer.last_tier_map.shape, shape[2:])
        self.assertEqual(inferer.last_tier_map.dtype, torch.uint8)

    def test_metatensor_kept(self):
        affine = torch.diag(torch.tensor([2.0, 2.0, 2.0, 1.0]))
        inputs = MetaTensor(make_input((1, 1, 20, 21, 22)), affine=affine)
        result = RoutedSlidingWindowInferer(16)(inputs, ToyNet())
        self.assertIsInstance(result, MetaTensor)
        torch.testing.assert_close(result.affine, affine.double())

    def test_no_screen_warns_once_and_runs_plain(self):
        net = torch.jit.script(torch.nn.Conv3d(1, 2, 3, padding=1))  # TorchScript: no `screen`
        inferer = RoutedSlidingWindowInferer((16, 16, 16))
        inputs = make_input((1, 1, 20, 20, 20))
        with self.assertLogs("bundle.inferers.inferer", level="WARNING") as logs:
            result = inferer(inputs, net)
            inferer(inputs, net)
        self.assertEqual(len(logs.output), 1)
        self.assertFalse(inferer.last_stats["routing"])
        torch.testing.assert_close(result, sliding_window_inference(inputs, (16, 16, 16), 4, net, 0.25, "gaussian"))

    def test_config_swaps_router(self):
        parser = ConfigParser(
            {
                "inferer": {
                    "_target_": "bundle.inferers.RoutedSlidingWindowInferer",
                    "roi_size": [16, 16],
                    "router": {
                        "_target_": "bundle.inferers.SuspicionRouter",
                        "high_threshold": 0.9,
                        "low_threshold": 0.8,
                    },
                }
            }
        )
        inferer = parser.get_parsed_content("inferer")
        net = ToyNet(fixed_score=0.85)
        inferer(make_input((1, 1, 20, 20)), net)
        self.assertEqual(inferer.last_stats["num_medium"], inferer.last_stats["num_windows"])

    @parameterized.expand(ILL_CASES)
    def test_ill_arg(self, kwargs, error):
        with self.assertRaises(error):
            RoutedSlidingWindowInferer(**kwargs)

    def test_ill_call(self):
        with self.assertRaisesRegex(ValueError, "one entry per spatial dimension"):
            RoutedSlidingWindowInferer((16, 16))(make_input((1, 1, 20, 20, 20)), ToyNet())
        with self.assertRaisesRegex(ValueError, "out_channels"):  # 3 background logits, 2-channel network
            RoutedSlidingWindowInferer(16, background_logits=(1.0, 0.0, 0.0))(make_input((1, 1, 20, 20)), ToyNet())

        class TupleNet(ToyNet):
            def forward(self, x: torch.Tensor, enhancement: str = "full") -> tuple[torch.Tensor, ...]:
                return (super().forward(x, enhancement),)

        with self.assertRaisesRegex(TypeError, "must return a tensor"):
            RoutedSlidingWindowInferer(16)(make_input((1, 1, 20, 20)), TupleNet(fixed_score=1.0))

        class BadScreen(ToyNet):
            def screen(self, x: torch.Tensor) -> torch.Tensor:
                return torch.zeros(x.shape[0], 2)

        with self.assertRaisesRegex(ValueError, "one score per window"):
            RoutedSlidingWindowInferer(16)(make_input((1, 1, 20, 20)), BadScreen())


# ---- the gates: the candidate-mask gate and the router's tissue gate (LOW without screening)

GATE_SHAPE = (1, 1, 33, 34, 35)


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
        result = inferer(make_input(GATE_SHAPE), net, mask=torch.zeros(GATE_SHAPE[2:]))
        torch.testing.assert_close(result, background(GATE_SHAPE), rtol=0, atol=0)
        self.assertEqual((net.forward_calls, net.screen_calls), ([], 0))  # gated windows are not even screened
        stats = inferer.last_stats
        self.assertEqual((stats["num_low"], stats["num_gated"], stats["skipped_fraction"]), (27, 27, 1.0))
        self.assertTrue(all(w["score"] is None for w in stats["windows"]))

    @parameterized.expand(MASK_CASES)
    def test_windows_without_mask_voxel_are_low(self, _, region, expected_kept):
        inputs = make_input(GATE_SHAPE)
        net = ToyNet(fixed_score=1.0)  # every screened window is HIGH
        inferer = RoutedSlidingWindowInferer((16, 16, 16))
        mask = box_mask(GATE_SHAPE, region)
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
        inputs = make_input(GATE_SHAPE)
        net = ToyNet(fixed_score=0.0)
        mask = torch.zeros(GATE_SHAPE[2:])
        expected = sliding_window_inference(inputs, (16, 16, 16), 4, net, 0.25, "gaussian")
        for inferer in (
            RoutedSlidingWindowInferer((16, 16, 16), routing=False),
            RoutedSlidingWindowInferer((16, 16, 16), router=SuspicionRouter(enabled=False, tissue_threshold=0.5)),
        ):
            result = inferer(inputs, net, mask=mask)
            torch.testing.assert_close(result, expected, rtol=1e-6, atol=1e-6)
            self.assertEqual(inferer.last_stats["num_gated"], 0)

    def test_mask_gate_off(self):
        inputs = make_input(GATE_SHAPE)
        with_mask = RoutedSlidingWindowInferer((16, 16, 16), mask_gate=False)
        without = RoutedSlidingWindowInferer((16, 16, 16))
        torch.testing.assert_close(
            with_mask(inputs, ToyNet(), mask=torch.zeros(GATE_SHAPE[2:])), without(inputs, ToyNet()), rtol=0, atol=0
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


# (input shape, roi, overlap, mask region): the stitched box must give what the whole grid gives
BOX_CASES = [
    ((1, 1, 33, 34, 35), (16, 16, 16), 0.25, (slice(20, 24), slice(2, 6), slice(10, 12))),
    ((1, 1, 33, 34, 35), (16, 16, 16), 0.5, (slice(30, 33), slice(0, 3), slice(33, 35))),  # the last windows
    ((2, 1, 40, 37), (16, 12), (0.25, 0.5), (slice(18, 20), slice(14, 15))),
    ((1, 1, 48, 48, 20), (16, 16, 8), 0.25, (slice(0, 3), slice(45, 48), slice(4, 6))),
]


class TestGateBox(unittest.TestCase):
    """With the gate, only the box of the windows holding a mask voxel is stitched; nothing else may change."""

    @parameterized.expand(BOX_CASES)
    def test_same_as_the_whole_grid(self, shape, roi, overlap, region):
        inputs = make_input(shape, seed=3)
        mask = torch.zeros(shape[2:], dtype=torch.uint8)
        mask[region] = 1
        net = ConvScreenNet(len(roi))
        net.eval()
        boxed = RoutedSlidingWindowInferer(roi, overlap=overlap, sw_batch_size=3)
        whole = RoutedSlidingWindowInferer(roi, overlap=overlap, sw_batch_size=3)
        with torch.no_grad():
            result = boxed(MetaTensor(inputs), net, mask=mask)
            with mock.patch("bundle.inferers.inferer.gate_box", return_value=None):
                expected = whole(MetaTensor(inputs), net, mask=mask)
        self.assertIsNotNone(gate_box(mask.bool(), roi, overlap))  # it did crop
        self.assertIsInstance(result, MetaTensor)
        torch.testing.assert_close(result.as_tensor(), expected.as_tensor(), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(boxed.last_tier_map, whole.last_tier_map, rtol=0, atol=0)
        for key in ("num_windows", "num_high", "num_medium", "num_low", "num_gated", "skipped_fraction"):
            self.assertEqual(boxed.last_stats[key], whole.last_stats[key], key)
        strip = [{k: w[k] for k in ("batch", "slices", "tier")} for w in boxed.last_stats["windows"]]
        self.assertEqual(strip, [{k: w[k] for k in ("batch", "slices", "tier")} for w in whole.last_stats["windows"]])
        scores = [w["score"] for w in boxed.last_stats["windows"]]
        for got, want in zip(scores, (w["score"] for w in whole.last_stats["windows"])):
            self.assertEqual(got is None, want is None)
            if got is not None:
                self.assertAlmostEqual(got, want, places=5)

    @parameterized.expand(
        [((33, 34, 35), (16, 16, 16), 0.25), ((100, 61, 17), (32, 24, 8), 0.4), ((64, 64), (64, 32), 0.25)]
    )
    def test_grid_of_a_box_is_the_grid_inside_it(self, spatial, roi, overlap):
        # the premise of the box: MONAI's grid over any box spanned by grid windows is the full grid's windows in it
        full = [tuple((s.start, s.stop) for s in w) for w in sliding_window_slices(spatial, roi, overlap)]
        rng = torch.Generator().manual_seed(0)
        for _ in range(20):
            pick = [full[int(i)] for i in torch.randint(len(full), (2,), generator=rng)]
            box = [(min(p[d][0] for p in pick), max(p[d][1] for p in pick)) for d in range(len(spatial))]
            inside = [w for w in full if all(a <= s and e <= b for (s, e), (a, b) in zip(w, box))]
            sub = sliding_window_slices([b - a for a, b in box], roi, overlap)
            shifted = [tuple((s.start + a, s.stop + a) for s, (a, _) in zip(w, box)) for w in sub]
            self.assertEqual(shifted, inside)

    def test_no_crop_when_padded_or_whole(self):
        covered = torch.ones(33, 34, 35, dtype=torch.bool)
        self.assertIsNone(gate_box(covered, (16, 16, 16), 0.25))  # every window holds a voxel: the whole image
        self.assertIsNone(gate_box(covered[..., :10], (16, 16, 16), 0.25))  # padded by MONAI
        self.assertIsNone(gate_box(covered & False, (16, 16, 16), 0.25))  # nothing runs
        first_slices = covered.logical_and(torch.arange(35) < 3)  # only the first windows along the last axis
        self.assertEqual(gate_box(first_slices, (16, 16, 16), 0.25), ((0, 33), (0, 34), (0, 16)))


class TestLesionLogit(unittest.TestCase):
    """``foreground_channel``: one stitched lesion logit whose sigmoid is the 2-channel output's softmax."""

    @parameterized.expand(
        [
            ("routed_box", {}, True, 1),
            ("routed_whole", {}, False, 1),
            ("routing_off", {"routing": False}, True, 1),
            ("channel_0", {}, True, 0),
            ("2d_half_overlap", {"overlap": 0.5}, True, 1),
        ]
    )
    def test_sigmoid_equals_softmax_of_all_channels(self, _, kwargs, with_mask, channel):
        spatial_dims = 2 if "overlap" in kwargs else 3
        shape = (1, 1, 40, 37) if spatial_dims == 2 else (1, 1, 40, 37, 21)
        roi = (16,) * spatial_dims
        inputs = MetaTensor(make_input(shape, seed=5))
        mask = torch.zeros(shape[2:], dtype=torch.uint8)
        mask[(slice(3, 20), slice(5, 18), *((slice(2, 9),) if spatial_dims == 3 else ()))] = 1
        gate = {"mask": mask} if with_mask else {}
        net = ConvScreenNet(spatial_dims)
        net.eval()
        every = RoutedSlidingWindowInferer(roi, sw_batch_size=3, **kwargs)
        lesion = RoutedSlidingWindowInferer(roi, sw_batch_size=3, foreground_channel=channel, **kwargs)
        with torch.no_grad():
            logits = every(inputs, net, **gate)
            one = lesion(inputs, net, **gate)
        self.assertEqual(tuple(one.shape), (1, 1, *shape[2:]))
        self.assertIsInstance(one, MetaTensor)
        expected = torch.softmax(logits.as_tensor(), 1)[:, channel : channel + 1]
        torch.testing.assert_close(torch.sigmoid(one.as_tensor()), expected, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(lesion.last_tier_map, every.last_tier_map, rtol=0, atol=0)
        if with_mask and "routing" not in kwargs:  # some windows were gated: their background logit is compared too
            self.assertGreater(lesion.last_stats["num_gated"], 0)

    def test_network_without_two_channels(self):
        net = UNet(3, 1, 3, channels=(4, 8), strides=(2,), num_res_units=1)
        inferer = RoutedSlidingWindowInferer(16, routing=False, foreground_channel=1)
        with self.assertRaisesRegex(ValueError, "needs the network to return"):
            with torch.no_grad():
                inferer(make_input((1, 1, 20, 20, 20)), net)


class TestTissueGate(unittest.TestCase):
    def test_air_windows_are_skipped_unscreened(self):
        # tissue only for x < 10: the windows starting at x = 12 and 19 hold none
        inputs = torch.zeros(GATE_SHAPE)
        inputs[..., :10] = 0.8
        net = ToyNet(fixed_score=0.45)  # air would be MEDIUM without the gate
        inferer = RoutedSlidingWindowInferer((16, 16, 16), router=SuspicionRouter(tissue_threshold=0.15))
        result = inferer(inputs, net)
        stats = inferer.last_stats
        self.assertEqual((stats["num_medium"], stats["num_low"], stats["num_gated"]), (9, 18, 18))
        self.assertEqual(sum(len(means) for _, means in net.forward_calls), 9)
        torch.testing.assert_close(result[0, 0, ..., :10], 3 * inputs[0, 0, ..., :10], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(result[..., 16:], background(GATE_SHAPE)[..., 16:], rtol=0, atol=0)

    def test_gate_keeps_nothing(self):
        net = ToyNet(fixed_score=1.0)
        inferer = RoutedSlidingWindowInferer(16, router=SuspicionRouter(tissue_threshold=2.0))
        result = inferer(make_input((1, 1, 20, 20)), net)
        torch.testing.assert_close(result, background((1, 1, 20, 20)), rtol=0, atol=0)
        self.assertEqual((net.forward_calls, net.screen_calls), ([], 0))


if __name__ == "__main__":
    unittest.main()


class TestSingleWindowBatch(unittest.TestCase):
    """A single CPU window runs as a batch of two (PyTorch's slow conv path for batch 1), the output unchanged."""

    def test_single_windows_run_in_pairs(self):
        from bundle.inferers.windows import run_windows as _run_windows

        sizes = []

        class Net:
            pair_single_windows = True

            def __call__(self, x, enhancement="full"):
                sizes.append(x.shape[0])
                return x * 2 + (1 if enhancement == "full" else 0)

        net = Net()

        one, three = torch.rand(1, 1, 4, 4, 4), torch.rand(3, 1, 4, 4, 4)
        torch.testing.assert_close(_run_windows(net, one, enhancement="basic"), one * 2)
        torch.testing.assert_close(_run_windows(net, three), three * 2 + 1)
        self.assertEqual(sizes, [2, 3])
        Net.__call__ = lambda self, x: (x, x + 1)  # a tuple of per-window tensors
        pair = _run_windows(Net(), one)
        self.assertEqual([p.shape[0] for p in pair], [1, 1])
        torch.testing.assert_close(pair[1], one + 1)
        Net.__call__ = lambda self, x: {"p": x + 1}
        self.assertEqual(_run_windows(Net(), one)["p"].shape[0], 1)
        Net.pair_single_windows = False  # a network that does not ask for pairs runs its single windows alone
        Net.__call__ = lambda self, x: sizes.append(x.shape[0]) or x
        _run_windows(Net(), one)
        self.assertEqual(sizes[-1], 1)

    def test_routed_inference_unchanged_by_pairing(self):
        """The routed sliding window gives the same logits whether single windows are paired or not."""
        from bundle.inferers import inferer as module

        net = make_net("toy", 3)
        net.pair_single_windows = True
        x = make_input((1, 1, 20, 20, 20))
        routed = RoutedSlidingWindowInferer(roi_size=(8, 8, 8), sw_batch_size=1, overlap=0.25, routing=True)
        with eval_mode(net):
            paired = routed(x, net)
            original = module.run_windows
            try:
                module.run_windows = lambda network, windows, *a, **kw: network(windows, *a, **kw)
                single = routed(x, net)
            finally:
                module.run_windows = original
        torch.testing.assert_close(paired, single)
