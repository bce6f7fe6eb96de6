from __future__ import annotations

import unittest

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import ClipIntensityPercentilesd

from bundle.transforms import mri_preprocessing
from bundle.transforms.brain import BrainMaskd, MaskedScaleIntensityd, brain_mask


def phantom_head(size: int = 56) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A head on a 1 mm grid: brain sphere (r < 16 mm, 0.6) with a bright lesion, dark CSF rim, bright scalp shell."""
    g = np.indices((size,) * 3).astype(float) - (size - 1) / 2
    r = np.sqrt((g**2).sum(0))
    volume = np.where(r < 16, 0.6, np.where(r < 19, 0.1, np.where(r < 23, 1.0, 0.0)))
    lesion = np.sqrt(((g - np.array([6.0, 0.0, 0.0])[:, None, None, None]) ** 2).sum(0)) < 3
    volume = volume + 0.4 * lesion + np.random.default_rng(0).normal(0, 0.02, r.shape)
    return volume.astype(np.float32), r < 16, r >= 19


class TestBrainMask(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.volume, cls.brain, cls.scalp = phantom_head()
        cls.mask = brain_mask(cls.volume)

    def test_finds_the_brain_not_the_scalp(self):
        m = self.mask
        dice = 2 * (m & self.brain).sum() / (m.sum() + self.brain.sum())
        self.assertGreater(dice, 0.85)
        self.assertEqual(int((m & self.scalp).sum()), 0)

    def test_bad_volumes(self):
        with self.assertRaisesRegex(ValueError, "3-D"):
            brain_mask(np.zeros((8, 8)))
        with self.assertRaisesRegex(ValueError, "distinct"):
            brain_mask(np.ones((8, 8, 8)))

    def test_dict_transform(self):
        image = MetaTensor(torch.as_tensor(self.volume)[None], affine=torch.eye(4))
        out = BrainMaskd("image")({"image": image})
        self.assertEqual(tuple(out["brain_mask"].shape), (1,) + self.volume.shape)
        self.assertEqual(out["brain_mask"].dtype, torch.uint8)
        np.testing.assert_array_equal(out["brain_mask"][0].numpy() > 0, self.mask)
        thick = MetaTensor(torch.as_tensor(self.volume)[None], affine=torch.diag(torch.tensor([1.0, 1.0, 5.0, 1.0])))
        with self.assertRaisesRegex(ValueError, "isotropic"):
            BrainMaskd("image")({"image": thick})
        with self.assertRaises(ValueError):
            BrainMaskd(["image", "other"])


class TestMaskedScaleIntensity(unittest.TestCase):
    def test_percentiles_inside_zero_outside_no_clip(self):
        image = torch.zeros(1, 10, 10, 10)
        mask = torch.zeros(1, 10, 10, 10, dtype=torch.uint8)
        mask[0, 2:8, 2:8, 2:8] = 1
        image[0, 2:8, 2:8, 2:8] = torch.linspace(100.0, 200.0, 216).reshape(6, 6, 6)
        image[0, 0, 0, 0] = 5000.0  # outside the brain: must not set the scale
        image[0, 5, 5, 5] = 400.0  # a lesion brighter than any normal tissue keeps its contrast
        out = MaskedScaleIntensityd("image", lower=0.0, upper=100.0)({"image": image, "brain_mask": mask})["image"]
        inside = mask[0] > 0
        self.assertAlmostEqual(float(out[0][inside].min()), 0.0, places=5)
        self.assertAlmostEqual(float(out[0][inside].max()), 1.0, places=5)
        self.assertEqual(float(out[0][~inside].abs().max()), 0.0)
        out = MaskedScaleIntensityd("image", lower=0.0, upper=99.0)({"image": image, "brain_mask": mask})["image"]
        self.assertGreater(float(out[0, 5, 5, 5]), 1.5)

    def test_errors(self):
        with self.assertRaises(ValueError):
            MaskedScaleIntensityd("image", lower=50.0, upper=50.0)
        with self.assertRaisesRegex(ValueError, "shape"):
            MaskedScaleIntensityd("image")({"image": torch.ones(1, 4, 4, 4), "brain_mask": torch.ones(1, 5, 5, 5)})


class TestMriPreprocessingWithBrainMask(unittest.TestCase):
    def test_steps(self):
        steps = mri_preprocessing(brain_mask_key="brain_mask", load=False).transforms
        kinds = [type(t) for t in steps]
        self.assertIn(BrainMaskd, kinds)
        self.assertIn(MaskedScaleIntensityd, kinds)
        self.assertNotIn(ClipIntensityPercentilesd, kinds)
        self.assertLess(kinds.index(BrainMaskd), kinds.index(MaskedScaleIntensityd))
        plain = [type(t) for t in mri_preprocessing(load=False).transforms]
        self.assertNotIn(BrainMaskd, plain)


if __name__ == "__main__":
    unittest.main()
