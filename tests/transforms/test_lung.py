from __future__ import annotations

import unittest

import numpy as np
import torch
from monai.data import MetaTensor

from bundle.transforms.lung import LungCandidateMask, LungCandidateMaskd


def chest_phantom(shape=(96, 80, 12), spacing=(3.0, 3.0, 5.0)) -> MetaTensor:
    """An elliptic body of soft tissue with two large air-filled lungs, windowed to [0, 1] as the preprocessing does;
    the geometry scales with the in-plane shape (the default: a 288 x 240 mm chest)."""
    hu = np.full(shape, -1000.0, np.float32)
    xx, yy = np.meshgrid(np.arange(shape[0]) / shape[0] * 96, np.arange(shape[1]) / shape[1] * 80, indexing="ij")
    body = ((xx - 48) / 44.0) ** 2 + ((yy - 40) / 36.0) ** 2 <= 1.0
    hu[body] = 40.0
    for cx in (28, 68):
        lung = ((xx - cx) / 14.0) ** 2 + ((yy - 40) / 22.0) ** 2 <= 1.0
        hu[lung] = -850.0
    img = (np.clip(hu, -1000, 400) + 1000) / 1400
    return MetaTensor(torch.as_tensor(img[None]), affine=torch.diag(torch.tensor([*spacing, 1.0])))


class TestLungCandidateMask(unittest.TestCase):
    def test_chest_keeps_lungs_drops_body_wall(self):
        mask = LungCandidateMask(margin_mm=0.0)(chest_phantom())
        self.assertEqual(tuple(mask.shape), (1, 96, 80, 12))
        self.assertTrue(bool(mask[0, 28, 40, 6]))  # inside the right lung
        self.assertFalse(bool(mask[0, 48, 6, 6]))  # chest wall
        self.assertFalse(bool(mask[0, 0, 0, 6]))  # air outside the body

    def test_coarse_grids_only_grow_the_full_resolution_mask(self):
        img = chest_phantom(shape=(192, 160, 24), spacing=(1.5, 1.5, 2.5))  # 288 x 240 mm, lungs of 2 x 280 ml
        exact = LungCandidateMask(segmentation_mm=0.0, envelope_mm=0.0)(img)[0].bool()
        coarse = LungCandidateMask()(img)[0].bool()  # 2 mm segmentation, 4 mm envelope
        self.assertEqual(tuple(coarse.shape), tuple(exact.shape))
        missed = exact & ~coarse
        self.assertLessEqual(int(missed.sum()), int(0.002 * exact.sum()))  # a few voxels at most, on the rim
        grown = coarse & ~exact
        self.assertGreater(int(grown.sum()), 0)  # the margin is rounded up to whole 4 mm blocks
        self.assertLess(int(grown.sum()), int(0.25 * exact.sum()))
        self.assertFalse(bool(coarse[0, 0, 0]))  # outside air stays out
        self.assertFalse(bool(coarse[96, 14, 3]))  # and so does the chest wall, 12 mm inside the body's edge

    def test_grids_follow_the_spacing(self):
        self.assertEqual(LungCandidateMask._stride(4.0, [1.0, 1.0, 2.5]), 4)
        self.assertEqual(LungCandidateMask._stride(4.0, [0.7, 0.8, 2.5]), 6)
        self.assertEqual(LungCandidateMask._stride(2.0, [3.0, 3.0, 5.0]), 1)  # never finer than the voxels
        self.assertEqual(LungCandidateMask._stride(0.0, [1.0, 1.0, 2.5]), 1)

    def test_no_lung_keeps_everything(self):
        img = MetaTensor(torch.full((1, 20, 20, 6), 0.7), affine=torch.eye(4))
        self.assertTrue(bool(LungCandidateMask()(img).all()))
        self.assertFalse(bool(LungCandidateMask(empty_means_all=False)(img).any()))

    def test_dictionary_wrapper(self):
        out = LungCandidateMaskd(keys="image", mask_key="m")({"image": chest_phantom()})
        self.assertIn("m", out)
        self.assertEqual(tuple(out["m"].shape), (1, 96, 80, 12))

    def test_ill_arg(self):
        with self.assertRaises(ValueError):
            LungCandidateMask(a_min=400, a_max=-1000)
        with self.assertRaises(ValueError):
            LungCandidateMask(margin_mm=-1)
        with self.assertRaisesRegex(ValueError, "envelope_mm"):
            LungCandidateMask(envelope_mm=-1)
        with self.assertRaisesRegex(ValueError, "segmentation_mm"):
            LungCandidateMask(segmentation_mm=float("nan"))
        with self.assertRaises(ValueError):
            LungCandidateMask()(torch.zeros(2, 8, 8, 4))


if __name__ == "__main__":
    unittest.main()
