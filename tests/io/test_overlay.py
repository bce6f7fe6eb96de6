from __future__ import annotations

import io
import unittest

import numpy as np
from parameterized import parameterized
from PIL import Image

from bundle.io.overlay import render_overlay
from tests.io.test_writers import AFFINE, LESION, PNG_MAGIC, SHAPE, case_arrays


class TestRenderOverlay(unittest.TestCase):
    def test_many_lesions_capped(self):
        image, seg = case_arrays()
        png = render_overlay(image, seg, AFFINE, [LESION] * 20, "ct", window=(-1000, 400), max_panels=3)
        with Image.open(io.BytesIO(png)) as im:
            self.assertEqual(im.size, (960, 380))  # 3 panels of 320 px, one row

    def test_2d_overlay(self):
        lesion = {**LESION, "center_voxel": [10.0, 12.0]}
        png = render_overlay(np.random.default_rng(0).random((30, 31)), np.ones((30, 31)), np.eye(3), [lesion])
        self.assertEqual(png[:8], PNG_MAGIC)

    @parameterized.expand(
        [[np.zeros((4, 4, 4)), {}], [np.zeros(SHAPE), {"max_panels": 0}], [np.zeros((2, 2, 2, 2)), {}]]
    )
    def test_overlay_ill_arg(self, image, kwargs):
        with self.assertRaises(ValueError):
            render_overlay(image, np.zeros(image.shape if image.ndim == 4 else SHAPE), AFFINE, [], **kwargs)


if __name__ == "__main__":
    unittest.main()
