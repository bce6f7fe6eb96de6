from __future__ import annotations

import unittest

import numpy as np
from parameterized import parameterized

from bundle.data.synthetic.noise import correlated_noise, estimate_noise, vary_host
from tests.data.synthetic.phantom_fixtures import make_phantom


class TestHostNoise(unittest.TestCase):
    @parameterized.expand([[30.0, 0.0], [30.0, 1.0], [10.0, 1.5]])
    def test_estimate_noise(self, std, sigma):
        noise = correlated_noise((96, 96, 4), std, sigma, np.random.default_rng(0))
        self.assertLess(abs(noise.std() - std) / std, 0.1)
        est_std, est_sigma = estimate_noise(noise + 50.0, np.ones(noise.shape, dtype=bool))
        self.assertLess(abs(est_std - std) / std, 0.15)
        self.assertLess(abs(est_sigma - sigma), 0.35)

    def test_estimate_noise_empty_mask(self):
        self.assertEqual(estimate_noise(np.zeros((8, 8, 2)), np.zeros((8, 8, 2), dtype=bool)), (0.0, 0.0))

    @parameterized.expand([["CT"], ["MR"]])
    def test_vary_host(self, modality):
        hu, _ = make_phantom()
        vol = hu if modality == "CT" else np.clip(hu + 1000.0, 0, None) / 10.0
        a, pa = vary_host(vol, modality, np.random.default_rng(3))
        b, pb = vary_host(vol, modality, np.random.default_rng(3))
        np.testing.assert_array_equal(a, b)
        self.assertEqual(pa, pb)
        self.assertEqual(a.shape, vol.shape)
        if modality == "CT":
            self.assertTrue(a.min() >= -1024.0 and a.max() <= 3071.0)
            self.assertTrue(np.all(a[0, 0] == -1000.0) or "blur_sigma_vox" in pa)
        else:
            self.assertTrue(np.all(a >= 0))

    def test_vary_host_ill_arg(self):
        hu, _ = make_phantom()
        with self.assertRaises(ValueError):
            vary_host(hu, "PET", np.random.default_rng(0))


if __name__ == "__main__":
    unittest.main()
