"""The routing tiers, named once (bundle.tiers)."""

from __future__ import annotations

import unittest

from bundle.tiers import TIER_NAMES, TIER_REPORT_ORDER, RoutingTier


class TestTiers(unittest.TestCase):
    def test_names_follow_the_codes(self):
        self.assertEqual([int(t) for t in RoutingTier], [0, 1, 2])
        self.assertEqual(TIER_NAMES, ("low", "medium", "high"))
        for tier in RoutingTier:
            self.assertEqual(TIER_NAMES[tier], tier.name.lower())

    def test_reports_list_the_most_work_first(self):
        self.assertEqual(TIER_REPORT_ORDER, ("high", "medium", "low"))


if __name__ == "__main__":
    unittest.main()
