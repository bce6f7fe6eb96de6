"""The colour measure of the OHIF screenshot (bundle.export.ohif); the browser part runs by hand (docs/ecosystem.md)."""

from __future__ import annotations

import io
import unittest

import numpy as np
from PIL import Image

from bundle.export.ohif import colour_fraction


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


if __name__ == "__main__":
    unittest.main()
