from __future__ import annotations

import unittest

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from parameterized import parameterized

from bundle.metrics.lesion import f1, precision, recall
from bundle.metrics.matching import detection_counts, match_candidates


def cand(x: float, y: float, z: float, score: float) -> dict:
    return {"center_mm": [x, y, z], "score": score}


def les(x: float, y: float, z: float, d: float, ignore: bool = False) -> dict:
    return {"center_mm": [x, y, z], "diameter_mm": d, "ignore": ignore}


# scan A: L0 r=5 at origin, L1 ignored, L2 r=4 at (0, 40, 0)
SCAN_A = (
    [
        cand(0, 0, 4.99, 0.9),  # just inside L0 -> TP
        cand(1, 0, 0, 0.8),  # second hit on L0 -> double, ignored
        cand(30, 1, 0, 0.95),  # hits the ignored L1 -> ignored
        cand(0, 44.01, 0, 0.7),  # just outside L2 -> FP
        cand(100, 0, 0, 0.3),  # far -> FP below 0.5
    ],
    [les(0, 0, 0, 10), les(30, 0, 0, 6, ignore=True), les(0, 40, 0, 8)],
)
SCAN_EMPTY = ([], [])
SCAN_MISSED = ([], [les(0, 0, 0, 5)])  # 5 mm lesion, nothing found
SCAN_FP_ONLY = ([cand(0, 0, 0, 0.6)], [])

COUNT_CASES = [
    ("scan_a_t05", [SCAN_A], 0.5, (1, 1, 1)),
    ("scan_a_t0", [SCAN_A], 0.0, (1, 2, 1)),
    ("scan_a_t095", [SCAN_A], 0.95, (0, 0, 2)),
    ("four_scans", [SCAN_A, SCAN_EMPTY, SCAN_MISSED, SCAN_FP_ONLY], 0.5, (1, 2, 2)),
    ("dict_items", [{"candidates": SCAN_A[0], "lesions": SCAN_A[1]}], 0.5, (1, 1, 1)),
]

# (candidate offset from a 10 mm lesion's centre, expected status); the LUNA16 rule is strict: dist < radius
RADIUS_CASES = [
    ("inside", [4.999 / 3, 2 * 4.999 / 3, 2 * 4.999 / 3], "tp"),
    ("outside", [5.001 / 3, 2 * 5.001 / 3, 2 * 5.001 / 3], "fp"),
    ("boundary_strict", [0.0, 5.0, 0.0], "fp"),
    ("centre", [0.0, 0.0, 0.0], "tp"),
]

ILL_CASES = [
    ("missing_center", lambda: match_candidates([{"score": 0.5}], []), ValueError, "center_mm"),
    ("missing_score", lambda: match_candidates([{"center_mm": [0, 0, 0]}], []), ValueError, "score"),
    ("nan_score", lambda: match_candidates([cand(0, 0, 0, float("nan"))], []), ValueError, "score"),
    ("not_dict", lambda: match_candidates([[0, 0, 0]], []), TypeError, "candidates[0]"),
    ("bad_center", lambda: match_candidates([{"center_mm": "abc", "score": 1}], []), ValueError, "center_mm"),
    ("missing_diameter", lambda: match_candidates([], [{"center_mm": [0, 0, 0]}]), ValueError, "diameter_mm"),
    ("negative_diameter", lambda: match_candidates([], [les(0, 0, 0, -1)]), ValueError, "-1"),
    ("negative_radius", lambda: match_candidates([], [], hit_radius=-2.0), ValueError, "hit_radius=-2.0"),
    ("bad_radius_name", lambda: match_candidates([], [], hit_radius="diameter"), ValueError, "diameter"),
    ("negative_min_radius", lambda: match_candidates([], [], min_radius_mm=-1), ValueError, "min_radius_mm=-1"),
    ("bad_max_candidates", lambda: match_candidates([], [], max_candidates=0), ValueError, "max_candidates=0"),
    ("mismatched_dims", lambda: match_candidates([cand(0, 0, 0, 1)], [{"center_mm": [0, 0], "diameter_mm": 1}]),
     ValueError, "expected 3"),
    ("threshold_high", lambda: detection_counts([SCAN_A], threshold=1.5), ValueError, "threshold=1.5"),
    ("threshold_negative", lambda: detection_counts([SCAN_A], threshold=-0.1), ValueError, "threshold=-0.1"),
    ("scan_not_pair", lambda: detection_counts([([], [], [])]), ValueError, "per_scan[0]"),
    ("scan_missing_key", lambda: detection_counts([{"candidates": []}]), ValueError, "lesions"),
    ("scan_error_index", lambda: detection_counts([SCAN_A, ([{"score": 1}], [])]), ValueError, "per_scan[1]"),
    ("per_scan_dict", lambda: detection_counts({"candidates": [], "lesions": []}), TypeError, "per_scan"),
]


class TestMatchCandidates(unittest.TestCase):
    def test_scan_a_statuses(self):
        m = match_candidates(*SCAN_A)
        self.assertEqual(m.candidate_status, ("tp", "double", "ignored", "fp", "fp"))
        self.assertEqual(m.candidate_lesion, (0, 0, 1, -1, -1))
        self.assertEqual(m.lesion_score, (0.9, None, None))
        self.assertEqual(m.lesion_ignored, (False, True, False))

    @parameterized.expand(RADIUS_CASES)
    def test_radius_boundary(self, _, offset, expected):
        m = match_candidates([{"center_mm": offset, "score": 0.9}], [les(0, 0, 0, 10)])
        self.assertEqual(m.candidate_status, (expected,))

    def test_nearest_lesion_wins(self):
        lesions = [les(0, 0, 0, 10), les(6, 0, 0, 10)]
        m = match_candidates([cand(4, 0, 0, 0.9), cand(2, 0, 0, 0.8)], lesions)
        self.assertEqual(m.candidate_lesion, (1, 0))
        self.assertEqual(m.candidate_status, ("tp", "tp"))

    def test_nearest_is_ignored(self):
        lesions = [les(0, 0, 0, 10), les(6, 0, 0, 10, ignore=True)]
        m = match_candidates([cand(4, 0, 0, 0.9)], lesions)
        self.assertEqual(m.candidate_status, ("ignored",))
        self.assertEqual(m.counts(0.5), (0, 0, 1))

    def test_highest_score_then_nearest(self):
        m = match_candidates([cand(3, 0, 0, 0.5), cand(1, 0, 0, 0.7), cand(0.5, 0, 0, 0.7)], [les(0, 0, 0, 10)])
        self.assertEqual(m.candidate_status, ("double", "double", "tp"))
        self.assertEqual(m.lesion_score, (0.7,))

    def test_min_radius(self):
        scan = ([cand(1.0, 0, 0, 0.9)], [les(0, 0, 0, 1.0)])  # 1 mm lesion: radius 0.5 mm
        self.assertEqual(match_candidates(*scan).candidate_status, ("tp",))  # default min_radius_mm=1.5
        self.assertEqual(match_candidates(*scan, min_radius_mm=0.0).candidate_status, ("fp",))

    def test_fixed_hit_radius(self):
        scan = ([cand(3, 0, 0, 0.9)], [les(0, 0, 0, 10)])
        self.assertEqual(match_candidates(*scan, hit_radius=2.0).candidate_status, ("fp",))
        self.assertEqual(match_candidates(*scan, hit_radius=3.5).candidate_status, ("tp",))

    def test_max_candidates(self):
        m = match_candidates([cand(50, 0, 0, 0.2), cand(60, 0, 0, 0.9), cand(70, 0, 0, 0.5)], [], max_candidates=2)
        self.assertEqual(m.candidate_status, ("dropped", "fp", "fp"))

    def test_any_dims_and_arrays(self):
        m = match_candidates([{"center_mm": np.array([1.0, 1.0]), "score": np.float32(0.5)}],
                             [{"center_mm": torch.tensor([0.0, 0.0]), "diameter_mm": 4}])
        self.assertEqual(m.candidate_status, ("tp",))


class TestDetectionCounts(unittest.TestCase):
    @parameterized.expand(COUNT_CASES)
    def test_counts(self, _, per_scan, threshold, expected):
        c = detection_counts(per_scan, threshold)
        self.assertEqual((c["tp"], c["fp"], c["fn"]), expected)

    def test_totals(self):
        c = detection_counts([SCAN_A, SCAN_EMPTY, SCAN_MISSED, SCAN_FP_ONLY])
        self.assertEqual((c["n_scans"], c["n_lesions"], c["n_ignored_lesions"], c["n_candidates"]), (4, 3, 1, 6))

    @settings(max_examples=25, deadline=None)
    @given(
        st.lists(st.tuples(st.floats(-20, 20), st.floats(-20, 20), st.floats(0, 1)), max_size=6),
        st.lists(st.tuples(st.floats(-20, 20), st.floats(-20, 20), st.floats(3, 12), st.booleans()), max_size=4),
        st.floats(0.5, 1.0),
        st.floats(0, 1),
    )
    def test_adding_false_positive_never_raises_precision(self, cands, lesions, fp_score, threshold):
        candidates = [cand(x, y, 0, s) for x, y, s in cands]
        gt = [les(x, y, 0, d, ig) for x, y, d, ig in lesions]
        before = detection_counts([(candidates, gt)], threshold)
        after = detection_counts([(candidates + [cand(500, 500, 500, fp_score)], gt)], threshold)
        p_before, p_after = precision(before["tp"], before["fp"]), precision(after["tp"], after["fp"])
        self.assertLessEqual(p_after, p_before)
        for c in (before, after):
            for value in (recall(c["tp"], c["fn"]), precision(c["tp"], c["fp"]), f1(c["tp"], c["fp"], c["fn"])):
                self.assertTrue(0.0 <= value <= 1.0)


class TestIllArg(unittest.TestCase):
    @parameterized.expand(ILL_CASES)
    def test_ill_arg(self, _, call, error, fragment):
        with self.assertRaises(error) as ctx:
            call()
        self.assertIn(fragment, str(ctx.exception))


if __name__ == "__main__":
    unittest.main()
