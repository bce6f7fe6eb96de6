"""A routed inferer's ``last_stats`` as the per-case outputs record them (bundle.inferers.stats)."""

from __future__ import annotations

import unittest
from types import SimpleNamespace

import numpy as np
import torch
from parameterized import parameterized

from bundle.inferers.stats import inferer_tier_codes, scalar_stats, skipped_fraction, window_counts


class TestWindowCounts(unittest.TestCase):
    def test_from_counts(self):
        stats = {"num_high": 3, "num_medium": 2, "num_low": 7}
        self.assertEqual(window_counts(stats), {"low": 7, "medium": 2, "high": 3})

    def test_from_window_records(self):
        stats = {"windows": [{"tier": 0}, {"tier": 2}, {"tier": 2}]}
        self.assertEqual(window_counts(stats), {"low": 1, "medium": 0, "high": 2})

    @parameterized.expand([("none", None), ("plain_inferer", {}), ("records_without_tier", {"windows": [{}]})])
    def test_nothing_to_count(self, _, stats):
        self.assertIsNone(window_counts(stats))


class TestInfererTierCodes(unittest.TestCase):
    def test_matching_mismatching_and_absent(self):
        codes = torch.zeros(1, 4, 5, 6, dtype=torch.uint8)
        codes[0, 1, 2, 3] = 2
        got = inferer_tier_codes(SimpleNamespace(last_tier_map=codes), (4, 5, 6), "a")
        self.assertEqual((got.dtype, got.shape, int(got[1, 2, 3]), int(got.sum())), (np.uint8, (4, 5, 6), 2, 2))
        with self.assertLogs("bundle.inferers.stats", level="WARNING") as logs:
            self.assertIsNone(inferer_tier_codes(SimpleNamespace(last_tier_map=codes), (4, 5, 7), "case_b"))
        self.assertIn("case case_b", logs.output[0])
        self.assertIsNone(inferer_tier_codes(object(), (4, 5, 6)))  # a plain MONAI inferer has none


class TestScalars(unittest.TestCase):
    def test_keeps_numbers_strings_and_flat_number_dicts(self):
        stats = {"n": 3, "f": 0.5, "s": "x", "b": True, "d": {"a": 1}, "nested": {"a": [1]}, "list": [1, 2]}
        self.assertEqual(scalar_stats(stats), {"n": 3, "f": 0.5, "s": "x", "b": True, "d": {"a": 1}})
        self.assertEqual(scalar_stats(None), {})

    @parameterized.expand([("value", {"skipped_fraction": 0.25}, 0.25), ("nan", {"skipped_fraction": float("nan")}, None),
                           ("absent", {}, None), ("none", None, None)])
    def test_skipped_fraction(self, _, stats, expected):
        self.assertEqual(skipped_fraction(stats), expected)


if __name__ == "__main__":
    unittest.main()
