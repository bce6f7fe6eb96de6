from __future__ import annotations

import unittest

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import ScaleIntensityRange
from parameterized import parameterized
from scipy import ndimage

from bundle.transforms import BorderGaussianSmooth, ReplaceNonFinite, WindowIntensity
from bundle.transforms.array import _gaussian_filter_slabs

NAN, INF = float("nan"), float("inf")

# (kwargs, input, expected)
TEST_CASES_REPLACE = [
    [{"value": -1000.0}, [[NAN, 3.0, INF, -INF]], [[-1000.0, 3.0, -1000.0, -1000.0]]],
    [{}, [[NAN, 3.0, INF, 5.0]], [[3.0, 3.0, 3.0, 5.0]]],  # None: minimum of the finite voxels
    [{}, [[NAN, 3.0], [7.0, INF]], [[3.0, 3.0], [7.0, 3.0]]],
    [{"channel_wise": True}, [[NAN, 3.0], [7.0, INF]], [[3.0, 3.0], [7.0, 7.0]]],
    [{}, [[NAN, INF], [-INF, NAN]], [[0.0, 0.0], [0.0, 0.0]]],  # nothing finite: 0
    [{"value": 2}, [[1.0, 2.0]], [[1.0, 2.0]]],  # already finite: unchanged
    [{"value": 2}, [[3e38, 3e38]], [[3e38, 3e38]]],  # finite, but their float32 sum overflows: unchanged
    [{"value": 2}, [[INF, -INF, 1.0]], [[2.0, 2.0, 1.0]]],  # Inf and -Inf: a NaN sum
]


class TestReplaceNonFinite(unittest.TestCase):
    @parameterized.expand(TEST_CASES_REPLACE)
    def test_values(self, kwargs, data, expected):
        for array in (torch.tensor(data), np.asarray(data, np.float32)):
            out = ReplaceNonFinite(**kwargs)(array)
            self.assertTrue(bool(torch.isfinite(torch.as_tensor(out)).all()))
            np.testing.assert_allclose(torch.as_tensor(out).numpy(), expected)

    def test_keeps_meta_shape_dtype(self):
        img = MetaTensor(
            torch.full((1, 3, 4, 5), NAN, dtype=torch.float64), affine=torch.diag(torch.tensor([2.0, 2, 2, 1]))
        )
        img[0, 1, 1, 1] = 4.0
        out = ReplaceNonFinite()(img)
        self.assertIsInstance(out, MetaTensor)
        self.assertEqual((out.shape, out.dtype), (img.shape, torch.float64))
        np.testing.assert_allclose(out.affine, img.affine)
        self.assertTrue(bool((out == 4.0).all()))

    def test_integer_unchanged(self):
        img = torch.arange(6, dtype=torch.int16).reshape(1, 2, 3)
        out = ReplaceNonFinite(value=0.0)(img)
        self.assertEqual(out.dtype, torch.int16)
        self.assertTrue(torch.equal(torch.as_tensor(out), img))

    @parameterized.expand([[NAN], [INF], ["low"]])
    def test_ill_arg(self, value):
        with self.assertRaisesRegex(ValueError, "value must be"):
            ReplaceNonFinite(value=value)


# (kwargs, input_shape)
TEST_CASES_SMOOTH_SHAPE = [
    [{}, (1, 9, 10, 11)],
    [{"sigma": 2.0}, (2, 9, 10, 11)],
    [{"sigma": (1.0, 0.5, 0.0)}, (1, 9, 10, 11)],
    [{"sigma": 1.5}, (1, 12, 13)],
    [{"padding_mode": "constant"}, (1, 12, 13)],
]


class TestBorderGaussianSmooth(unittest.TestCase):
    @parameterized.expand(TEST_CASES_SMOOTH_SHAPE)
    def test_shape(self, kwargs, shape):
        img = MetaTensor(torch.rand(shape))
        out = BorderGaussianSmooth(**kwargs)(img)
        self.assertIsInstance(out, MetaTensor)
        self.assertEqual((tuple(out.shape), out.dtype), (shape, torch.float32))

    def test_reduces_noise_variance(self):
        noise = torch.from_numpy(np.random.default_rng(0).normal(0.0, 1.0, (1, 24, 24, 24)).astype(np.float32))
        out = BorderGaussianSmooth(sigma=1.0)(noise)
        self.assertLess(float(out.std()), 0.5 * float(noise.std()))
        self.assertAlmostEqual(float(out.mean()), float(noise.mean()), delta=0.02)

    def test_constant_image_unchanged_at_borders(self):
        img = torch.full((1, 6, 7, 5), -1000.0)  # air in HU: zero padding would brighten the borders
        np.testing.assert_allclose(BorderGaussianSmooth(sigma=1.0)(img), img, rtol=1e-6)

    def test_channels_independent(self):
        img = torch.zeros((2, 9, 9))
        img[0, 4, 4] = 1.0
        out = BorderGaussianSmooth(sigma=1.0)(img)
        self.assertEqual(float(out[1].abs().max()), 0.0)
        self.assertAlmostEqual(float(out[0].sum()), 1.0, places=5)

    def test_zero_sigma_axis(self):
        img = torch.rand((1, 8, 9))
        out = BorderGaussianSmooth(sigma=(0.0, 1.0))(img)
        # along axis 1 nothing moves: a column-constant image keeps its rows
        col = torch.arange(8.0)[None, :, None].expand(1, 8, 9)
        np.testing.assert_allclose(BorderGaussianSmooth(sigma=(0.0, 1.0))(col), col, rtol=1e-6)
        self.assertFalse(torch.allclose(torch.as_tensor(out), img))

    def test_numpy_input(self):
        out = BorderGaussianSmooth()(np.ones((1, 5, 5), np.int16))
        self.assertIsInstance(out, torch.Tensor)
        np.testing.assert_allclose(out, np.ones((1, 5, 5)))

    @parameterized.expand(
        [
            [{"sigma": -1.0}, "sigma"],
            [{"sigma": ()}, "sigma"],
            [{"truncated": 0.0}, "truncated"],
            [{"sigma": NAN}, "sigma"],
        ]
    )
    def test_ill_arg(self, kwargs, message):
        with self.assertRaisesRegex(ValueError, message):
            BorderGaussianSmooth(**kwargs)

    def test_ill_padding_mode(self):
        with self.assertRaises(ValueError):
            BorderGaussianSmooth(padding_mode="zeros")

    def test_ill_num_threads(self):
        with self.assertRaisesRegex(ValueError, "num_threads"):
            BorderGaussianSmooth(num_threads=0)

    @parameterized.expand(
        [
            [(1, 40, 9, 7), (0.0, 1.0, 1.0, 1.0), "nearest", 2],
            [(2, 11, 37, 5), (0.0, 1.5, 0.7, 0.0), "reflect", 3],
            [(1, 64, 8, 8), (0.0, 0.0, 1.0, 1.0), "nearest", 4],  # no smoothing along the axis that is cut
            [(1, 70, 30), (0.0, 2.0, 1.0), "mirror", 2],
            [(1, 70, 30), (0.0, 2.0, 1.0), "constant", 3],
            [(1, 70, 30), (0.0, 2.0, 1.0), "wrap", 2],  # a single call: slabs would wrap onto themselves
            [(1, 70, 30), (0.0, 0.0, 1.0), "wrap", 2],  # no kernel along the cut axis: slabs are exact
        ]
    )
    def test_slabs_equal_one_call(self, shape, sigmas, mode, threads):
        x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
        expected = ndimage.gaussian_filter(x, sigma=sigmas, mode=mode, truncate=4.0)
        out = _gaussian_filter_slabs(x, sigmas, mode, 4.0, threads, min_voxels=0)
        np.testing.assert_array_equal(out, expected)

    def test_threads_do_not_change_the_result(self):
        img = torch.from_numpy(np.random.default_rng(1).normal(size=(1, 130, 96, 90)).astype(np.float32))  # > 1 M
        one = BorderGaussianSmooth(sigma=1.0, num_threads=1)(img)
        np.testing.assert_array_equal(BorderGaussianSmooth(sigma=1.0, num_threads=2)(img), one)
        np.testing.assert_array_equal(BorderGaussianSmooth(sigma=1.0, num_threads=3)(img), one)

    def test_ill_sigma_count(self):
        with self.assertRaisesRegex(ValueError, "sigma must have 1 or 3 values"):
            BorderGaussianSmooth(sigma=(1.0, 1.0))(torch.zeros((1, 4, 4, 4)))


class TestWindowIntensity(unittest.TestCase):
    @parameterized.expand(
        [
            [(-1000.0, 400.0), torch.float32, (1, 9, 8, 7)],
            [(-1000.0, 400.0), torch.float64, (1, 9, 8, 7)],
            [(-160.0, 240.0), torch.float32, (2, 5, 6)],
            [(0.1, 0.7), torch.float32, (1, 33)],  # a window whose width is not exact in binary
        ]
    )
    def test_equals_monai_scale_intensity_range(self, window, dtype, shape):
        gen = torch.Generator().manual_seed(0)
        n = int(np.prod(shape))
        # values from well below to well above the window, in random order
        values = torch.linspace(2 * window[0] - window[1], 2 * window[1] - window[0], n, dtype=dtype)
        img = MetaTensor(values[torch.randperm(n, generator=gen)].reshape(shape))
        img.meta["pixdim"] = torch.tensor([1.0, 1.0, 2.5])
        before = img.clone()
        expected = ScaleIntensityRange(*window, b_min=0.0, b_max=1.0, clip=True)(img)
        out = WindowIntensity(*window)(img)
        self.assertEqual((out.dtype, expected.dtype), (torch.float32, torch.float32))
        self.assertTrue(torch.equal(out.as_tensor(), expected.as_tensor()))  # to the bit, not only close
        self.assertIsInstance(out, MetaTensor)
        self.assertTrue(torch.equal(out.meta["pixdim"], img.meta["pixdim"]))
        self.assertTrue(torch.equal(img.as_tensor(), before.as_tensor()))  # the input is not written over
        self.assertEqual((float(out.min()), float(out.max())), (0.0, 1.0))

    def test_types(self):
        ints = np.array([[-5, 5, 20]], dtype=np.int16)
        out = WindowIntensity(0.0, 10.0)(ints)
        self.assertIsInstance(out, np.ndarray)  # MONAI's returns a tensor for a numpy input; the values are the same
        self.assertEqual(out.dtype, np.float32)
        expected = ScaleIntensityRange(0.0, 10.0, b_min=0.0, b_max=1.0, clip=True)(ints)
        np.testing.assert_array_equal(out, np.asarray(expected))
        np.testing.assert_array_equal(out, [[0.0, 0.5, 1.0]])
        out = WindowIntensity(0.0, 10.0)(torch.tensor([[5.0]]))
        self.assertIs(type(out), torch.Tensor)

    @parameterized.expand([[1.0, 1.0], [2.0, 1.0], [float("nan"), 1.0], [0.0, float("inf")]])
    def test_ill_arg(self, a_min, a_max):
        with self.assertRaisesRegex(ValueError, "a_min must be smaller than a_max"):
            WindowIntensity(a_min, a_max)


if __name__ == "__main__":
    unittest.main()
