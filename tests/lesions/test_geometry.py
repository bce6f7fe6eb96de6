"""Lesion boxes between grids and the world (bundle.lesions.geometry)."""

from __future__ import annotations

import unittest

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import Compose, EnsureChannelFirstd, Invertd, Orientationd, Spacingd

from bundle.lesions.find import find_lesions
from bundle.lesions.geometry import (
    box_edge_corners,
    label_map_to_grid,
    lesions_to_grid,
    voxel_box_to_world,
    world_to_voxel,
)

AFFINE = np.diag([1.0, 2.0, 2.5, 1.0])
AFFINE[:3, 3] = [10.0, -20.0, 5.0]


class TestVoxelBoxToWorld(unittest.TestCase):
    def test_voxel_box_to_world(self):
        box = voxel_box_to_world([[2, 3, 4], [6, 5, 8]], AFFINE, lps=False)  # voxels 2..5, 3..4, 4..7
        np.testing.assert_allclose(box, [10 + 3.5, -20 + 7.0, 5 + 13.75, 4.0, 4.0, 10.0])
        lps = voxel_box_to_world([[2, 3, 4], [6, 5, 8]], AFFINE)
        np.testing.assert_allclose(lps, [-13.5, 13.0, 18.75, 4.0, 4.0, 10.0])

    def test_world_to_voxel(self):
        affine = np.diag([2.0, 2.0, 2.5, 1.0])
        affine[:3, 3] = (-10.0, 4.0, 0.0)
        np.testing.assert_allclose(world_to_voxel((-4.0, 8.0, 5.0), affine), (3.0, 2.0, 2.0))
        many = world_to_voxel([(-4.0, 8.0, 5.0), (-10.0, 4.0, 0.0)], affine)  # (P, 3) in, (P, 3) out
        np.testing.assert_allclose(many, [(3.0, 2.0, 2.0), (0.0, 0.0, 0.0)])
        self.assertEqual(world_to_voxel([], affine).shape, (0, 3))
        rotated = np.array([[0.0, -1.0, 0.0, 5.0], [1.0, 0.0, 0.0, -2.0], [0.0, 0.0, 2.0, 1.0], [0, 0, 0, 1.0]])
        voxel = np.array([3.0, 7.0, 2.0])
        np.testing.assert_allclose(world_to_voxel((rotated @ np.append(voxel, 1))[:3], rotated), voxel)

    def test_box_edge_corners(self):
        corners = box_edge_corners([[2, 3], [6, 5]])  # 2-D: 4 corners at the voxel edges
        self.assertEqual(corners.shape, (4, 2))
        np.testing.assert_allclose(sorted(map(tuple, corners)), [(1.5, 2.5), (1.5, 4.5), (5.5, 2.5), (5.5, 4.5)])


class TestLesionsToGrid(unittest.TestCase):
    def test_downsampled_and_flipped_grid(self):
        blob = np.zeros((20, 20, 10), np.float32)
        blob[4:8, 6:12, 2:5] = 1.0
        (lesion,) = find_lesions(blob, np.eye(4))
        # target grid: 2 mm along x, y flipped (voxel j at world y = 19 - j)
        target = np.array([[2.0, 0, 0, 0], [0, -1.0, 0, 19.0], [0, 0, 1.0, 0], [0, 0, 0, 1.0]])
        (mapped,) = lesions_to_grid([lesion], np.eye(4), target, (10, 20, 10))
        np.testing.assert_allclose(mapped["center_voxel"], [2.75, 10.5, 3.0])
        self.assertEqual(mapped["box_voxel"], [[2, 8, 2], [5, 14, 5]])
        for key in ("center_mm", "diameter_mm", "volume_mm3", "score", "tier"):
            self.assertEqual(mapped[key], lesion[key])
        # world coordinates agree in both grids
        np.testing.assert_allclose((target @ [*mapped["center_voxel"], 1.0])[:3], lesion["center_mm"])

    def test_box_clipped_to_the_target(self):
        lesion = {"center_voxel": [0.0, 0.0, 0.0], "box_voxel": [[0, 0, 0], [3, 3, 3]], "center_mm": [0.0] * 3}
        (mapped,) = lesions_to_grid([lesion], np.eye(4), np.diag([1.0, 1.0, 1.0, 1.0]), (2, 2, 2))
        self.assertEqual(mapped["box_voxel"], [[0, 0, 0], [2, 2, 2]])

    def test_ill_affine(self):
        with self.assertRaisesRegex(ValueError, "affines"):
            lesions_to_grid([], np.eye(3), np.eye(4), (2, 2, 2))


class TestLabelMapToGrid(unittest.TestCase):
    def test_equals_monai_nearest_invert_inside_the_boxes(self):
        """Orientation (a flipped axis) and spacing (0.8 x 0.9 x 5 mm -> 1 x 1 x 2.5 mm) undone by MONAI's Invertd
        and by the box-wise mapping give the same label map."""
        affine = np.diag([-0.8, 0.9, 5.0, 1.0])
        affine[:3, 3] = [40.0, -12.0, 7.0]
        image = MetaTensor(torch.zeros(33, 34, 9), affine=torch.as_tensor(affine))
        pre = Compose([EnsureChannelFirstd("image", channel_dim="no_channel"), Orientationd("image", "RAS"),
                       Spacingd("image", pixdim=(1.0, 1.0, 2.5))])  # fmt: skip
        data = pre({"image": image})
        pre_affine = np.asarray(data["image"].affine, dtype=np.float64)
        labels = np.zeros(data["image"].shape[1:], dtype=np.uint16)
        labels[3:9, 10:15, 4:9] = 1
        labels[20:25, 2:6, 11:14] = 2
        data["seg"] = MetaTensor(torch.from_numpy(labels.astype(np.float32))[None])
        ref = Invertd("seg", transform=pre, orig_keys="image", nearest_interp=True)(data)["seg"]
        ref = np.rint(np.asarray(ref)[0]).astype(np.uint16)
        shape = ref.shape
        boxes = [[[3, 10, 4], [9, 15, 9]], [[20, 2, 11], [25, 6, 14]]]
        mapped_boxes = [les["box_voxel"] for les in lesions_to_grid(
            [{"center_voxel": [0, 0, 0], "box_voxel": b} for b in boxes], pre_affine, affine, shape)]  # fmt: skip
        out = label_map_to_grid(labels, pre_affine, affine, shape, mapped_boxes)
        self.assertEqual(out.dtype, labels.dtype)
        np.testing.assert_array_equal(out, ref)
        self.assertEqual(sorted(np.unique(out).tolist()), [0, 1, 2])
        np.testing.assert_array_equal(label_map_to_grid(labels, pre_affine, affine, shape), ref)  # boxes found

    def test_outside_the_boxes_stays_zero(self):
        labels = np.ones((6, 6, 6), dtype=np.uint8)
        boxes = [[[1, 1, 1], [3, 3, 3]], [[5, 5, 5], [9, 9, 9]]]
        out = label_map_to_grid(labels, np.eye(4), np.eye(4), (6, 6, 6), boxes)
        self.assertEqual(int(out.sum()), 8 + 1)  # the first box, and the second clipped to the grid
        self.assertEqual(int(label_map_to_grid(labels, np.eye(4), np.eye(4), (6, 6, 6), []).sum()), 0)
        with self.assertRaisesRegex(ValueError, "affines"):
            label_map_to_grid(labels, np.eye(3), np.eye(4), (6, 6, 6), [])


if __name__ == "__main__":
    unittest.main()
