"""Lesion boxes between grids and the world (bundle.lesions.geometry)."""

from __future__ import annotations

import unittest

import numpy as np

from bundle.lesions.find import find_lesions
from bundle.lesions.geometry import box_edge_corners, lesions_to_grid, voxel_box_to_world

AFFINE = np.diag([1.0, 2.0, 2.5, 1.0])
AFFINE[:3, 3] = [10.0, -20.0, 5.0]


class TestVoxelBoxToWorld(unittest.TestCase):
    def test_voxel_box_to_world(self):
        box = voxel_box_to_world([[2, 3, 4], [6, 5, 8]], AFFINE, lps=False)  # voxels 2..5, 3..4, 4..7
        np.testing.assert_allclose(box, [10 + 3.5, -20 + 7.0, 5 + 13.75, 4.0, 4.0, 10.0])
        lps = voxel_box_to_world([[2, 3, 4], [6, 5, 8]], AFFINE)
        np.testing.assert_allclose(lps, [-13.5, 13.0, 18.75, 4.0, 4.0, 10.0])

    def test_box_edge_corners(self):
        corners = box_edge_corners([[2, 3], [6, 5]])  # 2-D: 4 corners at the voxel edges
        self.assertEqual(corners.shape, (4, 2))
        np.testing.assert_allclose(sorted(map(tuple, corners)), [(1.5, 2.5), (1.5, 4.5), (5.5, 2.5), (5.5, 4.5)])


class TestLesionsToGrid(unittest.TestCase):
    def test_downsampled_and_flipped_grid(self):
        blob = np.zeros((20, 20, 10), np.float32)
        blob[4:8, 6:12, 2:5] = 1.0
        (lesion,) = find_lesions(blob, np.eye(4))
        # target grid: 2 mm along x, y flipped (voxel j at world y = 19 - j)
        target = np.array([[2.0, 0, 0, 0], [0, -1.0, 0, 19.0], [0, 0, 1.0, 0], [0, 0, 0, 1.0]])
        (mapped,) = lesions_to_grid([lesion], np.eye(4), target, (10, 20, 10))
        np.testing.assert_allclose(mapped["center_voxel"], [2.75, 10.5, 3.0])
        self.assertEqual(mapped["box_voxel"], [[2, 8, 2], [5, 14, 5]])
        for key in ("center_mm", "diameter_mm", "volume_mm3", "score", "tier"):
            self.assertEqual(mapped[key], lesion[key])
        # world coordinates agree in both grids
        np.testing.assert_allclose((target @ [*mapped["center_voxel"], 1.0])[:3], lesion["center_mm"])

    def test_box_clipped_to_the_target(self):
        lesion = {"center_voxel": [0.0, 0.0, 0.0], "box_voxel": [[0, 0, 0], [3, 3, 3]], "center_mm": [0.0] * 3}
        (mapped,) = lesions_to_grid([lesion], np.eye(4), np.diag([1.0, 1.0, 1.0, 1.0]), (2, 2, 2))
        self.assertEqual(mapped["box_voxel"], [[0, 0, 0], [2, 2, 2]])

    def test_ill_affine(self):
        with self.assertRaisesRegex(ValueError, "affines"):
            lesions_to_grid([], np.eye(3), np.eye(4), (2, 2, 2))


if __name__ == "__main__":
    unittest.main()
