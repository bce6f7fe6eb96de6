"""MONAI Label detection-mode detector and the Spacingd compatibility transforms (no server)."""

from __future__ import annotations

import unittest

import numpy as np
import torch
from monai.data import MetaTensor
from monai.inferers import SimpleInferer

from bundle.export.detector import LesionBoxDetector

AFFINE = np.diag([1.0, 2.0, 2.5, 1.0])
AFFINE[:3, 3] = [10.0, -20.0, 5.0]


class Ball(torch.nn.Module):
    """Logits of a lesion wherever the input is > 0.5."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([-(x - 0.5) * 20.0, (x - 0.5) * 20.0], dim=1)


class TestDetector(unittest.TestCase):
    def test_boxes(self):
        img = torch.zeros(1, 1, 20, 20, 12)
        img[..., 4:10, 6:12, 3:7] = 1.0
        det = LesionBoxDetector(SimpleInferer(), lps=False)
        det.network = Ball()
        out = det.eval()(MetaTensor(img, affine=torch.as_tensor(AFFINE)), use_inferer=True)
        self.assertEqual(len(out), 1)
        self.assertEqual(tuple(out[0]["box"].shape), (1, 6))
        np.testing.assert_allclose(out[0]["box"][0].numpy(), [10 + 6.5, -20 + 17.0, 5 + 11.25, 6.0, 12.0, 10.0], atol=1e-4)
        self.assertEqual(out[0]["label"].tolist(), [0])
        self.assertGreater(float(out[0]["label_scores"][0]), 0.9)

    def test_rescorer_scores_the_boxes_and_drops_the_low_ones(self):
        img = torch.zeros(1, 1, 20, 20, 12)
        img[..., 4:10, 6:12, 3:7] = 1.0
        seen = []

        def rescorer(lesions, image, prob, affine):  # a stand-in for CandidateRescorer
            seen.append((tuple(image.shape), tuple(prob.shape)))
            return [{**les, "score": new} for les in lesions]

        for new, n_boxes in ((0.7, 1), (0.3, 0)):
            det = LesionBoxDetector(SimpleInferer(), network=Ball(), rescorer=rescorer, rescore_threshold=0.5)
            out = det.eval()(MetaTensor(img, affine=torch.as_tensor(AFFINE)))
            self.assertEqual(tuple(out[0]["box"].shape), (n_boxes, 6))
            np.testing.assert_allclose(out[0]["label_scores"].numpy(), [new] * n_boxes, rtol=1e-6)
        self.assertEqual(seen, [((20, 20, 12), (20, 20, 12))] * 2)  # the image channel on the probability's grid
        with self.assertRaisesRegex(ValueError, "rescore_threshold"):
            LesionBoxDetector(SimpleInferer(), rescore_threshold=-1)

    def test_ill_arg(self):
        with self.assertRaisesRegex(ValueError, "network is not set"):
            LesionBoxDetector(SimpleInferer())(torch.zeros(1, 1, 4, 4, 4))
        with self.assertRaisesRegex(ValueError, "inputs must be"):
            LesionBoxDetector(SimpleInferer(), network=Ball())(torch.zeros(1, 4, 4, 4))


if __name__ == "__main__":
    unittest.main()
