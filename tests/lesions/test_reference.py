"""Reference lesions of a label mask (bundle.lesions.reference): pieces within the merge gap are one lesion."""

from __future__ import annotations

import unittest

import numpy as np
from parameterized import parameterized
from scipy import ndimage

from bundle.lesions.find import find_lesions
from bundle.lesions.reference import label_lesions, merge_fragments

# 1 x 1 x 2.5 mm voxels, as the CT preprocessing resamples to
AFFINE = np.diag([1.0, 1.0, 2.5, 1.0])


def spiculated_with_pieces() -> np.ndarray:
    """A 9 x 9 x 4-voxel body, a 2 x 2 x 1 piece 3 mm beside it in-plane and a 2 x 2 x 1 piece one empty slice
    (5 mm centre to centre) above it; a separate 3 x 3 x 2 nodule 12 mm away."""
    label = np.zeros((48, 32, 16), dtype=np.uint8)
    label[10:19, 10:19, 4:8] = 1  # body
    label[21:23, 12:14, 5] = 1  # piece: nearest voxels 21 - 18 = 3 voxels = 3 mm apart
    label[12:14, 12:14, 9] = 1  # piece: slices 7 and 9, 2 x 2.5 = 5 mm apart
    label[31:34, 10:13, 5:7] = 1  # nodule: 31 - 22 = 9 mm from the nearest piece, 13 mm from the body
    return label


class TestMergeFragments(unittest.TestCase):
    def test_pieces_join_their_lesion_and_a_separate_nodule_stays_apart(self):
        lesions = label_lesions(spiculated_with_pieces(), AFFINE, merge_gap_mm=6.0)
        self.assertEqual(len(lesions), 2)
        body, nodule = lesions  # largest first
        self.assertAlmostEqual(body["volume_mm3"], (9 * 9 * 4 + 4 + 4) * 2.5)
        self.assertAlmostEqual(nodule["volume_mm3"], 3 * 3 * 2 * 2.5)
        self.assertAlmostEqual(body["diameter_mm"], (6 * body["volume_mm3"] / np.pi) ** (1 / 3))
        # the centre is the centroid of every voxel of the lesion, pieces included
        idx = np.argwhere(spiculated_with_pieces()[:30] > 0).mean(0)
        np.testing.assert_allclose(body["center_mm"], idx * [1.0, 1.0, 2.5])
        np.testing.assert_allclose(nodule["center_mm"], [32.0, 11.0, 5.5 * 2.5])
        self.assertEqual(body["box_voxel"], [[10, 10, 4], [23, 19, 10]])

    def test_zero_gap_keeps_every_component(self):
        lesions = label_lesions(spiculated_with_pieces(), AFFINE, merge_gap_mm=0.0)
        self.assertEqual(len(lesions), 4)
        self.assertEqual(sorted(round(les["volume_mm3"]) for les in lesions), [10, 10, 45, 810])
        # the same lesions, in the same order, as the candidate extraction reads a binary map
        binary = spiculated_with_pieces().astype(np.float32)
        found = find_lesions(binary, AFFINE, threshold=0.5, refine=False, nms_iou=1.0)
        self.assertEqual([les["box_voxel"] for les in lesions], [les["box_voxel"] for les in found])
        for a, b in zip(lesions, found):
            np.testing.assert_allclose(a["center_mm"], b["center_mm"], atol=1e-9)
            self.assertAlmostEqual(a["diameter_mm"], b["diameter_mm"], places=9)

    @parameterized.expand([("below", 2.9, 3), ("at", 3.0, 2), ("slice_gap_below", 4.9, 2), ("slice_gap_at", 5.0, 1)])
    def test_gap_is_the_distance_between_nearest_voxel_centres(self, _, gap, groups):
        label = spiculated_with_pieces()
        label[31:34] = 0  # only the body and its two pieces
        components, count = ndimage.label(label, structure=np.ones((3, 3, 3)))
        merged = merge_fragments(components, count, [1.0, 1.0, 2.5], gap)
        self.assertEqual(len(np.unique(merged[merged > 0])), groups)
        self.assertEqual(merged.max(), groups)

    def test_chain_of_pieces_is_single_linkage(self):
        label = np.zeros((40, 8, 8), dtype=np.uint8)
        label[2:4, 2:4, 2:4] = label[7:9, 2:4, 2:4] = label[12:14, 2:4, 2:4] = 1  # 4 mm gaps, 10 mm end to end
        self.assertEqual(len(label_lesions(label, np.eye(4), merge_gap_mm=4.0)), 1)
        self.assertEqual(len(label_lesions(label, np.eye(4), merge_gap_mm=3.9)), 3)

    def test_empty_and_2d(self):
        self.assertEqual(label_lesions(np.zeros((8, 8, 8)), AFFINE, merge_gap_mm=6.0), [])
        label = np.zeros((20, 20), dtype=np.uint8)
        label[2:6, 2:6] = label[7:8, 3:4] = 1  # 2 pixels (1 mm) apart
        lesions = label_lesions(label, np.diag([0.5, 0.5, 1.0]), merge_gap_mm=1.0)
        self.assertEqual(len(lesions), 1)
        self.assertAlmostEqual(lesions[0]["diameter_mm"], 2 * np.sqrt(17 * 0.25 / np.pi))

    @parameterized.expand([("negative", -1.0), ("nan", float("nan")), ("inf", float("inf"))])
    def test_bad_gap_is_refused(self, _, gap):
        with self.assertRaisesRegex(ValueError, "gap_mm"):
            label_lesions(spiculated_with_pieces(), AFFINE, merge_gap_mm=gap)

    def test_merging_needs_a_matching_affine(self):
        for gap in (0.0, 6.0):
            with self.assertRaisesRegex(ValueError, "affine must be given"):
                label_lesions(spiculated_with_pieces(), None, merge_gap_mm=gap)
        with self.assertRaisesRegex(ValueError, "affine of shape"):
            label_lesions(np.ones((4, 4), dtype=np.uint8), AFFINE, merge_gap_mm=6.0)


if __name__ == "__main__":
    unittest.main()
