from __future__ import annotations

import unittest

import numpy as np
import torch
from monai.data import MetaTensor
from parameterized import parameterized

from bundle.lesions.find import LESION_KEYS, FindLesionsd, find_lesions

SHAPE = (40, 40, 40)
# non-identity affines: anisotropic spacing, a flipped axis, an offset, and one with an oblique rotation
AFFINE_FLIP = np.array([[-0.8, 0, 0, 30.0], [0, 0.9, 0, -12.0], [0, 0, 1.25, 40.0], [0, 0, 0, 1]])
_C, _S = np.cos(0.3), np.sin(0.3)
AFFINE_OBLIQUE = np.array(
    [[0.9 * _C, -0.9 * _S, 0, 5.0], [0.9 * _S, 0.9 * _C, 0, 7.0], [0, 0, 1.1, -3.0], [0, 0, 0, 1]]
)
# (voxel center, radius mm, core probability)
BLOBS = [((12.0, 14.0, 12.0), 4.0, 0.9), ((27.0, 25.0, 26.0), 6.0, 0.7)]


def world_distance(affine: np.ndarray, center: tuple[float, ...]) -> np.ndarray:
    """Distance in mm of every voxel of SHAPE from a voxel center."""
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in SHAPE], indexing="ij"), -1).astype(np.float64)
    return np.linalg.norm((grid - np.asarray(center)) @ affine[:3, :3].T, axis=-1)


def make_prob(affine: np.ndarray, halo_mm: float = 1.5) -> np.ndarray:
    """Spheres of BLOBS (radius in mm) at their probability, each with a 0.3 halo of ``halo_mm`` around it."""
    prob = np.zeros(SHAPE, np.float32)
    for center, radius, p in BLOBS:
        d = world_distance(affine, center)
        prob[(d <= radius + halo_mm) & (prob < 0.3)] = 0.3
        prob[d <= radius] = p
    return prob


TEST_CASES = [
    [{"score": "max"}, AFFINE_FLIP],
    [{"score": "mean"}, AFFINE_FLIP],
    [{"score": "max", "refine": False}, AFFINE_OBLIQUE],
]


class TestFindLesions(unittest.TestCase):
    @parameterized.expand(TEST_CASES)
    def test_two_spheres(self, kwargs, affine):
        prob = make_prob(affine)
        lesions = find_lesions(prob, affine, **kwargs)
        self.assertEqual(len(lesions), 2)
        for lesion, (center, radius, p) in zip(lesions, BLOBS, strict=True):  # sorted by score: 0.9 first
            self.assertEqual(tuple(lesion), LESION_KEYS)
            np.testing.assert_allclose(lesion["center_voxel"], center, atol=0.2)
            expected_mm = (affine @ np.array([*center, 1.0]))[:3]
            np.testing.assert_allclose(lesion["center_mm"], expected_mm, atol=0.2)
            self.assertAlmostEqual(lesion["diameter_mm"], 2 * radius, delta=0.12 * 2 * radius)
            self.assertAlmostEqual(lesion["score"], p, places=5)
            self.assertEqual(lesion["tier"], "high")
            self.assertAlmostEqual(lesion["volume_mm3"], np.pi / 6 * lesion["diameter_mm"] ** 3, places=3)
            # the box contains the whole core; refined boxes also the halo (>= refine_threshold 0.25)
            region = world_distance(affine, center) <= radius + (1.5 if kwargs.get("refine", True) else 0.0)
            idx = np.argwhere(region)
            start, stop = np.asarray(lesion["box_voxel"])
            self.assertTrue(np.all(start <= idx.min(0)) and np.all(stop >= idx.max(0) + 1), (start, stop))
            self.assertTrue(np.all(stop - start <= idx.max(0) - idx.min(0) + 1))  # and fits tightly

    def test_refinement_grows_box(self):
        prob = make_prob(AFFINE_FLIP)
        core = np.asarray(find_lesions(prob, AFFINE_FLIP, refine=False)[0]["box_voxel"])
        grown = np.asarray(find_lesions(prob, AFFINE_FLIP, refine=True)[0]["box_voxel"])
        self.assertTrue(np.all(grown[0] < core[0]) and np.all(grown[1] > core[1]))
        no_grow = np.asarray(find_lesions(prob, AFFINE_FLIP, refine=True, refine_threshold=0.5)[0]["box_voxel"])
        np.testing.assert_array_equal(no_grow, core)

    def split_sphere(self) -> np.ndarray:
        """One sphere (radius 6 mm) cut into two cores by a 0.4 plane: the duplicate-candidate case."""
        prob = np.zeros(SHAPE, np.float32)
        prob[world_distance(AFFINE_FLIP, (20.0, 20.0, 20.0)) <= 6.0] = 0.8
        prob[19:21][prob[19:21] > 0] = 0.4
        prob[:19][prob[:19] > 0] = 0.9  # the two halves score differently
        return prob

    def test_nms_merges_duplicate(self):
        prob = self.split_sphere()
        self.assertEqual(len(find_lesions(prob, AFFINE_FLIP, refine=False)), 2)  # disjoint core boxes: no merge
        merged = find_lesions(prob, AFFINE_FLIP)
        self.assertEqual(len(merged), 1)
        lesion = merged[0]
        self.assertAlmostEqual(lesion["score"], 0.9, places=5)
        cores = prob >= 0.5
        self.assertAlmostEqual(lesion["volume_mm3"], cores.sum() * abs(np.linalg.det(AFFINE_FLIP[:3, :3])), places=3)
        np.testing.assert_array_equal(
            lesion["box_voxel"], [np.argwhere(prob > 0).min(0), np.argwhere(prob > 0).max(0) + 1]
        )

    @parameterized.expand([[1, "medium", 2], [0, "low", 2], [2, "high", 1]])
    def test_tiers(self, code, name, expected):
        prob = self.split_sphere()
        lesions = find_lesions(prob, AFFINE_FLIP, tier_map=np.full(SHAPE, code, np.uint8))
        self.assertEqual(len(lesions), expected)  # NMS only for high-tier candidates
        self.assertEqual({les["tier"] for les in lesions}, {name})
        if name == "low":  # no refinement: the box is the core's
            core = np.argwhere(prob >= 0.5)
            self.assertTrue(all(np.asarray(les["box_voxel"])[0][0] >= core.min(0)[0] for les in lesions))
            self.assertTrue(
                all(np.asarray(les["box_voxel"])[0][0] > 19 or les["box_voxel"][1][0] <= 19 for les in lesions)
            )

    def test_mask_drops_outside(self):
        prob = make_prob(AFFINE_FLIP)
        mask = np.zeros(SHAPE, bool)
        mask[20:, 20:, 20:] = True  # holds the second blob's center only
        lesions = find_lesions(prob, AFFINE_FLIP, mask=mask)
        self.assertEqual(len(lesions), 1)
        np.testing.assert_allclose(lesions[0]["center_voxel"], BLOBS[1][0], atol=0.2)

    def test_size_filters(self):
        prob = make_prob(AFFINE_FLIP)
        self.assertEqual(len(find_lesions(prob, AFFINE_FLIP, min_diameter_mm=10.0)), 1)
        self.assertEqual(len(find_lesions(prob, AFFINE_FLIP, min_volume_mm3=2000.0)), 0)

    def test_max_candidates_keeps_the_highest_scores(self):
        # a noise map of isolated single-voxel cores (an untrained network): only the best `max_candidates` survive
        prob = np.zeros((20, 20, 20), np.float32)
        prob[::2, ::2, ::2] = np.linspace(0.55, 0.99, 1000).reshape(10, 10, 10)
        with self.assertLogs("bundle.lesions.find", level="WARNING"):
            lesions = find_lesions(prob, np.eye(4), max_candidates=7)
        self.assertEqual(len(lesions), 7)
        self.assertAlmostEqual(min(lesion["score"] for lesion in lesions), float(np.sort(prob.ravel())[-7]), places=6)
        self.assertEqual(len(find_lesions(prob, np.eye(4), max_candidates=None)), 1000)

    def test_empty(self):
        self.assertEqual(find_lesions(np.zeros(SHAPE, np.float32), AFFINE_FLIP), [])
        lesions, labels = find_lesions(torch.zeros(SHAPE), AFFINE_FLIP, return_label_map=True)
        self.assertEqual(lesions, [])
        self.assertEqual(int(labels.max()), 0)

    def test_position_invariant(self):
        # the same map padded by (5, 0, 9) voxels: every position shifts by the padding, nothing else changes
        prob = make_prob(AFFINE_FLIP)
        tiers = np.full(SHAPE, 2, np.int64)
        tiers[:, :, 20:] = 1
        pad = ((5, 2), (0, 3), (9, 0))
        lesions, labels = find_lesions(prob, np.eye(4), tier_map=tiers, return_label_map=True)
        padded, padded_labels = find_lesions(np.pad(prob, pad), np.eye(4), tier_map=np.pad(tiers, pad, mode="edge"),
                                             return_label_map=True)  # fmt: skip
        self.assertEqual(len(padded), len(lesions))
        shift = np.asarray([p[0] for p in pad])
        for a, b in zip(lesions, padded):
            np.testing.assert_allclose(np.asarray(b["center_voxel"]) - shift, a["center_voxel"], atol=1e-9)
            np.testing.assert_array_equal(np.asarray(b["box_voxel"]) - shift, a["box_voxel"])
            self.assertEqual((a["score"], a["tier"], a["volume_mm3"]), (b["score"], b["tier"], b["volume_mm3"]))
        np.testing.assert_array_equal(padded_labels[5:-2, 0:-3, 9:], labels)
        self.assertEqual(int(padded_labels.sum()), int(labels.sum()))

    def test_binary_ground_truth_and_label_map(self):
        label = (make_prob(AFFINE_FLIP) >= 0.5).astype(np.uint8)
        lesions, label_map = find_lesions(label, AFFINE_FLIP, return_label_map=True)
        self.assertEqual([les["score"] for les in lesions], [1.0, 1.0])
        self.assertEqual(label_map.shape, SHAPE)
        for n, lesion in enumerate(lesions, start=1):
            center = np.round(lesion["center_voxel"]).astype(int)
            self.assertEqual(label_map[tuple(center)], n)
        np.testing.assert_array_equal(label_map > 0, label > 0)

    def test_2d(self):
        prob = np.zeros((30, 31), np.float32)
        prob[10:15, 20:25] = 0.9
        lesions = find_lesions(prob, np.diag([0.5, 0.5, 1.0]))
        self.assertEqual(len(lesions), 1)
        self.assertAlmostEqual(lesions[0]["diameter_mm"], 2 * np.sqrt(25 * 0.25 / np.pi), places=6)
        np.testing.assert_allclose(lesions[0]["center_voxel"], [12, 22])

    def test_metatensor_affine(self):
        prob = MetaTensor(torch.as_tensor(make_prob(AFFINE_FLIP)), affine=torch.as_tensor(AFFINE_FLIP))
        lesions = find_lesions(prob)
        np.testing.assert_allclose(lesions[0]["center_mm"], (AFFINE_FLIP @ [12.0, 14.0, 12.0, 1.0])[:3], atol=0.2)

    @parameterized.expand(
        [
            [{"threshold": 0.0}],
            [{"threshold": float("nan")}],
            [{"refine_threshold": 0.7}],
            [{"min_volume_mm3": -1.0}],
            [{"min_diameter_mm": -1.0}],
            [{"nms_iou": 0.0}],
            [{"score": "median"}],
            [{"tier_map": np.zeros((4, 4, 4), np.uint8)}],
            [{"tier_map": np.full(SHAPE, 3, np.uint8)}],
            [{"mask": np.ones((4, 4, 4), bool)}],
            [{"affine": np.eye(3)}],
            [{"affine": None}],
            [{"max_candidates": 0}],
        ]
    )
    def test_ill_arg(self, kwargs):
        args = {"prob": make_prob(AFFINE_FLIP), "affine": AFFINE_FLIP, **kwargs}
        with self.assertRaises(ValueError):
            find_lesions(**args)

    def test_ill_shape(self):
        with self.assertRaises(ValueError):
            find_lesions(np.zeros((1, 1, 4, 4, 4)), np.eye(6))


class TestFindLesionsd(unittest.TestCase):
    def test_channel_first_metatensor(self):
        fg = torch.as_tensor(make_prob(AFFINE_FLIP))
        pred = MetaTensor(torch.stack([1 - fg, fg]), affine=torch.as_tensor(AFFINE_FLIP))
        tier = torch.full((1, *SHAPE), 1, dtype=torch.uint8)
        out = FindLesionsd(keys="pred", min_diameter_mm=10.0, tier_map_key="tier")({"pred": pred, "tier": tier})
        self.assertIs(out["pred"], pred)
        self.assertEqual(len(out["pred_lesions"]), 1)
        self.assertEqual(out["pred_lesions"][0]["tier"], "medium")

    def test_affine_key(self):
        image = MetaTensor(torch.zeros(1, *SHAPE), affine=torch.as_tensor(AFFINE_FLIP))
        out = FindLesionsd(keys="label", affine_key="image", lesions_postfix="gt")(
            {"label": make_prob(AFFINE_FLIP)[None] >= 0.5, "image": image}
        )
        self.assertEqual(len(out["label_gt"]), 2)

    @parameterized.expand([[{"channel": -1}], [{"threshold": -0.5}], [{"score": "min"}]])
    def test_ill_arg(self, kwargs):
        with self.assertRaises(ValueError):
            FindLesionsd(keys="pred", **kwargs)

    def test_missing_affine(self):
        with self.assertRaises(ValueError):
            FindLesionsd(keys="pred")({"pred": np.zeros(SHAPE, np.float32)})


if __name__ == "__main__":
    unittest.main()
