from __future__ import annotations

import unittest

import numpy as np
import torch
from parameterized import parameterized

from bundle.transforms import (
    BorderGaussianSmooth,
    BorderGaussianSmoothD,
    BorderGaussianSmoothd,
    BorderGaussianSmoothDict,
    ReplaceNonFinite,
    ReplaceNonFiniteD,
    ReplaceNonFinited,
    ReplaceNonFiniteDict,
    WindowIntensity,
    WindowIntensityD,
    WindowIntensityd,
    WindowIntensityDict,
)

NAN = float("nan")


class TestReplaceNonFinited(unittest.TestCase):
    def test_keys_only(self):
        data = {"image": torch.tensor([[NAN, 1.0]]), "label": torch.tensor([[NAN, 1.0]])}
        out = ReplaceNonFinited("image", value=-5.0)(data)
        np.testing.assert_allclose(out["image"], [[-5.0, 1.0]])
        self.assertTrue(bool(torch.isnan(out["label"][0, 0])))  # untouched
        self.assertTrue(bool(torch.isnan(data["image"][0, 0])))  # input dict not modified

    def test_channel_wise(self):
        data = {"image": torch.tensor([[NAN, 1.0], [NAN, 4.0]])}
        out = ReplaceNonFinited("image", channel_wise=True)(data)
        np.testing.assert_allclose(out["image"], [[1.0, 1.0], [4.0, 4.0]])

    def test_missing_keys(self):
        with self.assertRaises(KeyError):
            ReplaceNonFinited(["image", "other"])({"image": torch.zeros(1, 2)})
        out = ReplaceNonFinited(["image", "other"], allow_missing_keys=True)({"image": torch.zeros(1, 2)})
        self.assertEqual(set(out), {"image"})

    def test_aliases_backend(self):
        self.assertIs(ReplaceNonFiniteD, ReplaceNonFinited)
        self.assertIs(ReplaceNonFiniteDict, ReplaceNonFinited)
        self.assertEqual(ReplaceNonFinited.backend, ReplaceNonFinite.backend)

    def test_ill_arg(self):
        with self.assertRaisesRegex(ValueError, "value must be"):
            ReplaceNonFinited("image", value=NAN)


class TestBorderGaussianSmoothd(unittest.TestCase):
    @parameterized.expand([[{"sigma": 1.0}], [{"sigma": (1.0, 2.0, 0.5), "padding_mode": "reflect"}]])
    def test_matches_array_transform(self, kwargs):
        img = torch.rand(1, 7, 8, 9)
        out = BorderGaussianSmoothd(["image", "other"], allow_missing_keys=True, **kwargs)({"image": img, "label": img})
        np.testing.assert_allclose(out["image"], BorderGaussianSmooth(**kwargs)(img), rtol=1e-6)
        self.assertIs(out["label"], img)

    def test_aliases_backend(self):
        self.assertIs(BorderGaussianSmoothD, BorderGaussianSmoothd)
        self.assertIs(BorderGaussianSmoothDict, BorderGaussianSmoothd)
        self.assertEqual(BorderGaussianSmoothd.backend, BorderGaussianSmooth.backend)

    def test_ill_arg(self):
        with self.assertRaisesRegex(ValueError, "sigma"):
            BorderGaussianSmoothd("image", sigma=-1.0)


class TestWindowIntensityd(unittest.TestCase):
    def test_matches_array_transform(self):
        img = torch.randn(1, 7, 8, 9) * 600
        out = WindowIntensityd(["image", "other"], a_min=-1000, a_max=400, allow_missing_keys=True)(
            {"image": img, "label": img}
        )
        self.assertTrue(torch.equal(out["image"], WindowIntensity(-1000, 400)(img)))
        self.assertIs(out["label"], img)

    def test_aliases_backend(self):
        self.assertIs(WindowIntensityD, WindowIntensityd)
        self.assertIs(WindowIntensityDict, WindowIntensityd)
        self.assertEqual(WindowIntensityd.backend, WindowIntensity.backend)

    def test_ill_arg(self):
        with self.assertRaisesRegex(ValueError, "a_min"):
            WindowIntensityd("image", a_min=1.0, a_max=0.0)


if __name__ == "__main__":
    unittest.main()
