"""report.html: the Lung-RADS size bands, the per-lesion views (box and contour where the lesion is, in
radiological display), the page itself; and the evaluator writing it with ``html_report``."""

from __future__ import annotations

import io
import re
import tempfile
import unittest
from pathlib import Path

import numpy as np
from PIL import Image

from bundle.io.report import render_lesion_views, size_band, write_case_report

AFFINE = np.diag([1.0, 1.0, 2.0, 1.0])  # RAS: x index grows towards the patient's right


def _volume(center: tuple[int, int, int], shape=(64, 48, 12)) -> tuple[np.ndarray, np.ndarray, dict]:
    image = np.zeros(shape, np.float32)
    labels = np.zeros(shape, np.uint8)
    lo, hi = np.array(center) - (3, 3, 1), np.array(center) + (4, 4, 2)
    image[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] = 1.0
    labels[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] = 1
    lesion = {"center_voxel": list(center), "box_voxel": [lo.tolist(), hi.tolist()], "center_mm": [0.0, 0.0, 0.0],
              "diameter_mm": 7.0, "volume_mm3": 600.0, "score": 0.8, "tier": "high"}  # fmt: skip
    return image, labels, lesion


def _colour_columns(png: bytes, rgb: tuple[int, int, int]) -> np.ndarray:
    """Column indices (of the whole figure) of pixels close to ``rgb``."""
    with Image.open(io.BytesIO(png)) as im:
        a = np.asarray(im.convert("RGB")).astype(int)
    near = np.abs(a - np.array(rgb)).sum(-1) < 90
    return np.nonzero(near)[1], a.shape[1]


class TestSizeBand(unittest.TestCase):
    def test_thresholds(self):
        for d, band in [(0.0, "< 6 mm"), (5.99, "< 6 mm"), (6.0, "6 to < 8 mm"), (7.99, "6 to < 8 mm"),
                        (8.0, "8 to < 15 mm"), (14.9, "8 to < 15 mm"), (15.0, ">= 15 mm"), (80.0, ">= 15 mm")]:  # fmt: skip
            self.assertEqual(size_band(d), band, d)
        for bad in (-1.0, float("nan"), float("inf")):
            with self.assertRaisesRegex(ValueError, "finite non-negative"):
                size_band(bad)


class TestLesionViews(unittest.TestCase):
    def test_box_and_contour_on_the_lesion_side(self):
        # x index 50 of 64 lies towards the patient's right, which radiological display puts on the image's left
        for x, side in ((50, "left"), (12, "right")):
            image, labels, lesion = _volume((x, 24, 6))
            (png,) = render_lesion_views(image, labels, AFFINE, [lesion], window=(0.0, 1.0))
            cols, width = _colour_columns(png, (255, 255, 0))  # the yellow box (and the R/L letters)
            box = cols[(cols > width * 0.05) & (cols < width * 0.45)]  # the whole-slice panel, letters excluded
            self.assertGreater(box.size, 0)
            panel_mid = width * 0.25
            self.assertEqual("right" if np.median(box) > panel_mid else "left", side, x)
            red, _ = _colour_columns(png, (255, 0, 0))
            self.assertGreater(int((red > width / 2).sum()), 0)  # the contour in the zoom panel

    def test_count_and_bad_input(self):
        image, labels, lesion = _volume((30, 24, 6))
        self.assertEqual(len(render_lesion_views(image, labels, AFFINE, [lesion] * 3, max_lesions=2)), 2)
        self.assertEqual(render_lesion_views(image, labels, AFFINE, []), [])
        with self.assertRaisesRegex(ValueError, "3D arrays of the same shape"):
            render_lesion_views(image, labels[..., :3], AFFINE, [lesion])


class TestCaseReport(unittest.TestCase):
    def test_page(self):
        image, labels, lesion = _volume((30, 24, 6))
        views = render_lesion_views(image, labels, AFFINE, [lesion])
        lesions = [lesion, {**lesion, "diameter_mm": 16.0, "score": 0.4, "tier": "low"}]
        with tempfile.TemporaryDirectory() as tmp:
            path = write_case_report(Path(tmp) / "c" / "report.html", "case<1>", "/in/x.nii.gz", lesions, views, 12.34, "9.9")
            page = path.read_text()
            empty = write_case_report(Path(tmp) / "e" / "report.html", "e", "/in/e.nii.gz", [], [], None).read_text()
            with self.assertRaisesRegex(ValueError, "refusing to write over an input"):
                write_case_report(Path(tmp) / "c" / "report.html", "c", "/in/x", [], [], protected=[Path(tmp) / "c"])
        self.assertIn("<h1>case&lt;1&gt;: 2 lesions found</h1>", page)
        self.assertEqual(len(re.findall(r"<tr><td>", page)), 2)
        self.assertIn("<td>6 to &lt; 8 mm</td>", page)
        self.assertIn("<td>&gt;= 15 mm</td>", page)
        self.assertEqual(page.count('src="data:image/png;base64,'), 1)
        self.assertIn("Views of the first 1 of 2 lesions", page)
        self.assertIn("12.3 s from reading the input to the lesion list", page)
        self.assertIn("not a Lung-RADS category", page)
        self.assertIn("No lesion found", empty)
        self.assertNotIn("<table>", empty)
        self.assertIn("not recorded", empty)


if __name__ == "__main__":
    unittest.main()
