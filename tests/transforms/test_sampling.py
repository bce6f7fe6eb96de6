from __future__ import annotations

import unittest

import numpy as np
import torch
from monai.transforms import RandWeightedCropd
from monai.transforms.utils import weighted_patch_samples
from parameterized import parameterized

from bundle.transforms.sampling import LesionBalancedWeight, LesionBalancedWeightd, fold_to_valid_centres


def two_lesions(shape=(20, 20, 10)) -> np.ndarray:
    """A 1-voxel lesion and a 4x4x4 (64-voxel) lesion far apart, shape (1, *shape)."""
    lab = np.zeros((1, *shape), dtype=np.float32)
    lab[0, 2, 2, 2] = 1
    lab[0, 10:14, 10:14, 4:8] = 1
    return lab


class TestLesionBalancedWeight(unittest.TestCase):
    def test_equal_mass_per_lesion_whatever_its_size(self):
        lab = two_lesions()
        w = LesionBalancedWeight(pos_mass=0.5, neg_mask_mass=0.0, neg_any_mass=0.5)(lab)[0].numpy()
        self.assertAlmostEqual(float(w[2, 2, 2]), 0.25, places=6)
        self.assertAlmostEqual(float(w[10:14, 10:14, 4:8].sum()), 0.25, places=5)
        self.assertAlmostEqual(float(w[lab[0] == 0].sum()), 0.5, places=5)
        self.assertAlmostEqual(float(w.sum()), 1.0, places=5)

    def test_mask_mass_goes_to_background_inside_the_mask(self):
        lab = two_lesions()
        mask = np.zeros_like(lab)
        mask[0, :10] = 1  # includes the small lesion, which is not background
        w = LesionBalancedWeight(pos_mass=0.5, neg_mask_mass=0.3, neg_any_mass=0.2)(lab, mask)[0].numpy()
        inside_bg = (mask[0] > 0) & (lab[0] == 0)
        outside_bg = (mask[0] == 0) & (lab[0] == 0)
        n_bg = float((lab[0] == 0).sum())
        self.assertAlmostEqual(float(w[inside_bg].sum()), 0.3 + 0.2 * inside_bg.sum() / n_bg, places=5)
        self.assertAlmostEqual(float(w[outside_bg].sum()), 0.2 * outside_bg.sum() / n_bg, places=5)
        self.assertAlmostEqual(float(w[2, 2, 2]), 0.25, places=6)

    def test_mask_threshold_keeps_negatives_off_the_air(self):
        # a [0, 1]-scaled image as the mask: voxels at or below 0.05 (air) get no weight, as with
        # FgBgToIndicesd(image_threshold=0.05)
        lab = np.zeros((1, 6, 6, 6), dtype=np.float32)
        lab[0, 1, 1, 1] = 1
        image = np.full_like(lab, 0.02)
        image[0, 3:] = 0.5
        w = LesionBalancedWeight(0.5, 0.5, 0.0, mask_threshold=0.05)(lab, image)[0].numpy()
        self.assertEqual(float(w[:3][lab[0, :3] == 0].sum()), 0.0)
        self.assertAlmostEqual(float(w[3:].sum()), 0.5, places=5)
        self.assertAlmostEqual(float(w[1, 1, 1]), 0.5, places=6)

    def test_no_lesion_only_background(self):
        w = LesionBalancedWeight()(np.zeros((1, 4, 4, 4)))
        self.assertEqual(tuple(w.shape), (1, 4, 4, 4))
        self.assertTrue(torch.allclose(w, torch.full_like(w, 0.15 / 64)))

    def test_all_lesion(self):
        w = LesionBalancedWeight()(np.ones((1, 3, 3)))
        self.assertAlmostEqual(float(w.sum()), 0.5, places=6)

    @parameterized.expand([[{"pos_mass": -1.0}], [{"pos_mass": 0.0, "neg_mask_mass": 0.0, "neg_any_mass": 0.0}]])
    def test_ill_arg(self, kwargs):
        with self.assertRaises(ValueError):
            LesionBalancedWeight(**kwargs)

    def test_bad_shapes(self):
        with self.assertRaises(ValueError):
            LesionBalancedWeight()(np.zeros((2, 4, 4, 4)))
        with self.assertRaises(ValueError):
            LesionBalancedWeight()(np.zeros((1, 4, 4, 4)), np.zeros((1, 4, 4, 3)))


class TestLesionBalancedWeightd(unittest.TestCase):
    def test_small_lesion_sampled_as_often_as_large(self):
        # with uniform foreground sampling the 1-voxel lesion would be hit in 1 of 65 positive draws
        lab = two_lesions((40, 40, 12))
        data = {"image": torch.zeros(1, 40, 40, 12), "label": torch.as_tensor(lab)}
        data = LesionBalancedWeightd("label", pos_mass=1.0, neg_mask_mass=0.0, neg_any_mass=0.0)(data)
        cropper = RandWeightedCropd(["image", "label"], w_key="sample_weight", spatial_size=(5, 5, 5), num_samples=400)
        cropper.set_random_state(0)
        small = sum(float(s["label"][0, 2, 2, 2]) > 0 and float(s["label"].sum()) == 1 for s in cropper(data))
        self.assertGreater(small, 140)
        self.assertLess(small, 260)

    def test_lesion_at_the_border_is_sampled_with_spatial_size(self):
        """MONAI's RandWeightedCropd draws centres only where the whole patch fits: a lesion within half a patch of
        the border is never in a patch's centre. Folded onto the usable centres, it gets its half of the patches."""
        lab = np.zeros((1, 30, 30, 12), dtype=np.float32)
        lab[0, 1, 1, 1] = 1  # 1 voxel from the corner: outside the usable centres (8..21, 8..21, 4..7)
        lab[0, 14:16, 14:16, 5:7] = 1
        data = {"image": torch.zeros(1, 30, 30, 12), "label": torch.as_tensor(lab)}
        cropper = RandWeightedCropd(
            ["image", "label"], w_key="sample_weight", spatial_size=(16, 16, 8), num_samples=300
        )
        counts = []
        for size in (None, (16, 16, 8)):
            weighted = LesionBalancedWeightd("label", pos_mass=1.0, neg_mask_mass=0.0, neg_any_mass=0.0,
                                             spatial_size=size)(data)  # fmt: skip
            cropper.set_random_state(0)
            # the corner voxel lies in a patch only when the patch starts at (0, 0, 0)
            counts.append(sum(float(s["label"][0, 1, 1, 1]) > 0 for s in cropper(weighted)))
        self.assertEqual(counts[0], 0)  # without folding the corner lesion is never seen
        self.assertGreater(counts[1], 110)
        self.assertLess(counts[1], 190)


class TestFoldToValidCentres(unittest.TestCase):
    @parameterized.expand([[(10, 7, 5), (6, 8, 5)], [(30, 30, 12), (16, 16, 8)], [(9, 9, 9), (4, -1, 3)]])
    def test_support_is_what_monai_draws(self, shape, size):
        """MONAI's own draws from an all-ones map: every centre it can return holds weight after folding, and no
        folded weight lies where it can not draw (so a MONAI that changes its range breaks this test)."""
        folded = fold_to_valid_centres(np.ones(shape), size)
        centres = weighted_patch_samples(size, np.ones(shape), 20000, np.random.RandomState(0))
        drawn = np.zeros(shape, dtype=bool)
        drawn[tuple(np.asarray([[int(v) for v in c] for c in centres]).T)] = True
        np.testing.assert_array_equal(folded > 0, drawn)

    def test_weight_moves_onto_the_nearest_usable_centre(self):
        w = np.zeros((10, 4), dtype=np.float32)
        w[0, 1], w[9, 2], w[5, 0], w[1, 3] = 1.0, 2.0, 3.0, 4.0
        out = fold_to_valid_centres(w.copy(), (6, 8))  # axis 0: centres 3..6; axis 1 (4 <= 8): the one centre 2
        expected = np.zeros_like(w)
        expected[3, 2], expected[6, 2], expected[5, 2] = 1.0 + 4.0, 2.0, 3.0
        np.testing.assert_array_equal(out, expected)

    def test_mass_is_kept_and_usable_centres_hold_it(self):
        w = np.random.default_rng(0).random((13, 9, 5)).astype(np.float64)
        out = fold_to_valid_centres(w.copy(), (4, 9, -1))  # -1: the image's size along that axis
        self.assertAlmostEqual(out.sum(), w.sum(), places=9)
        self.assertEqual(out[:2].sum() + out[11:].sum(), 0.0)  # axis 0: centres 2..10
        self.assertEqual(out[:, :4].sum() + out[:, 5:].sum(), 0.0)  # 9 of 9: the one centre 4
        self.assertEqual(out[:, :, :2].sum() + out[:, :, 3:].sum(), 0.0)  # 5 of 5: the one centre 2
        np.testing.assert_allclose(out[2:11, 4, 2].sum(), w.sum())


if __name__ == "__main__":
    unittest.main()
