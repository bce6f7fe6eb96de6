from __future__ import annotations

import unittest

import numpy as np

from bundle.data.converters.lidc_consensus import cluster_annotations, rasterize_nodule
from bundle.data.converters.lidc_xml import LidcNodule, LidcRoi


class TestLidcConsensus(unittest.TestCase):
    def test_rasterize_contour_and_hole(self):
        square = [(2, 2), (8, 2), (8, 8), (2, 8)]
        hole = [(4, 4), (6, 4), (6, 6), (4, 6)]
        nodule = LidcNodule(0, "r", "n", [
            LidcRoi(0.0, None, True, np.array(square)), LidcRoi(0.0, None, False, np.array(hole)),
            LidcRoi(1.0, None, True, np.array(square)),
        ])
        offset, mask = rasterize_nodule(nodule, [3, 3, 4], (12, 12, 6))
        np.testing.assert_array_equal(offset, [2, 2, 3])
        self.assertEqual(mask.shape, (7, 7, 2))
        self.assertEqual(mask[:, :, 1].sum(), 25)  # inside the outline only: 3..7 x 3..7
        self.assertEqual(mask[:, :, 0].sum(), 24)  # minus the hole's inside pixel (5, 5)
        self.assertFalse(mask[3, 3, 0])
        _, with_contour = rasterize_nodule(nodule, [3, 3, 4], (12, 12, 6), include_contour=True)
        self.assertEqual(with_contour[:, :, 1].sum(), 49)
        with self.assertRaisesRegex(ValueError, "one index per roi"):
            rasterize_nodule(nodule, [3], (12, 12, 6))
        with self.assertRaisesRegex(ValueError, "contour points must lie inside the 8 x 12 slice"):
            rasterize_nodule(nodule, [3, 3, 4], (8, 12, 6))

    def test_cluster_annotations(self):
        affine = np.diag([0.8, 0.8, 1.5, 1.0])
        point = np.ones((1, 1, 1), dtype=bool)
        boxes = [(np.array([0, 0, 0]), point), (np.array([1, 0, 0]), point), (np.array([3, 0, 0]), point),
                 (np.array([2, 0, 1]), point)]
        self.assertEqual(cluster_annotations(boxes, affine, 0.8), [[0, 1], [2], [3]])
        self.assertEqual(cluster_annotations(boxes, affine, 1.7), [[0, 1, 2, 3]])  # transitive
        with self.assertRaisesRegex(ValueError, "distance_mm must be >= 0"):
            cluster_annotations(boxes, affine, -1.0)


if __name__ == "__main__":
    unittest.main()
