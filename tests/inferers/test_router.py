from __future__ import annotations

import unittest

import torch
from parameterized import parameterized

from bundle.inferers import SuspicionRouter, get_screen
from bundle.tiers import RoutingTier


class MeanScreenNet(torch.nn.Module):
    """Toy contract network: the suspicion score is the window's mean intensity."""

    def __init__(self) -> None:
        super().__init__()
        self.screen_calls = 0

    def forward(self, x: torch.Tensor, enhancement: str = "full") -> torch.Tensor:
        return torch.cat([2 * x, 2 * x], dim=1)

    def screen(self, x: torch.Tensor) -> torch.Tensor:
        self.screen_calls += 1
        return x.mean(dim=tuple(range(1, x.ndim)))


class Wrapper(torch.nn.Module):
    """Stands in for DataParallel: the contract network is under ``.module``."""

    def __init__(self, module: torch.nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x)


# (router kwargs, scores, expected tiers)
TIER_CASES = [
    ({}, [0.3, 0.6, 0.45], [0, 2, 1]),  # the boundaries: low is inclusive, high is inclusive
    ({}, [0.0, 1.0, 0.2999, 0.3001, 0.5999, 0.6001], [0, 2, 0, 1, 1, 2]),
    ({"high_threshold": 0.5, "low_threshold": 0.0}, [0.0, 0.01, 0.5, 0.49], [0, 1, 2, 1]),
    ({"high_threshold": 1.0, "low_threshold": 0.9}, [1.0, 0.95, 0.9], [2, 1, 0]),
    ({"enabled": False}, [0.0, 0.3, 0.45, 1.0], [2, 2, 2, 2]),
    ({}, [float("nan"), float("inf"), -float("inf")], [2, 2, 2]),  # non-finite scores are never skipped
]

# (router kwargs, expected error)
ILL_CASES = [
    ({"high_threshold": 0.3, "low_threshold": 0.3}, ValueError),  # low == high
    ({"high_threshold": 0.2, "low_threshold": 0.4}, ValueError),  # low > high
    ({"high_threshold": 1.1}, ValueError),
    ({"low_threshold": -0.1}, ValueError),
    ({"high_threshold": float("nan")}, ValueError),
    ({"high_threshold": "0.6"}, TypeError),
    ({"low_threshold": True}, TypeError),
    ({"enabled": 1}, TypeError),
    ({"tissue_threshold": "0.1"}, TypeError),
    ({"tissue_threshold": float("nan")}, ValueError),
    ({"min_tissue_fraction": 1.0}, ValueError),
    ({"min_tissue_fraction": -0.1}, ValueError),
    ({"min_tissue_fraction": float("nan")}, ValueError),
]

# (router kwargs, per-window constant values, expected tissue gate)
GATE_CASES = [
    ({}, [0.0, 0.5], [True, True]),  # gate off by default
    ({"tissue_threshold": 0.15}, [0.0, 0.1499, 0.15, 0.9], [False, False, True, True]),
    ({"tissue_threshold": 0.15, "min_tissue_fraction": 0.5}, [0.0, 0.9], [False, True]),
]


class TestSuspicionRouter(unittest.TestCase):
    @parameterized.expand(TIER_CASES)
    def test_tiers(self, kwargs, scores, expected):
        tiers = SuspicionRouter(**kwargs).tiers(torch.tensor(scores))
        self.assertEqual(tiers.dtype, torch.long)
        self.assertEqual(tiers.tolist(), expected)

    def test_tier_values(self):
        self.assertEqual([int(t) for t in (RoutingTier.LOW, RoutingTier.MEDIUM, RoutingTier.HIGH)], [0, 1, 2])

    def test_tiers_float64_boundaries(self):
        tiers = SuspicionRouter().tiers(torch.tensor([0.3, 0.6, 0.45], dtype=torch.float64))
        self.assertEqual(tiers.tolist(), [0, 2, 1])

    def test_score_calls_screen(self):
        net = MeanScreenNet()
        windows = torch.stack([torch.full((1, 4, 5, 6), v) for v in (0.1, 0.5, 0.9)])  # (3, 1, 4, 5, 6)
        scores = SuspicionRouter().score(net, windows)
        self.assertEqual(net.screen_calls, 1)
        self.assertEqual(tuple(scores.shape), (3,))
        torch.testing.assert_close(scores, torch.tensor([0.1, 0.5, 0.9]))

    def test_score_through_wrapper(self):
        net = MeanScreenNet()
        scores = SuspicionRouter().score(Wrapper(net), torch.zeros(2, 1, 4, 4))
        self.assertEqual(net.screen_calls, 1)
        self.assertEqual(scores.tolist(), [0.0, 0.0])

    def test_score_without_screen_falls_back_to_high(self):
        router = SuspicionRouter()
        with self.assertLogs("bundle.inferers.router", level="WARNING") as logs:
            scores = router.score(torch.nn.Conv3d(1, 2, 3, padding=1), torch.zeros(4, 1, 6, 6, 6))
        self.assertIn("no `screen`", logs.output[0])
        self.assertEqual(scores.tolist(), [1.0] * 4)
        self.assertEqual(router.tiers(scores).tolist(), [2] * 4)

    def test_get_screen(self):
        net = MeanScreenNet()
        self.assertIsNotNone(get_screen(net))
        self.assertIsNotNone(get_screen(Wrapper(net)))
        self.assertIsNone(get_screen(torch.nn.Identity()))
        self.assertIsNone(get_screen(lambda x: x))

    def test_score_bad_screen_output(self):
        class BadScreen(MeanScreenNet):
            def screen(self, x: torch.Tensor) -> torch.Tensor:
                return torch.zeros(x.shape[0] + 1)

        with self.assertRaisesRegex(ValueError, "one score per window"):
            SuspicionRouter().score(BadScreen(), torch.zeros(2, 1, 4, 4))

    def test_score_bad_windows(self):
        with self.assertRaisesRegex(ValueError, "windows must be"):
            SuspicionRouter().score(MeanScreenNet(), torch.zeros(2, 4))

    @parameterized.expand(GATE_CASES)
    def test_tissue_gate(self, kwargs, values, expected):
        windows = torch.stack([torch.full((1, 4, 5, 6), v) for v in values])
        self.assertEqual(SuspicionRouter(**kwargs).tissue_gate(windows).tolist(), expected)

    def test_tissue_gate_fraction(self):
        windows = torch.zeros(2, 1, 10, 10)
        windows[0, 0, :5] = 1.0  # 50 % tissue
        windows[1, 0, :6] = 1.0  # 60 % tissue
        router = SuspicionRouter(tissue_threshold=0.5, min_tissue_fraction=0.5)  # keeps fractions > 0.5
        self.assertEqual(router.tissue_gate(windows).tolist(), [False, True])
        one_voxel = torch.zeros(1, 2, 10, 10)
        one_voxel[0, 1, 3, 3] = 1.0  # any channel counts
        self.assertEqual(SuspicionRouter(tissue_threshold=0.5).tissue_gate(one_voxel).tolist(), [True])

    def test_score_skips_gated_windows(self):
        net = MeanScreenNet()
        windows = torch.stack([torch.full((1, 4, 5, 6), v) for v in (0.0, 0.5, 0.9)])
        router = SuspicionRouter(tissue_threshold=0.2)
        scores = router.score(net, windows)
        torch.testing.assert_close(scores, torch.tensor([0.0, 0.5, 0.9]))
        self.assertEqual(router.tiers(scores).tolist(), [0, 1, 2])
        all_air = router.score(net, torch.zeros(3, 1, 4, 5, 6))
        self.assertEqual(all_air.tolist(), [0.0] * 3)
        self.assertEqual(net.screen_calls, 1)  # the all-air batch is never screened

    def test_gated_windows_are_not_screened(self):
        class CountingNet(MeanScreenNet):
            def screen(self, x: torch.Tensor) -> torch.Tensor:
                self.seen = x.shape[0]
                return super().screen(x)

        net = CountingNet()
        windows = torch.stack([torch.full((1, 4, 4), v) for v in (0.0, 0.7, 0.0, 0.4)])
        SuspicionRouter(tissue_threshold=0.1).score(net, windows)
        self.assertEqual(net.seen, 2)

    @parameterized.expand(ILL_CASES)
    def test_ill_arg(self, kwargs, error):
        with self.assertRaises(error):
            SuspicionRouter(**kwargs)

    def test_ill_arg_message_names_values(self):
        with self.assertRaisesRegex(ValueError, r"low_threshold=0\.5, high_threshold=0\.4"):
            SuspicionRouter(high_threshold=0.4, low_threshold=0.5)

    def test_repr(self):
        self.assertIn("high_threshold=0.6", repr(SuspicionRouter()))


if __name__ == "__main__":
    unittest.main()
