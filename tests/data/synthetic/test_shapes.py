from __future__ import annotations

import unittest

import numpy as np
from parameterized import parameterized

from bundle.data.synthetic.shapes import random_rotation, shape_model, unit_vectors, unit_volume, voxel_occupancy

SHAPE_CASES = [["spherical"], ["lobulated"], ["spiculated"]]


class TestShapes(unittest.TestCase):
    def test_rotation_and_unit_vectors(self):
        rot = random_rotation(np.random.default_rng(0))
        np.testing.assert_allclose(rot @ rot.T, np.eye(3), atol=1e-12)
        np.testing.assert_allclose(np.linalg.norm(unit_vectors(np.random.default_rng(0), 5), axis=1), 1.0)

    @parameterized.expand(SHAPE_CASES)
    def test_shape_model(self, shape):
        model = shape_model(shape, np.random.default_rng(1))
        self.assertAlmostEqual(float(np.prod(model["axes"])), 1.0, places=6)  # volume-preserving anisotropy
        n_lobes = {"spherical": (0, 0), "lobulated": (2, 4), "spiculated": (0, 2)}[shape]
        self.assertTrue(n_lobes[0] <= len(model["lobes"]) <= n_lobes[1])
        self.assertEqual(len(model["spikes"]) >= 12, shape == "spiculated")
        self.assertEqual(len(model["spikes"]) == 0, shape != "spiculated")
        if shape == "spherical":
            self.assertAlmostEqual(unit_volume(model), 4.0 / 3.0 * np.pi, delta=0.1)  # the unit ellipsoid
        else:
            self.assertGreaterEqual(unit_volume(model), 4.0 / 3.0 * np.pi - 0.1)  # lobes only add volume

    @parameterized.expand(SHAPE_CASES)
    def test_voxel_occupancy(self, shape):
        model = shape_model(shape, np.random.default_rng(2))
        spacing = (0.8, 0.8, 2.5)
        lo, hi = np.zeros(3, int), np.array([33, 34, 11])
        center = (hi - 1) / 2.0
        occ, core = voxel_occupancy(model, 5.0, center, lo, hi, spacing, core=0.5)
        self.assertEqual(occ.shape, (33, 34, 11))
        self.assertEqual(occ.dtype, np.float32)
        self.assertTrue(0.0 <= occ.min() and occ.max() <= 1.0)
        self.assertEqual(occ[tuple(np.round(center).astype(int))], 1.0)  # the center is inside
        self.assertLess(float(core.sum()), float(occ.sum()))  # the solid core is the smaller, inner part
        # the occupancy sums to the shape's volume (spicules add a little)
        volume = float(occ.sum()) * float(np.prod(spacing))
        expected = unit_volume(model) * 5.0**3
        self.assertGreater(volume, 0.8 * expected)
        if shape != "spiculated":
            self.assertLess(volume, 1.2 * expected)


if __name__ == "__main__":
    unittest.main()
