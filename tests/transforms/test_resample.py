"""SeparableSpacingd against MONAI's Spacingd: the same output shape, affine, metadata, applied operations and
inverse, voxel values to float32 rounding, and MONAI's own path where the separable one does not apply."""

from __future__ import annotations

import unittest
from unittest import mock

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import Spacingd
from parameterized import parameterized

from bundle.transforms.resample import SeparableSpacingd, resample_axes

# (input shape, input affine diagonal, pixdim, rotated in-plane): thick slices to thin, thin to thick, a flipped
# axis, mixed, an oblique scan (Spacing keeps its axes, so the voxel-to-voxel transform is still a scaling)
TEST_CASES = [
    [(40, 37, 20), (0.84, 0.84, 5.0), (1.0, 1.0, 2.5), False],
    [(33, 30, 50), (-0.7, 0.9, 1.0), (0.8, 0.8, 2.5), False],
    [(50, 50, 30), (1.0, 1.0, 1.0), (0.5, 2.0, 1.3), False],
    [(30, 31, 12), (0.8, 0.9, 3.0), (1.0, 1.0, 2.0), True],
]


def _image(shape, diagonal, rotate: bool = False) -> MetaTensor:
    affine = np.diag([*diagonal, 1.0])
    affine[:3, 3] = (10.0, -20.0, 30.0)
    if rotate:
        c, s = np.cos(0.2), np.sin(0.2)
        affine[:3, :3] = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]) @ affine[:3, :3]
    return MetaTensor(torch.randn(1, *shape, generator=torch.Generator().manual_seed(0)) * 300, affine=affine)


class TestSeparableSpacingd(unittest.TestCase):
    @parameterized.expand(TEST_CASES)
    def test_same_as_monai(self, shape, diagonal, pixdim, rotate):
        img = _image(shape, diagonal, rotate)
        ref = Spacingd("image", pixdim=pixdim, mode="bilinear", dtype=np.float32)({"image": img.clone()})["image"]
        ours_t = SeparableSpacingd("image", pixdim=pixdim, mode="bilinear", dtype=np.float32)
        with mock.patch("bundle.transforms.resample.resample_axes", wraps=resample_axes) as used:
            out = ours_t({"image": img.clone()})
        self.assertTrue(used.called)
        ours = out["image"]
        self.assertEqual(tuple(ours.shape), tuple(ref.shape))
        self.assertEqual(ours.dtype, ref.dtype)
        np.testing.assert_allclose(ours.numpy(), ref.numpy(), atol=1e-4 * 300 * 5)
        np.testing.assert_allclose(ours.affine.numpy(), ref.affine.numpy(), atol=1e-9)
        (a,), (b,) = ours.applied_operations, ref.applied_operations
        self.assertEqual(a["orig_size"], b["orig_size"])
        np.testing.assert_allclose(a["extra_info"]["src_affine"], b["extra_info"]["src_affine"])
        self.assertEqual({k: v for k, v in a["extra_info"].items() if k != "src_affine"},
                         {k: v for k, v in b["extra_info"].items() if k != "src_affine"})  # fmt: skip
        back = ours_t.inverse(out)["image"]
        self.assertEqual(tuple(back.shape), tuple(img.shape))
        np.testing.assert_allclose(back.affine.numpy(), img.affine.numpy(), atol=1e-6)

    def test_separable_interpolation_is_trilinear(self):
        # a linear ramp is reproduced exactly inside the volume and clamped at the border
        x = torch.arange(10, dtype=torch.float32).reshape(1, 10, 1, 1).expand(1, 10, 2, 3).contiguous()
        out = resample_axes(x, (0.5, 1.0, 1.0), (-1.0, 0.0, 0.0), (22, 2, 3))
        expected = torch.clamp(torch.arange(22, dtype=torch.float32) * 0.5 - 1.0, 0, 9)
        np.testing.assert_allclose(out[0, :, 0, 0].numpy(), expected.numpy(), atol=1e-6)

    @parameterized.expand([["oblique_to_diagonal", True, "bilinear", True], ["nearest", False, "nearest", False]])
    def test_monai_path_otherwise(self, name, rotate, mode, to_diagonal):
        img = _image((20, 21, 12), (0.8, 0.9, 3.0), rotate=rotate)
        if mode == "nearest":
            img = MetaTensor(torch.round(img.as_tensor()), affine=img.affine)
        kwargs = {"pixdim": (1.0, 1.0, 2.0), "mode": mode, "diagonal": to_diagonal}
        ref = Spacingd("image", **kwargs)({"image": img.clone()})["image"]
        with mock.patch("bundle.transforms.resample.resample_axes") as used:
            ours = SeparableSpacingd("image", **kwargs)({"image": img.clone()})["image"]
        self.assertFalse(used.called)
        np.testing.assert_array_equal(ours.numpy(), ref.numpy())

    def test_ill_arg(self):
        with self.assertRaisesRegex(ValueError, "scales, shifts and size"):
            resample_axes(torch.zeros(1, 4, 4, 4), (1.0, 1.0), (0.0, 0.0, 0.0), (4, 4, 4))


if __name__ == "__main__":
    unittest.main()
