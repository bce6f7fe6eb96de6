"""Calibrating the screening pass from training cases (bundle.inferers.calibration)."""

from __future__ import annotations

import unittest

import torch
from parameterized import parameterized

from bundle.inferers.calibration import calibrate_screening_from_data, sample_windows
from bundle.networks import GhostCAUNet

ROI = (16, 16, 16)


def cases(n: int = 2, shape: tuple[int, ...] = (24, 24, 20)) -> list[dict]:
    """Cases already preprocessed (the transform only converts): a bright cube lesion in a body of 0.5."""
    out = []
    for k in range(n):
        image = torch.full((1, *shape), 0.5)
        label = torch.zeros((1, *shape))
        image[0, 4 + k : 10 + k, 6:12, 5:9] = 1.0
        label[0, 4 + k : 10 + k, 6:12, 5:9] = 1.0
        out.append({"image": image, "label": label})
    return out


def as_tensors(item: dict) -> dict:
    return {"image": torch.as_tensor(item["image"]), "label": torch.as_tensor(item["label"])}


class TestSampleWindows(unittest.TestCase):
    def test_shapes_positives_and_determinism(self):
        images, labels = sample_windows(cases(), as_tensors, ROI, windows_per_case=4, pos_fraction=0.5, seed=3)
        self.assertEqual(tuple(images.shape), (8, 1, *ROI))
        self.assertEqual(tuple(labels.shape), (8, 1, *ROI))
        self.assertTrue(bool((labels.flatten(1).amax(1) > 0).any()))  # some windows hold the lesion
        # image and label were cropped at the same places: label voxels are the bright ones
        self.assertTrue(bool((images[labels > 0] == 1.0).all()))
        again = sample_windows(cases(), as_tensors, ROI, windows_per_case=4, pos_fraction=0.5, seed=3)
        torch.testing.assert_close(images, again[0])

    def test_small_case_is_padded_to_the_window(self):
        images, _ = sample_windows(cases(1, (12, 24, 10)), as_tensors, ROI, windows_per_case=2, pos_fraction=1.0)
        self.assertEqual(tuple(images.shape[2:]), ROI)

    @parameterized.expand([("no_cases", [], {}), ("windows", None, {"windows_per_case": 0}),
                           ("fraction", None, {"pos_fraction": 1.5})])
    def test_ill_arg(self, _, data, kwargs):
        with self.assertRaises(ValueError):
            sample_windows(cases() if data is None else data, as_tensors, ROI, **kwargs)


class TestCalibrateFromData(unittest.TestCase):
    def test_sets_the_screening_buffers(self):
        torch.manual_seed(0)
        # 16 / (2 * 2**2) = 2 bottleneck positions per axis
        net = GhostCAUNet(spatial_dims=3, features=(4, 8, 8), ghost_levels=(1,), ca_stages=(2,))
        before = net.prototype.clone()
        stats = calibrate_screening_from_data(net, cases(), as_tensors, ROI, windows_per_case=4)
        self.assertEqual(stats["windows"], 8.0)
        self.assertGreater(stats["windows_with_lesion"], 0.0)
        self.assertFalse(torch.equal(before, net.prototype))

    def test_network_without_screen_calibration(self):
        with self.assertRaisesRegex(TypeError, "calibrate_screening"):
            calibrate_screening_from_data(torch.nn.Identity(), cases(), as_tensors, ROI)


if __name__ == "__main__":
    unittest.main()
