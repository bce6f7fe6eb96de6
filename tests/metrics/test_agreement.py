from __future__ import annotations

import math
import unittest

import numpy as np
from parameterized import parameterized
from sklearn.metrics import cohen_kappa_score

from bundle.metrics.agreement import (
    cohen_kappa,
    count_agreement,
    fleiss_kappa,
    lesion_agreement,
    pooled_agreement,
    reader_marks,
)

# 3 lesions x 4 readers (the LIDC test case): lesion A marked by readers 0-2, a small one by reader 0, B by reader 3
MARKS = np.array([[1, 1, 1, 0], [1, 0, 0, 0], [0, 0, 0, 1]], dtype=bool)
# by hand: p_o, p_e from the marginals; kappa = (p_o - p_e) / (1 - p_e)
HAND_COHEN = {"r0|r1": 0.4, "r0|r2": 0.4, "r0|r3": -0.8, "r1|r2": 1.0, "r1|r3": -0.5, "r2|r3": -0.5}
HAND_FLEISS = -1.0 / 35.0  # P_i = 1/2 for every lesion, P_e = (5/12)^2 + (7/12)^2 = 74/144

# Fleiss (1971) / Wikipedia example: 10 subjects, 14 raters, 5 categories, kappa 0.210
WIKI_TABLE = [[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
              [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]]


class TestKappas(unittest.TestCase):
    def test_cohen_by_hand_and_sklearn(self):
        for i in range(4):
            for j in range(i + 1, 4):
                got = cohen_kappa(MARKS[:, i], MARKS[:, j])
                self.assertAlmostEqual(got, HAND_COHEN[f"r{i}|r{j}"], places=10)
                self.assertAlmostEqual(got, cohen_kappa_score(MARKS[:, i], MARKS[:, j]), places=10)

    def test_cohen_random_matches_sklearn(self):
        rng = np.random.default_rng(0)
        a, b = rng.integers(0, 3, 50), rng.integers(0, 3, 50)
        self.assertAlmostEqual(cohen_kappa(a, b), cohen_kappa_score(a, b), places=10)

    def test_fleiss_by_hand_and_published(self):
        n = MARKS.sum(1)
        self.assertAlmostEqual(fleiss_kappa(np.stack([n, 4 - n], 1)), HAND_FLEISS, places=10)
        self.assertAlmostEqual(fleiss_kappa(WIKI_TABLE), 0.2099, places=4)
        self.assertAlmostEqual(fleiss_kappa([[4, 0], [0, 4], [4, 0]]), 1.0, places=10)

    def test_undefined(self):
        self.assertTrue(math.isnan(cohen_kappa([1, 1, 1], [1, 1, 1])))  # p_e = 1
        self.assertTrue(math.isnan(cohen_kappa([], [])))
        self.assertTrue(math.isnan(fleiss_kappa([[4, 0], [4, 0]])))
        self.assertTrue(math.isnan(fleiss_kappa(np.zeros((0, 2)))))

    @parameterized.expand([
        [lambda: cohen_kappa([1, 0], [1]), "same length"],
        [lambda: fleiss_kappa([1, 2]), "2-D"],
        [lambda: fleiss_kappa([[2, 2], [3, 2]]), "same number"],
        [lambda: fleiss_kappa([[1, 0], [0, 1]]), ">= 2"],
        [lambda: fleiss_kappa([[3, -1], [1, 1]]), "non-negative"],
        [lambda: reader_marks([{"readers": 2}], 4), "reader_sessions"],
        [lambda: reader_marks([{"reader_sessions": [4]}], 4), r"in \[0, 4\)"],
        [lambda: lesion_agreement(np.zeros(3)), "2-D"],
        [lambda: lesion_agreement(MARKS, ["a"]), "4 entries"],
    ])
    def test_ill_arg(self, call, message):
        with self.assertRaisesRegex(ValueError, message):
            call()


class TestLesionAgreement(unittest.TestCase):
    def test_report(self):
        records = [{"reader_sessions": [0, 1, 2]}, {"reader_sessions": [0]}, {"reader_sessions": [3]}]
        marks = reader_marks(records, 4)
        np.testing.assert_array_equal(marks, MARKS)
        result = lesion_agreement(marks)
        self.assertEqual((result["n_lesions"], result["n_readers"]), (3, 4))
        self.assertEqual(result["marked_by"], {"1": 2, "2": 0, "3": 1, "4": 0})
        self.assertAlmostEqual(result["fleiss_kappa"], round(HAND_FLEISS, 4))
        self.assertEqual(result["cohen_kappa"], HAND_COHEN)
        self.assertAlmostEqual(result["mean_cohen_kappa"], round(np.mean(list(HAND_COHEN.values())), 4))

    def test_pooled_skips_other_reader_counts(self):
        case = {"n_reading_sessions": 4, "lesions": [{"reader_sessions": [0, 1, 2]}, {"reader_sessions": [0]}]}
        other = {"n_reading_sessions": 3, "lesions": [{"reader_sessions": [0]}]}
        last = {"n_reading_sessions": 4, "lesions": [{"reader_sessions": [3]}]}
        result = pooled_agreement([case, other, last])
        self.assertEqual((result["n_cases"], result["n_cases_skipped"], result["n_lesions"]), (2, 1, 3))
        self.assertAlmostEqual(result["fleiss_kappa"], round(HAND_FLEISS, 4))
        self.assertEqual(pooled_agreement([])["n_cases"], 0)


class TestCountAgreement(unittest.TestCase):
    def test_by_hand(self):
        """Two lesions of 4 readers, marked by 4 and by 2: P_i = 1 and 1/3, P = 2/3, p = (6/8, 2/8), P_e = 5/8,
        kappa = (2/3 - 5/8) / (3/8) = 1/9; the same as Fleiss on any marks matrix with those counts."""
        out = count_agreement([4, 2], 4)
        self.assertAlmostEqual(out["fleiss_kappa"], 1 / 9, places=4)
        marks = np.array([[1, 1, 1, 1], [0, 1, 0, 1]], bool)
        self.assertAlmostEqual(out["fleiss_kappa"], lesion_agreement(marks)["fleiss_kappa"], places=4)
        self.assertEqual(out["marked_by"], {"1": 0, "2": 1, "3": 0, "4": 1})

    def test_bands_and_capping(self):
        out = count_agreement([4, 2, 6, 1], 4, diameters_mm=[2.0, 5.0, 12.0, 40.0])
        self.assertEqual(out["marked_by"], {"1": 1, "2": 1, "3": 0, "4": 2})  # 6 marks of 4 readers count as 4
        bands = out["by_diameter"]
        self.assertEqual(list(bands), ["0-3 mm", "3-6 mm", "6-10 mm", "10-30 mm", ">= 30 mm"])
        self.assertEqual([b["n_lesions"] for b in bands.values()], [1, 1, 0, 1, 1])
        self.assertIsNone(bands["6-10 mm"]["fleiss_kappa"])  # no lesion: undefined
        self.assertIsNone(bands["10-30 mm"]["fleiss_kappa"])  # every reader agrees on the one category

    def test_bad_input(self):
        with self.assertRaisesRegex(ValueError, "marked by >= 1"):
            count_agreement([0, 2], 4)
        with self.assertRaisesRegex(ValueError, "one size per lesion"):
            count_agreement([1, 2], 4, diameters_mm=[3.0])


if __name__ == "__main__":
    unittest.main()
