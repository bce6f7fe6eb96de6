from __future__ import annotations

import tempfile
import unittest
from pathlib import Path

from bundle.data.datalist import write_datalist
from bundle.data.synthetic.gallery import plot_lesion_gallery
from tests.data.synthetic.phantom_fixtures import build_phantom_dataset


class TestLesionGallery(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()

    def tearDown(self):
        self.tmp.cleanup()

    def test_gallery_png(self):
        path = build_phantom_dataset(Path(self.tmp.name) / "synth")
        png = plot_lesion_gallery(path, Path(self.tmp.name) / "g.png", n_columns=3)
        self.assertEqual(png.read_bytes()[:4], b"\x89PNG")

    def test_gallery_without_lesions(self):
        path = write_datalist(Path(self.tmp.name) / "d.json", {"training": []})
        with self.assertRaises(ValueError):
            plot_lesion_gallery(path, Path(self.tmp.name) / "g.png")


if __name__ == "__main__":
    unittest.main()
