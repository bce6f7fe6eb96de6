from __future__ import annotations

import math
import unittest

import numpy as np
from parameterized import parameterized

from bundle.experiments.analysis.features import gradient_magnitude, lesion_features, size_band_of, summarize_by_band


def cube_case(value: float = 100.0) -> tuple[np.ndarray, np.ndarray]:
    """A 4^3 cube of ``value`` at [4, 8)^3 in a 12^3 volume of zeros."""
    image = np.zeros((12, 12, 12), np.float32)
    image[4:8, 4:8, 4:8] = value
    return image, (image > 0).astype(np.uint8)


class TestLesionFeatures(unittest.TestCase):
    def test_cube_known_answers(self):
        image, label = cube_case()
        (r,) = lesion_features(image, label, (1.0, 1.0, 1.0), ring_mm=2.0)
        self.assertEqual((r["n_voxels"], r["volume_mm3"]), (64, 64.0))
        self.assertAlmostEqual(r["diameter_mm"], (6 * 64 / math.pi) ** (1 / 3))
        self.assertEqual(r["size_band"], "3-5")
        self.assertEqual(r["center_voxel"], [5.5, 5.5, 5.5])
        self.assertEqual((r["lesion_mean"], r["lesion_var"], r["surround_mean"], r["surround_var"]), (100, 0, 0, 0))
        # central differences of a 100 step: 50 per axis that crosses it. Inner contour: 24 face voxels (one axis),
        # 24 edge voxels (two), 8 corners (three); outer 6-shell: 96 voxels, one axis each
        expected = (24 * 50 + 24 * 50 * math.sqrt(2) + 8 * 50 * math.sqrt(3) + 96 * 50) / 152
        self.assertAlmostEqual(r["edge_gradient"], expected, places=6)
        self.assertEqual(r["surround_gradient"], 0.0)  # beyond the shell the neighbours are all background

    def test_ramp_gradient_with_spacing(self):
        image = np.broadcast_to(3.0 * np.arange(12)[:, None, None], (12, 12, 12)).astype(np.float32)
        label = np.zeros(image.shape, np.uint8)
        label[4:8, 4:8, 4:8] = 1
        np.testing.assert_allclose(gradient_magnitude(image, (2.0, 1.0, 1.0)), 1.5)
        (r,) = lesion_features(image, label, (2.0, 1.0, 1.0), ring_mm=2.5)
        self.assertAlmostEqual(r["lesion_mean"], 3.0 * 5.5)
        self.assertAlmostEqual(r["lesion_var"], 9.0 * np.var([4, 5, 6, 7]))
        self.assertAlmostEqual(r["edge_gradient"], 1.5)
        self.assertAlmostEqual(r["surround_gradient"], 1.5)
        self.assertAlmostEqual(r["surround_mean"], 3.0 * 5.5, places=5)  # the ring is symmetric about x = 5.5

    def test_anisotropic_ring_stays_in_plane(self):
        image = np.zeros((9, 9, 3), np.float32)
        label = np.zeros(image.shape, np.uint8)
        label[3:5, 3:5, 1] = 1
        (r3,) = lesion_features(image, label, (1.0, 1.0, 5.0), ring_mm=3.0)  # the next slice is 5 mm away
        (r2,) = lesion_features(image[:, :, 1], label[:, :, 1], (1.0, 1.0), ring_mm=3.0)
        self.assertEqual(r3["n_surround"], r2["n_surround"])
        self.assertGreater(r3["n_surround"], 0)

    def test_two_lesions_and_others_excluded_from_ring(self):
        image = np.zeros((20, 10, 10), np.float32)
        image[2:5, 2:5, 2:5] = 10.0
        image[7:10, 2:5, 2:5] = 50.0  # 2 voxels apart: inside the first one's 3 mm ring
        records = lesion_features(image, (image > 0).astype(np.uint8), (1.0, 1.0, 1.0), ring_mm=3.0, merge_gap_mm=0)
        self.assertEqual([r["lesion_mean"] for r in records], [10.0, 50.0])
        self.assertEqual([r["surround_mean"] for r in records], [0.0, 0.0])
        # by default two components 3 mm apart are one lesion, as the detection metrics count them
        (merged,) = lesion_features(image, (image > 0).astype(np.uint8), (1.0, 1.0, 1.0), ring_mm=3.0)
        self.assertEqual((merged["n_voxels"], merged["lesion_mean"]), (54, 30.0))

    def test_size_bands(self):
        self.assertEqual([size_band_of(d) for d in (2.9, 3.0, 4.99, 5.0, 10.0, 30.0, 30.1)],
                         [None, "3-5", "3-5", "5-10", "10-30", "10-30", None])

    @parameterized.expand([
        [lambda: lesion_features(np.zeros((4, 4)), np.zeros((4, 5)), (1, 1)), "same shape"],
        [lambda: lesion_features(np.zeros((4, 4)), np.zeros((4, 4)), (1, 1), ring_mm=0), "ring_mm"],
        [lambda: gradient_magnitude(np.zeros((4, 4)), (1.0,)), "spacing"],
        [lambda: gradient_magnitude(np.zeros((4, 4)), (1.0, 0.0)), "spacing"],
    ])
    def test_ill_arg(self, call, message):
        with self.assertRaisesRegex(ValueError, message):
            call()


class TestSummarize(unittest.TestCase):
    def test_known_rows(self):
        def rec(d, lm, sm, lv, sv, eg, sg):
            return {"diameter_mm": d, "lesion_mean": lm, "surround_mean": sm, "lesion_var": lv, "surround_var": sv,
                    "edge_gradient": eg, "surround_gradient": sg}

        records = [rec(4.0, 10, 0, 4, 2, 6, 2), rec(4.5, 20, 10, 8, 2, 9, 3), rec(12.0, 5, 5, 1, 1, 1, 1),
                   rec(40.0, 0, 0, 1, 1, 1, 1), rec(6.0, 1, float("nan"), 1, float("nan"), 1, float("nan"))]
        small, mid, large = summarize_by_band(records)
        self.assertEqual((small["band"], small["n"], mid["n"], large["n"]), ("3-5", 2, 1, 1))
        self.assertEqual((small["lesion_mean"], small["surround_mean"], small["diff_mean"]), (15.0, 5.0, 10.0))
        darker = summarize_by_band([rec(4.0, 10, 0, 1, 1, 1, 1), rec(4.0, 0, 10, 1, 1, 1, 1)])[0]
        self.assertEqual((darker["diff_mean"], darker["abs_diff_mean"]), (0.0, 10.0))  # signed cancels, abs not
        self.assertEqual((small["lesion_mean_sd"], small["ratio_mean"]), (5.0, None))  # no ratio of signed means
        self.assertEqual((small["ratio_var"], small["ratio_gradient"]), (3.0, 3.0))  # mean of 4/2, 8/2; 6/2, 9/3
        self.assertIsNotNone(small["p_gradient"])
        self.assertIsNone(large["p_mean"])  # one lesion: no test
        self.assertIsNone(mid["lesion_mean"])  # its only lesion has no surround
        self.assertEqual(large["ratio_gradient"], 1.0)


if __name__ == "__main__":
    unittest.main()
