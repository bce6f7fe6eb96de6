from __future__ import annotations

import unittest

import numpy as np
from parameterized import parameterized

from bundle.data.synthetic.shapes import (
    library_shape_model,
    random_rotation,
    shape_model,
    shape_reach,
    unit_vectors,
    unit_volume,
    voxel_occupancy,
)

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


class TestLibraryShape(unittest.TestCase):
    """A real nodule's mask (here a bar of 12 x 4 x 3 voxels of 0.5 x 0.5 x 1 mm) as a shape model."""

    def setUp(self):
        self.mask = np.zeros((14, 6, 5), bool)
        self.mask[1:13, 1:5, 1:4] = True
        self.spacing = (0.5, 0.5, 1.0)
        self.radius = (3 * self.mask.sum() * 0.25 / (4 * np.pi)) ** (1 / 3)

    def test_model(self):
        model = library_shape_model(self.mask, self.spacing, np.random.default_rng(0))
        np.testing.assert_allclose(model["rot"][2], [0, 0, 1])  # turned about z only
        np.testing.assert_allclose(model["grid_step"], np.asarray(self.spacing) / self.radius)
        self.assertAlmostEqual(unit_volume(model), 4 / 3 * np.pi)
        farthest = np.linalg.norm([5.5 * 0.5, 1.5 * 0.5, 1.0]) + 0.5 * np.linalg.norm(self.spacing)  # mm
        self.assertAlmostEqual(shape_reach(model), farthest / self.radius)
        with self.assertRaisesRegex(ValueError, "non-empty"):
            library_shape_model(np.zeros((3, 3, 3), bool), self.spacing, np.random.default_rng(0))

    def test_occupancy_keeps_the_shape(self):
        """At its own scale the shape fills its own volume on any grid, and keeps its z extent (3 mm) and its
        length in-plane (6 mm) whatever the in-plane turn."""
        for seed in range(3):
            model = library_shape_model(self.mask, self.spacing, np.random.default_rng(seed))
            occ, _ = voxel_occupancy(model, self.radius, np.array([10.0, 10.0, 10.0]), np.zeros(3, int),
                                     np.full(3, 21), (0.5, 0.5, 0.5))  # fmt: skip
            volume = float(self.mask.sum()) * 0.25
            self.assertAlmostEqual(float(occ.sum()) * 0.125, volume, delta=0.1 * volume)
            solid = np.argwhere(occ >= 0.5)
            self.assertAlmostEqual((solid[:, 2].max() - solid[:, 2].min() + 1) * 0.5, 3.0, delta=0.5)
            in_plane = solid[:, :2] * 0.5
            length = max(np.linalg.norm(a - b) for a in in_plane[::7] for b in in_plane[::7])
            self.assertGreater(length, 5.0)


if __name__ == "__main__":
    unittest.main()
