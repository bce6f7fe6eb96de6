"""bundle.lesions.patches: multi-scale patches around candidate centres."""

from __future__ import annotations

import unittest

import numpy as np

from bundle.lesions.patches import candidate_patches


class TestCandidatePatches(unittest.TestCase):
    def setUp(self):
        self.image = np.random.default_rng(0).random((40, 36, 20)).astype(np.float32)

    def test_scale_one_is_the_crop_around_the_centre(self):
        out = candidate_patches(self.image, [[20.2, 18.0, 9.6]], shape=(8, 6, 4), scales=(1,))
        self.assertEqual(out.shape, (1, 1, 8, 6, 4))
        np.testing.assert_array_equal(out[0, 0], self.image[16:24, 15:21, 8:12])

    def test_scale_two_is_the_block_mean_of_twice_the_field(self):
        out = candidate_patches(self.image, [[20, 18, 10]], shape=(4, 4, 2), scales=(1, 2))
        self.assertEqual(out.shape, (1, 2, 4, 4, 2))
        big = self.image[16:24, 14:22, 8:12]
        np.testing.assert_allclose(out[0, 1], big.reshape(4, 2, 4, 2, 2, 2).mean(axis=(1, 3, 5)), rtol=1e-6)

    def test_outside_the_image_is_filled(self):
        out = candidate_patches(self.image[None], [[0, 0, 0], [39, 35, 19]], shape=(4, 4, 2), scales=(1,), fill=-1.0)
        self.assertEqual(out.shape, (2, 1, 4, 4, 2))
        self.assertTrue(np.all(out[0, 0, :2] == -1.0) and np.all(out[0, 0, :, :, :1] == -1.0))
        np.testing.assert_array_equal(out[0, 0, 2:, 2:, 1:], self.image[:2, :2, :1])
        self.assertTrue(np.all(out[1, 0, 3:] == -1.0))  # the row past the last voxel
        far = candidate_patches(self.image, [[500, 500, 500]], shape=(4, 4, 2), scales=(1,), fill=-1.0)
        self.assertTrue(np.all(far == -1.0))

    def test_no_candidates(self):
        self.assertEqual(candidate_patches(self.image, [], shape=(4, 4, 2)).shape, (0, 2, 4, 4, 2))

    def test_bad_arguments(self):
        with self.assertRaisesRegex(ValueError, "3-D"):
            candidate_patches(self.image[0], [[1, 1, 1]])
        with self.assertRaisesRegex(ValueError, "even"):
            candidate_patches(self.image, [[1, 1, 1]], shape=(3, 4, 4))
        with self.assertRaisesRegex(ValueError, "scales"):
            candidate_patches(self.image, [[1, 1, 1]], scales=(0,))


if __name__ == "__main__":
    unittest.main()
