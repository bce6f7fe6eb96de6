from __future__ import annotations

import math
import unittest

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from monai.metrics import compute_froc_score
from monai.utils import optional_import
from parameterized import parameterized

from bundle.metrics.lesion import (
    balance_score,
    dice,
    f1,
    froc,
    froc_by_size,
    lesion_f1,
    precision,
    recall,
    sensitivity_by_size,
)
from tests.metrics.test_matching import SCAN_A, SCAN_EMPTY, SCAN_FP_ONLY, cand, les

roc_curve, has_sklearn = optional_import("sklearn.metrics", name="roc_curve")


# (per_scan, expected sensitivities at LUNA16 rates), computed by hand in the comments
FROC_CASES = [
    # perfect detector: every lesion hit, no FP -> 1.0 everywhere
    ("perfect", [([cand(0, 0, 0, 0.9)], [les(0, 0, 0, 6)]), ([cand(9, 9, 9, 0.4)], [les(9, 9, 9, 6)])], [1.0] * 7),
    # 1 scan, 2 lesions: TP 0.9 -> (0 FP, 0.5); FP 0.5 tied with TP 0.5 -> (1 FP, 1.0): diagonal segment
    (
        "diagonal",
        [([cand(0, 0, 0, 0.9), cand(50, 0, 0, 0.5), cand(20, 0, 0, 0.5)], [les(0, 0, 0, 6), les(20, 0, 0, 6)])],
        [0.5625, 0.625, 0.75, 1.0, 1.0, 1.0, 1.0],
    ),
    # 3 scans, 4 lesions: points (0,.25) (0,.5) (1/3,.5) (1/3,.75) (2/3,.75) (1,.75) (4/3,.75); one lesion missed
    (
        "known_fp_order",
        [
            ([cand(0, 0, 0, 0.9), cand(50, 0, 0, 0.7), cand(80, 0, 0, 0.4)], [les(0, 0, 0, 6), les(99, 0, 0, 6)]),
            ([cand(0, 0, 0, 0.8), cand(50, 0, 0, 0.5)], [les(0, 0, 0, 6)]),
            ([cand(0, 0, 0, 0.6), cand(50, 0, 0, 0.3)], [les(0, 0, 0, 6)]),
        ],
        [0.5, 0.5, 0.75, 0.75, 0.75, 0.75, 0.75],
    ),
    # FP rate hit exactly at a vertical step (0.25, 0.25)->(0.25, 0.5): the upper sensitivity is used
    (
        "vertical_step",
        [
            ([cand(0, 0, 0, 0.9), cand(50, 0, 0, 0.8)], [les(0, 0, 0, 6), les(20, 0, 0, 6)]),
            ([cand(20, 0, 0, 0.7)], [les(20, 0, 0, 6), les(90, 0, 0, 6)]),
            SCAN_EMPTY,
            SCAN_EMPTY,
        ],
        [0.25, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5],
    ),
    # only candidate is scored lowest and is a TP: MONAI's compute_froc_curve_data would drop it
    # points (0,0) (1,0) (1,1): zero below 1 FP/scan, then 1
    ("lowest_is_tp", [([cand(0, 0, 0, 0.1), cand(50, 0, 0, 0.9)], [les(0, 0, 0, 6)])], [0, 0, 0, 1, 1, 1, 1]),
    ("no_candidates", [([], [les(0, 0, 0, 6)])], [0.0] * 7),
]

BAND_CASES = [
    ("bands", 0.5, [(1, 1), (1, 1), (1, 0), (0, 0)], (2, 1)),
    ("bands_high_threshold", 0.99, [(1, 0), (1, 0), (1, 0), (0, 0)], (2, 0)),
]

DICE_CASES = [
    ("both_empty", np.zeros((4, 4, 4)), np.zeros((4, 4, 4)), 1.0),
    ("pred_only", np.ones((4, 4, 4)), np.zeros((4, 4, 4)), 0.0),
    ("true_only", np.zeros((4, 4, 4)), np.ones((4, 4, 4)), 0.0),
    ("identical", np.eye(4)[None].repeat(3, 0), np.eye(4)[None].repeat(3, 0), 1.0),
    ("half", np.array([1, 1, 0, 0]), np.array([1, 0, 0, 0]), 2 / 3),
    ("torch", torch.tensor([[1, 0], [1, 0]]), torch.tensor([[1, 0], [0, 0]]), 2 / 3),
]


def _lesion_masks() -> tuple[np.ndarray, np.ndarray]:
    true = np.zeros((12, 12, 12), dtype=bool)
    pred = np.zeros_like(true)
    true[1:3, 1:3, 1:3] = True  # GT 1: touched by prediction -> TP
    pred[2:4, 2:4, 2:4] = True
    true[8:10, 1:3, 1:3] = True  # GT 2: missed -> FN
    pred[8:10, 8:10, 8:10] = True  # prediction touching no GT -> FP
    pred[5, 5, 5] = pred[6, 6, 6] = True  # diagonal neighbours: one component with 26-, two with 6-connectivity
    return pred, true


ILL_CASES = [
    ("froc_empty", lambda: froc([]), ValueError, "at least one scan"),
    ("froc_bad_rates", lambda: froc([SCAN_A], fp_rates=(0.0, 1.0)), ValueError, "fp_rates"),
    ("band_reversed", lambda: sensitivity_by_size([SCAN_A], bands=((6, 4),)), ValueError, "(6, 4)"),
    ("band_overlap", lambda: sensitivity_by_size([SCAN_A], bands=((3, 6), (4, 8))), ValueError, "overlap"),
    ("band_threshold", lambda: sensitivity_by_size([SCAN_A], threshold=2), ValueError, "threshold=2"),
    ("recall_negative", lambda: recall(-1, 0), ValueError, "tp=-1"),
    ("precision_float", lambda: precision(1.5, 0), TypeError, "tp=1.5"),
    ("f1_negative", lambda: f1(0, 0, -3), ValueError, "fn=-3"),
    ("dice_shape", lambda: dice(np.zeros((2, 2)), np.zeros((2, 3))), ValueError, "same shape"),
    ("dice_type", lambda: dice([0, 1], np.zeros(2)), TypeError, "pred_mask"),
    ("lesion_f1_shape", lambda: lesion_f1(np.zeros((2, 2)), np.zeros((3, 2))), ValueError, "same shape"),
    ("lesion_f1_connectivity", lambda: lesion_f1(np.zeros((2, 2)), np.zeros((2, 2)), connectivity=3), ValueError,
     "connectivity=3"),
    ("balance_recall", lambda: balance_score(1.2, 0.5, 1.0, 1.0), ValueError, "recall=1.2"),
    ("balance_precision", lambda: balance_score(0.5, -0.1, 1.0, 1.0), ValueError, "precision=-0.1"),
    ("balance_seconds", lambda: balance_score(0.5, 0.5, -1.0, 1.0), ValueError, "seconds=-1.0"),
    ("balance_params", lambda: balance_score(0.5, 0.5, 1.0, float("inf")), ValueError, "params_millions=inf"),
]


class TestRates(unittest.TestCase):
    @parameterized.expand([
        ("normal", (3, 1, 2), 0.6, 0.75, 2 * 3 / (2 * 3 + 1 + 2)),
        ("all_zero", (0, 0, 0), 1.0, 1.0, 1.0),
        ("no_detections", (0, 0, 4), 0.0, 1.0, 0.0),
        ("no_lesions", (0, 5, 0), 1.0, 0.0, 0.0),
    ])
    def test_rates(self, _, counts, exp_recall, exp_precision, exp_f1):
        tp, fp, fn = counts
        self.assertAlmostEqual(recall(tp, fn), exp_recall)
        self.assertAlmostEqual(precision(tp, fp), exp_precision)
        self.assertAlmostEqual(f1(tp, fp, fn), exp_f1)

    @settings(max_examples=60, deadline=None)
    @given(st.integers(0, 50), st.integers(0, 50), st.integers(0, 50))
    def test_rates_bounded(self, tp, fp, fn):
        for value in (recall(tp, fn), precision(tp, fp), f1(tp, fp, fn)):
            self.assertFalse(math.isnan(value))
            self.assertTrue(0.0 <= value <= 1.0)
        self.assertLessEqual(precision(tp, fp + 1), precision(tp, fp))


class TestFroc(unittest.TestCase):
    @parameterized.expand(FROC_CASES)
    def test_sensitivities(self, _, per_scan, expected):
        result = froc(per_scan)
        np.testing.assert_allclose(result["sensitivities"], expected, atol=1e-12)
        self.assertAlmostEqual(result["cpm"], float(np.mean(expected)), places=12)

    @parameterized.expand(FROC_CASES[:5])
    def test_cpm_matches_monai(self, _, per_scan, expected):
        result = froc(per_scan)
        fps = np.concatenate([[0.0], result["curve"]["fps_per_scan"]])
        sens = np.concatenate([[0.0], result["curve"]["sensitivity"]])
        monai_cpm = compute_froc_score(fps[::-1], sens[::-1], eval_thresholds=result["fp_rates"])
        self.assertAlmostEqual(result["cpm"], float(monai_cpm), places=12)

    def test_curve(self):
        result = froc(FROC_CASES[2][1])
        self.assertEqual(result["curve"]["thresholds"], [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3])
        np.testing.assert_allclose(result["curve"]["fps_per_scan"], [0, 0, 1 / 3, 1 / 3, 2 / 3, 1, 4 / 3])
        np.testing.assert_allclose(result["curve"]["sensitivity"], [0.25, 0.5, 0.5, 0.75, 0.75, 0.75, 0.75])
        self.assertEqual((result["n_scans"], result["n_lesions"]), (3, 4))

    def test_cap_per_scan(self):
        # 3 FPs outscore the TP; a cap of 3 drops the TP, the default cap of 100 keeps it
        per_scan = [([cand(50, 0, 0, 0.9), cand(60, 0, 0, 0.8), cand(70, 0, 0, 0.7), cand(0, 0, 0, 0.1)],
                     [les(0, 0, 0, 6)])]
        self.assertEqual(froc(per_scan)["sensitivities"][-1], 1.0)
        capped = froc(per_scan, max_candidates_per_scan=3)
        self.assertEqual(capped["sensitivities"][-1], 0.0)
        self.assertEqual(capped["n_candidates_evaluated"], 3)

    def test_no_lesions_convention(self):
        with self.assertLogs("bundle.metrics.lesion", level="WARNING"):
            result = froc([SCAN_FP_ONLY])
        self.assertEqual(result["cpm"], 1.0)

    @unittest.skipUnless(has_sklearn, "reference check needs scikit-learn")
    def test_against_luna16_reference(self):
        """Port of noduleCADEvaluationLUNA16.py (nodule loop + roc_curve + np.interp) on random scans."""
        rng = np.random.default_rng(0)
        rates = [0.125, 0.25, 0.5, 1, 2, 4, 8]
        for _ in range(20):
            per_scan = []
            for _ in range(int(rng.integers(2, 6))):
                lesions = [les(40.0 * k, 0, 0, float(rng.uniform(3, 20)), bool(rng.random() < 0.2)) for k in range(3)]
                centers = rng.uniform(-10, 90, size=(int(rng.integers(0, 15)), 3)) * [1, 0.1, 0.1]
                per_scan.append(([cand(*c, float(rng.random())) for c in centers], lesions))
            gt, prob = [], []
            for candidates, lesions in per_scan:
                remaining = dict(enumerate(candidates))
                for lesion in lesions:
                    r2 = (lesion["diameter_mm"] / 2) ** 2
                    hits = [k for k, c in enumerate(candidates)
                            if np.sum((np.array(c["center_mm"]) - lesion["center_mm"]) ** 2) < r2]
                    for k in hits:
                        remaining.pop(k, None)
                    if not lesion["ignore"]:
                        gt.append(1)
                        prob.append(max(candidates[k]["score"] for k in hits) if hits else None)
                gt += [0] * len(remaining)
                prob += [c["score"] for c in remaining.values()]
            kept = [(g, p) for g, p in zip(gt, prob) if p is not None]
            n_detected = sum(g for g, _ in kept)
            if n_detected == 0 or n_detected == len(kept):
                continue  # degenerate roc_curve input (NaN rates), handled by the border-case branch in LUNA16
            fpr, tpr, _ = roc_curve([g for g, _ in kept], [p for _, p in kept])
            fps = fpr * (len(kept) - n_detected) / len(per_scan)
            sens = tpr * n_detected / sum(gt)
            np.testing.assert_allclose(froc(per_scan)["sensitivities"], np.interp(rates, fps, sens), atol=1e-12)


class TestSizeBands(unittest.TestCase):
    PER_SCAN = [
        (
            [cand(0, 0, 0, 0.9), cand(20, 0, 0, 0.6), cand(60, 0, 0, 0.95)],
            [
                les(0, 0, 0, 3.5),  # band 3-4, hit 0.9
                les(20, 0, 0, 5.0),  # band 4-6, hit 0.6
                les(40, 0, 0, 8.0),  # band 6-10, missed
                les(60, 0, 0, 2.0),  # outside (< 3), hit 0.95
                les(80, 0, 0, 30.0),  # outside (30 is not < 30), missed
                les(99, 0, 0, 12.0, ignore=True),  # ignored: not counted
            ],
        )
    ]

    @parameterized.expand(BAND_CASES)
    def test_bands(self, _, threshold, expected, expected_outside):
        result = sensitivity_by_size(self.PER_SCAN, threshold)
        self.assertEqual([(b["n"], b["hits"]) for b in result["bands"]], expected)
        self.assertEqual((result["outside"]["n"], result["outside"]["hits"]), expected_outside)
        self.assertIsNone(result["bands"][3]["sensitivity"])
        self.assertEqual(result["bands"][0]["sensitivity"], expected[0][1] / expected[0][0])


class TestMasks(unittest.TestCase):
    @parameterized.expand(DICE_CASES)
    def test_dice(self, _, pred, true, expected):
        self.assertAlmostEqual(dice(pred, true), expected, places=6)

    def test_lesion_f1(self):
        pred, true = _lesion_masks()
        # 26-connectivity: TP 1, FN 1, FP 2 (the far blob, the diagonal pair) -> 1 / (1 + 3/2)
        self.assertAlmostEqual(lesion_f1(pred, true), 1 / 2.5)
        # 6-connectivity splits the diagonal pair: FP 3 -> 1 / (1 + 4/2)
        self.assertAlmostEqual(lesion_f1(pred, true, connectivity=1), 1 / 3)
        self.assertEqual(lesion_f1(np.zeros((3, 3, 3)), np.zeros((3, 3, 3))), 1.0)
        self.assertEqual(lesion_f1(np.ones((3, 3, 3)), np.zeros((3, 3, 3))), 0.0)


class TestBalanceScore(unittest.TestCase):
    @parameterized.expand([
        ("perfect_free", (1.0, 1.0, 0.0, 0.0), 1.0),
        ("paper_example", (0.8, 0.6, 1.0, 5.0), 0.5 * 1.4 - 0.5 * (0.5 + 0.1)),
        ("negative", (0.0, 0.0, 4.0, 100.0), -2.0),
    ])
    def test_arithmetic(self, _, args, expected):
        self.assertAlmostEqual(balance_score(*args), expected, places=12)


class TestIllArg(unittest.TestCase):
    @parameterized.expand(ILL_CASES)
    def test_ill_arg(self, _, call, error, fragment):
        with self.assertRaises(error) as ctx:
            call()
        self.assertIn(fragment, str(ctx.exception))



class TestFrocBySize(unittest.TestCase):
    """One scan: a 5 mm lesion A hit at 0.9, a 20 mm lesion B hit at 0.8, a false positive at 0.95. In band 3-10 mm
    B is ignored (its hit is neither TP nor FP): points (FP/scan, sensitivity) (1, 0) at 0.95 and (1, 1) at 0.9, so
    from the origin the sensitivity is 0 below 1 FP/scan and 1 from 1 FP/scan on (the vertical step's top); band
    10-30 mm the same with B. A third, ignored lesion of 6 mm counts in no band."""

    SCAN = ([cand(0, 0, 0, 0.9), cand(100, 0, 0, 0.8), cand(0, 100, 0, 0.95)],
            [les(0, 0, 0, 5.0), les(100, 0, 0, 20.0), les(0, 0, 100, 6.0, ignore=True)])  # fmt: skip

    def test_bands(self):
        bands = froc_by_size([self.SCAN], bands=((3, 10), (10, 30), (30, 100)))
        self.assertEqual([b["n"] for b in bands], [1, 1, 0])
        for band in bands[:2]:
            np.testing.assert_allclose(band["sensitivities"], [0, 0, 0, 1, 1, 1, 1])
            self.assertAlmostEqual(band["cpm"], 4 / 7)
        self.assertEqual((bands[2]["sensitivities"], bands[2]["cpm"]), (None, None))
        whole = froc([self.SCAN])  # both lesions: 0.5 at (1, 0.5), 1 at (1, 1)
        np.testing.assert_allclose(whole["sensitivities"], [0, 0, 0, 1, 1, 1, 1])


if __name__ == "__main__":
    unittest.main()
