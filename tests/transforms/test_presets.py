from __future__ import annotations

import math
import tempfile
import unittest
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import Invertd
from parameterized import parameterized

from bundle.io.errors import describe_exception
from bundle.io.readers import LargestSeriesITKReader
from bundle.transforms import ct_preprocessing, mri_preprocessing, train_augmentation


def write_nifti(path: Path, array: np.ndarray, spacing: tuple[float, float, float]) -> str:
    nib.save(nib.Nifti1Image(array, np.diag([*spacing, 1.0])), str(path))
    return str(path)


def ct_phantom(shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Lung-like CT in HU (-850 with noise, air border at -1000, a 300 HU blob) and the blob's label."""
    rng = np.random.default_rng(0)
    hu = (-850.0 + 30.0 * rng.standard_normal(shape)).astype(np.float32)
    hu[0] = -1000.0
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"))
    centre = np.asarray(shape)[:, None, None, None] / 2.0
    label = (((grid - centre) / (np.asarray(shape)[:, None, None, None] / 5.0)) ** 2).sum(0) <= 1.0
    hu[label] = 300.0
    return hu, label.astype(np.float32)


# (input shape, input spacing, pixdim, expected output shape): thick 5 mm slices and sub-millimetre voxels
TEST_CASES_CT_GRID = [
    [(20, 18, 6), (1.6, 1.6, 5.0), (0.8, 0.8, 2.5), (39, 35, 11)],
    [(21, 21, 26), (0.4, 0.4, 0.5), (0.8, 0.8, 2.5), (11, 11, 6)],
]


class TestCTPreprocessing(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.root = Path(cls.tmp.name)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    @parameterized.expand(TEST_CASES_CT_GRID)
    def test_spacing_and_shape(self, shape, spacing, pixdim, expected_shape):
        hu, label = ct_phantom(shape)
        data = {
            "image": write_nifti(self.root / f"ct_{spacing[2]}.nii.gz", hu, spacing),
            "label": write_nifti(self.root / f"label_{spacing[2]}.nii.gz", label, spacing),
        }
        out = ct_preprocessing(label_keys="label", pixdim=pixdim)(data)
        image, seg = out["image"], out["label"]
        self.assertEqual(tuple(image.shape), (1, *expected_shape))
        self.assertEqual(tuple(seg.shape), (1, *expected_shape))
        np.testing.assert_allclose(image.pixdim.numpy(), pixdim, rtol=1e-5)
        self.assertEqual((image.dtype, seg.dtype), (torch.float32, torch.float32))
        self.assertAlmostEqual(float(image.min()), 0.0, places=6)
        self.assertAlmostEqual(float(image.max()), 1.0, places=6)
        self.assertEqual(set(torch.unique(seg).tolist()), {0.0, 1.0})  # nearest interpolation
        self.assertGreater(float(image[seg > 0].mean()), float(image[seg == 0].mean()) + 0.3)
        self.assertIn("image_meta_dict", out)  # image_only=False keeps the meta dicts

    def test_invertd_restores_grid(self):
        shape, spacing = (20, 18, 6), (1.6, 1.6, 5.0)
        hu, _ = ct_phantom(shape)
        preprocessing = ct_preprocessing()
        out = preprocessing({"image": write_nifti(self.root / "inv.nii.gz", hu, spacing)})
        out["pred"] = out["image"].clone()
        restored = Invertd("pred", transform=preprocessing, orig_keys="image", nearest_interp=False)(out)["pred"]
        self.assertEqual(tuple(restored.shape), (1, *shape))
        np.testing.assert_allclose(restored.affine.numpy(), np.diag([*spacing, 1.0]), atol=1e-5)

    def test_constant_and_non_finite_images(self):
        for fill in (-1000.0, 0.0, float("nan")):
            img = MetaTensor(torch.full((1, 5, 6, 7), fill), affine=torch.eye(4))
            out = ct_preprocessing(load=False, pixdim=None)({"image": img})["image"]
            self.assertTrue(bool(torch.isfinite(out).all()))
            self.assertEqual(float(out.abs().max()), 0.0)  # constant image -> zeros

    def test_nan_inf_voxels(self):
        hu, _ = ct_phantom((12, 12, 6))
        hu[3, 3, 3], hu[4, 4, 4], hu[5, 5, 5] = np.nan, np.inf, -np.inf
        out = ct_preprocessing(load=False, pixdim=(1.0, 1.0, 1.0))({"image": MetaTensor(torch.from_numpy(hu[None]))})
        self.assertTrue(bool(torch.isfinite(out["image"]).all()))
        self.assertGreaterEqual(float(out["image"].min()), 0.0)
        self.assertLessEqual(float(out["image"].max()), 1.0)

    @parameterized.expand(
        [
            [
                "window",
                [-2000.0, -1000.0, -500.0, 0.0, 100.0, 400.0, 1000.0],
                [0, 0, 500 / 1400, 1000 / 1400, 1100 / 1400, 1, 1],
            ],
            ["minmax", [-500.0, 0.0, 100.0], [0.0, 500 / 600, 1.0]],
            ["minmax", [-2000.0, 0.0, 2000.0], [0.0, 1000 / 1400, 1.0]],
        ]
    )
    def test_window_and_minmax(self, normalize, values, expected):
        img = MetaTensor(torch.tensor(values)[None, :, None, None], affine=torch.eye(4))
        pre = ct_preprocessing(load=False, pixdim=None, axcodes=None, smooth_sigma=0, normalize=normalize)
        np.testing.assert_allclose(pre({"image": img})["image"][0, :, 0, 0], expected, atol=1e-5)

    @parameterized.expand(
        [
            [{"keys": ()}, "keys"],
            [{"keys": "image", "label_keys": "image"}, "overlap"],
            [{"a_min": 400.0, "a_max": -1000.0}, "a_min"],
            [{"pixdim": (0.8, 0.0, 2.5)}, "pixdim"],
            [{"smooth_sigma": -1.0}, "smooth_sigma"],
            [{"normalize": "zscore"}, "zscore"],
        ]
    )
    def test_ill_arg(self, kwargs, message):
        with self.assertRaisesRegex(ValueError, message):
            ct_preprocessing(**kwargs)


class TestMRIPreprocessing(unittest.TestCase):
    def test_percentile_clip_per_channel(self):
        rng = np.random.default_rng(0)
        img = rng.random((2, 10, 10, 10)).astype(np.float32)
        img[1] *= 500.0
        img[0, 0, 0, 0] = 1e6  # a hot voxel would squash a plain min-max
        out = mri_preprocessing(load=False, pixdim=None, smooth_sigma=0)({"image": MetaTensor(torch.from_numpy(img))})
        image = out["image"]
        self.assertEqual((tuple(image.shape), image.dtype), ((2, 10, 10, 10), torch.float32))
        for c in range(2):
            self.assertAlmostEqual(float(image[c].min()), 0.0, places=6)
            self.assertAlmostEqual(float(image[c].max()), 1.0, places=6)
            self.assertAlmostEqual(float(image[c].median()), 0.5, delta=0.1)

    def test_headroom_keeps_a_bright_lesion_above_the_upper_percentile(self):
        rng = np.random.default_rng(0)
        img = rng.uniform(0.0, 100.0, (1, 20, 20, 20)).astype(np.float32)
        img[0, 5:8, 5:8, 5:8] = 130.0  # 27 voxels brighter than everything else, above the 99.5th percentile
        data = {"image": MetaTensor(torch.from_numpy(img))}
        lo, hi = np.percentile(img, [0.5, 99.5])
        clipped = mri_preprocessing(load=False, pixdim=None, smooth_sigma=0)(dict(data))["image"]
        roomy = mri_preprocessing(load=False, pixdim=None, smooth_sigma=0, headroom=0.5)(dict(data))["image"]
        # without headroom the lesion is flattened onto the brightest tissue; with it, it keeps its own level
        self.assertAlmostEqual(float(clipped[0, 6, 6, 6]), 1.0, places=6)
        self.assertAlmostEqual(float(roomy[0, 6, 6, 6]), (130.0 - lo) / (hi - lo) / 1.5, places=4)
        self.assertLess(float(roomy[0, 6, 6, 6]), 1.0)
        self.assertAlmostEqual(float(roomy.min()), 0.0, places=6)
        self.assertLessEqual(float(roomy.max()), 1.0)
        with self.assertRaisesRegex(ValueError, "headroom"):
            mri_preprocessing(headroom=-0.1)

    def test_file_with_label_and_nan(self):
        with tempfile.TemporaryDirectory() as tmp:
            img = np.random.default_rng(1).random((10, 12, 8)).astype(np.float32)
            img[2, 2, 2] = np.nan
            label = np.zeros_like(img)
            label[4:6, 4:6, 3:5] = 1
            data = {
                "image": write_nifti(Path(tmp) / "t1.nii.gz", img, (1.0, 1.0, 2.0)),
                "label": write_nifti(Path(tmp) / "seg.nii.gz", label, (1.0, 1.0, 2.0)),
            }
            # the default reader refuses NaN voxels with a clear error (ITK would read them as 0 without a word) ...
            with self.assertRaises(Exception) as raised:
                mri_preprocessing(label_keys=["label"])(data)
            self.assertRegex(describe_exception(raised.exception), "t1.nii.gz.*NaN/Inf")
            # ... and reads the file when asked to, with every voxel finite after preprocessing
            reader = LargestSeriesITKReader(allow_nonfinite=True)
            out = mri_preprocessing(label_keys=["label"], reader=reader)(data)
        self.assertEqual(tuple(out["image"].shape), (1, 10, 12, 15))
        self.assertEqual(tuple(out["label"].shape), (1, 10, 12, 15))
        self.assertTrue(bool(torch.isfinite(out["image"]).all()))
        self.assertEqual(set(torch.unique(out["label"]).tolist()), {0.0, 1.0})

    def test_constant_image(self):
        img = MetaTensor(torch.full((1, 4, 5, 6), 7.0))
        out = mri_preprocessing(load=False, pixdim=None)({"image": img})["image"]
        self.assertEqual(float(out.abs().max()), 0.0)

    @parameterized.expand([[{"lower": 50.0, "upper": 10.0}], [{"lower": -1.0}], [{"upper": 101.0}], [{"keys": []}]])
    def test_ill_arg(self, kwargs):
        with self.assertRaises(ValueError):
            mri_preprocessing(**kwargs)


def blob_pair(shape: tuple[int, ...], centre: tuple[int, ...], radius: float) -> dict:
    """A dark image with a bright ball and the ball's label, channel-first MetaTensors."""
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"))
    ball = ((grid - np.asarray(centre).reshape((-1,) + (1,) * len(shape))) ** 2).sum(0) <= radius**2
    image = np.where(ball, 1.0, 0.1).astype(np.float32)
    return {
        "image": MetaTensor(torch.from_numpy(image[None])),
        "label": MetaTensor(torch.from_numpy(ball[None].astype(np.float32))),
    }


class TestTrainAugmentation(unittest.TestCase):
    @parameterized.expand([[3, (32, 30, 16), (9, 20, 8)], [2, (33, 31), (10, 21)]])
    def test_label_stays_under_blob(self, spatial_dims, shape, centre):
        data = blob_pair(shape, centre, 4.0)
        moved = 0
        for seed in range(4):
            augment = train_augmentation(["image"], ["label"], prob=1.0, spatial_dims=spatial_dims, seed=seed)
            out = augment(data)
            image, label = out["image"], out["label"]
            self.assertEqual(tuple(image.shape), (1, *shape))
            self.assertEqual(tuple(label.shape), (1, *shape))
            self.assertTrue(set(torch.unique(label).tolist()) <= {0.0, 1.0})
            self.assertGreater(int(label.sum()), 0)
            self.assertGreater(float(image[label > 0].mean()), 0.75)  # label still under the bright blob
            self.assertLess(float(image[label == 0].mean()), 0.25)
            moved += int(not torch.equal(torch.as_tensor(label), torch.as_tensor(data["label"])))
        self.assertGreater(moved, 0)

    def test_seeded_and_image_only(self):
        data = {"image": blob_pair((16, 17, 9), (8, 8, 4), 3.0)["image"]}
        first = train_augmentation(prob=1.0, seed=3)(data)["image"]
        second = train_augmentation(prob=1.0, seed=3)(data)["image"]
        self.assertTrue(torch.equal(torch.as_tensor(first), torch.as_tensor(second)))
        self.assertFalse(torch.equal(torch.as_tensor(first), torch.as_tensor(data["image"])))

    def test_ranges(self):
        augment = train_augmentation(rotate_deg=15.0, rotate_axes=(2,), scale_range=(0.8, 1.2), flip_axes=(0, 1))
        grid = augment.transforms[0].rand_affine.rand_affine_grid
        radians = math.radians(15.0)
        np.testing.assert_allclose(grid.rotate_range, [(0.0, 0.0), (0.0, 0.0), (-radians, radians)])
        np.testing.assert_allclose(grid.scale_range, [(-0.2, 0.2)] * 3)
        self.assertEqual(len(augment.transforms), 4)  # affine, 2 flips, noise
        self.assertEqual(len(train_augmentation(noise_std=0.0).transforms), 4)  # affine, 3 flips

    @parameterized.expand(
        [
            [{"prob": 1.5}, "prob"],
            [{"rotate_deg": -1.0}, "rotate_deg"],
            [{"scale_range": (1.2, 0.8)}, "scale_range"],
            [{"scale_range": (0.0, 1.2)}, "scale_range"],
            [{"noise_std": -0.1}, "noise_std"],
            [{"spatial_dims": 4}, "spatial_dims"],
            [{"rotate_axes": (3,)}, "rotate_axes"],
            [{"spatial_dims": 2, "flip_axes": (2,)}, "flip_axes"],
            [{"keys": ("image",), "label_keys": ("image",)}, "overlap"],
        ]
    )
    def test_ill_arg(self, kwargs, message):
        with self.assertRaisesRegex(ValueError, message):
            train_augmentation(**kwargs)


if __name__ == "__main__":
    unittest.main()
