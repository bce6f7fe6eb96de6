from __future__ import annotations

import json
import tempfile
import unittest
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from parameterized import parameterized
from PIL import Image

from bundle.classification.ct_slices import (
    CLASS_NAMES,
    balanced_slice_indices,
    build_slice_dataset,
    ensure_slice_dataset,
    slice_datalist,
    window_to_uint8,
)
from bundle.classification.transforms import classification_transforms

WINDOW_CASES = [(-1000.0, 0), (-2000.0, 0), (400.0, 255), (3000.0, 255), (-300.0, 128)]  # -300 HU: 127.5 -> 128

AFFINE = np.diag([-0.8, -0.8, 5.0, 1.0])  # axial slices along the last axis


def write_case(root: Path, name: str, lesion_slices: dict[int, int], shape=(9, 11, 6), seed: int = 0) -> dict:
    """A tiny CT case (HU, slice k has mean value -900 + 100 k) with lesion voxels on the given slices."""
    rng = np.random.default_rng(seed)
    image = (np.arange(shape[2]) * 100.0 - 900.0)[None, None, :] + rng.normal(0, 5, shape)
    image[0, :, :] = -1000.0  # a column of air: rows of the PNG must keep the volume's second axis
    label = np.zeros(shape, np.uint8)
    for z, n in lesion_slices.items():
        label.reshape(-1, shape[2])[:n, z] = 1
    for kind, data in (("images", image.astype(np.int16)), ("labels", label)):
        (root / kind).mkdir(parents=True, exist_ok=True)
        nib.save(nib.Nifti1Image(data, AFFINE), str(root / kind / f"{name}.nii.gz"))
    return {"case": name, "image": f"images/{name}.nii.gz", "label": f"labels/{name}.nii.gz"}


class TestWindowAndBalance(unittest.TestCase):
    @parameterized.expand(WINDOW_CASES)
    def test_window(self, hu, expected):
        self.assertEqual(int(window_to_uint8(np.array([hu]))[0]), expected)

    def test_window_ill_arg(self):
        with self.assertRaisesRegex(ValueError, "window"):
            window_to_uint8(np.zeros(2), window=(400, -1000))

    def test_balanced(self):
        counts = [0, 3, 0, 5, 1, 0, 0, 2]
        pos, neg = balanced_slice_indices(counts, 10, np.random.default_rng(0))
        self.assertEqual(pos, [1, 3, 4, 7])  # every positive; 4 of the 4 negatives
        self.assertEqual(neg, [0, 2, 5, 6])
        pos, neg = balanced_slice_indices(counts, 2, np.random.default_rng(0))
        self.assertEqual((len(pos), len(neg)), (2, 2))
        self.assertTrue(set(pos) <= {1, 3, 4, 7} and set(neg) <= {0, 2, 5, 6})
        pos, neg = balanced_slice_indices(counts, 10, np.random.default_rng(0), min_lesion_voxels=2)
        self.assertEqual(pos, [1, 3, 7])  # slice 4 (1 voxel) is ambiguous: neither class
        self.assertNotIn(4, neg)
        self.assertEqual(balanced_slice_indices([0, 0], 3, np.random.default_rng(0)), ([], []))

    def test_balanced_ill_arg(self):
        with self.assertRaisesRegex(ValueError, "max_per_class"):
            balanced_slice_indices([0, 1], 0, np.random.default_rng(0))


class TestBuildSliceDataset(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        root = Path(cls.tmp.name) / "synth"
        train = [write_case(root, "tra_000", {1: 4, 2: 2}), write_case(root, "tra_001", {4: 3}, seed=1)]
        val = write_case(root, "val_000", {0: 1, 5: 6}, seed=2)
        val["lesions"] = [{"synthetic": False, "box_voxel": [[0, 0, 5], [3, 3, 5]]}]  # a real lesion on slice 5
        (root / "datalist.json").write_text(json.dumps({"training": train, "validation": [val]}))
        cls.datalist = root / "datalist.json"
        cls.out = Path(cls.tmp.name) / "slices"
        cls.manifest = build_slice_dataset(cls.datalist, cls.out, max_per_class=8, seed=0)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def test_counts_and_split(self):
        counts = self.manifest["counts"]
        self.assertEqual(counts["train"], {"no_lesion": 3, "with_lesion": 3})  # 2 + 1 positive slices
        self.assertEqual(counts["test"], {"no_lesion": 2, "with_lesion": 2})
        cases = {(r["split"], r["case"]) for r in self.manifest["slices"]}
        self.assertEqual(cases, {("train", "tra_000"), ("train", "tra_001"), ("test", "val_000")})
        for r in self.manifest["slices"]:
            self.assertEqual(r["label"] == 1, r["lesion_voxels"] > 0)
            self.assertTrue((self.out / r["path"]).is_file())
        real = {r["slice"]: r["real_lesion"] for r in self.manifest["slices"] if r["split"] == "test"}
        self.assertTrue(real[5])
        self.assertFalse(real[0])
        self.assertEqual(json.loads((self.out / "slices.json").read_text())["counts"], counts)

    def test_png_content(self):
        record = next(r for r in self.manifest["slices"] if r["case"] == "tra_000" and r["slice"] == 2)
        png = np.asarray(Image.open(self.out / record["path"]))
        self.assertEqual(png.shape, (11, 9))  # (rows, columns) = (volume axis 1, volume axis 0)
        np.testing.assert_array_equal(png[:, 0], 0)  # the air column (axis 0 index 0) -> first PNG column
        self.assertTrue(abs(float(np.median(png[:, 1:])) - (-700 + 1000) / 1400 * 255) < 3)

    def test_slice_datalist_and_transform(self):
        items = slice_datalist(self.out, "test")
        self.assertEqual(len(items), 4)
        self.assertEqual({d["class_name"] for d in items}, set(CLASS_NAMES))
        self.assertTrue(all(d["case"] == "val_000" and Path(d["image"]).is_file() for d in items))
        fixed = classification_transforms(False, spatial_size=(11, 9), in_channels=1, intensity_range=(0, 255))
        minmax = classification_transforms(False, spatial_size=(11, 9), in_channels=1)
        item = next(d for d in items if d["slice"] == 0)  # slice 0: -900 HU, far from both window ends
        x = fixed(dict(item))["image"]
        png = np.asarray(Image.open(item["image"]), dtype=np.float32)
        torch.testing.assert_close(x[0], torch.as_tensor(png / 255.0), atol=1e-5, rtol=0)  # the window is kept
        self.assertGreater(float(minmax(dict(item))["image"].max()), float(x.max()))  # min-max would rescale it
        with self.assertRaisesRegex(ValueError, "split"):
            slice_datalist(self.out, "validation")
        with self.assertRaisesRegex(ValueError, "slices.json"):
            slice_datalist(Path(self.tmp.name), "train")

    def test_ensure_builds_only_a_missing_set(self):
        out = Path(self.tmp.name) / "ensured"
        self.assertTrue(ensure_slice_dataset(self.datalist, out, max_per_class=8, seed=0))
        self.assertEqual(json.loads((out / "slices.json").read_text())["counts"], self.manifest["counts"])
        (out / "slices.json").write_text(json.dumps({"kept": True}))
        self.assertFalse(ensure_slice_dataset(self.datalist, out))
        self.assertEqual(json.loads((out / "slices.json").read_text()), {"kept": True})
        self.assertTrue(ensure_slice_dataset(self.datalist, out, rebuild=True))
        self.assertIn("counts", json.loads((out / "slices.json").read_text()))

    def test_bad_input(self):
        bad = Path(self.tmp.name) / "bad.json"
        bad.write_text("{not json")
        with self.assertRaisesRegex(ValueError, "bad.json"):
            build_slice_dataset(bad, Path(self.tmp.name) / "x")
        bad.write_text(json.dumps({"training": [{"image": "a", "label": "b"}]}))
        with self.assertRaisesRegex(ValueError, "validation"):
            build_slice_dataset(bad, Path(self.tmp.name) / "x")
        bad.write_text(json.dumps({"training": [{"image": "missing.nii.gz", "label": "b"}], "validation": [{}]}))
        with self.assertRaisesRegex(ValueError, "missing.nii.gz"):
            build_slice_dataset(bad, Path(self.tmp.name) / "x")


if __name__ == "__main__":
    unittest.main()
