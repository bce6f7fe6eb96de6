from __future__ import annotations

import unittest

import numpy as np

from bundle.data.synthetic.host_context import prepare_host
from tests.data.synthetic.phantom_fixtures import AFFINE, make_context


class TestPrepareHost(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.hu, cls.truth, cls.ctx = make_context()

    def test_placement_maps(self):
        ctx = self.ctx
        self.assertEqual((ctx.modality, ctx.organ, ctx.shape), ("CT", "lungs", self.hu.shape))
        self.assertGreater(ctx.candidates.size, 0)
        self.assertTrue(np.all(ctx.region.ravel()[ctx.candidates]))  # centers only inside the lungs
        self.assertTrue(np.all(ctx.allowed[ctx.region]))  # the allowed zone holds the region
        for dist in (ctx.dist_boundary_mm, ctx.dist_vessel_mm, ctx.dist_face_mm):
            self.assertEqual(dist.shape, ctx.candidates.shape)
        self.assertGreater(ctx.noise_std, 0.0)

    def test_ill_arg(self):
        with self.assertRaises(ValueError):
            prepare_host(self.hu, AFFINE, "PET", self.ctx.region)
        with self.assertRaises(ValueError):
            prepare_host(self.hu, AFFINE, "CT", self.ctx.region[:-1])
        with self.assertRaises(ValueError):
            prepare_host(self.hu[..., 0], AFFINE, "CT", self.ctx.region[..., 0])


if __name__ == "__main__":
    unittest.main()
