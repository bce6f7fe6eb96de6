"""The measures of an OHIF screenshot (bundle.export.ohif); the browser part is tests/export/test_monailabel.py's
``test_ohif_draws_the_lesion_on_its_images``."""

from __future__ import annotations

import io
import unittest

import numpy as np
from PIL import Image

from bundle.export.ohif import colour_fraction, colour_mask, displayed_image_box


def _png(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


class TestColourFraction(unittest.TestCase):
    def test_share_of_segment_pixels(self):
        grey = np.full((20, 10, 3), 120)
        self.assertEqual(colour_fraction(_png(grey), (221, 84, 84)), 0.0)
        grey[:5, :4] = (230, 90, 80)  # 20 reddish pixels of 200, within the tolerance
        grey[10, :] = (150, 84, 84)  # 10 pixels 71 away: outside the default tolerance (60), inside 80
        self.assertAlmostEqual(colour_fraction(_png(grey), (221, 84, 84)), 20 / 200)
        self.assertAlmostEqual(colour_fraction(_png(grey), (221, 84, 84), tolerance=80), 30 / 200)

    def test_mask_marks_the_pixels(self):
        grey = np.full((6, 8, 3), 120)
        grey[1:3, 2:5] = (221, 84, 84)
        mask = colour_mask(_png(grey), (221, 84, 84))
        np.testing.assert_array_equal(np.argwhere(mask), np.argwhere(grey[..., 0] == 221))


class TestDisplayedImageBox(unittest.TestCase):
    def test_image_on_black_with_overlay_text(self):
        shot = np.zeros((50, 80, 3))
        shot[5:45, 10:70] = 25  # a dark-grey image, as OHIF shows lung-density noise
        shot[0:3, 0:12] = 200  # overlay text: a few bright pixels in rows and columns outside the image
        shot[47, 0:15] = 200
        self.assertEqual(displayed_image_box(_png(shot)), (5, 45, 10, 70))

    def test_black_screenshot_is_an_error(self):
        with self.assertRaisesRegex(ValueError, "no image"):
            displayed_image_box(_png(np.zeros((10, 10, 3))))


if __name__ == "__main__":
    unittest.main()
