"""bundle/experiments/configs/hard_negatives.json (not adopted; layered on configs/train.json): negative patches are centred inside the lung envelope only."""

from __future__ import annotations

import unittest
from pathlib import Path

import numpy as np
import torch
from monai.bundle import ConfigParser
from monai.data import MetaTensor
from monai.transforms import Compose

ROOT = Path(__file__).resolve().parents[3]


def chest_phantom() -> dict:
    """Windowed [0, 1] chest-like volume at 4 mm: body, two air-filled lungs, one lesion in the left lung."""
    hu = np.full((48, 48, 16), -1000.0, np.float32)
    hu[2:46, 2:46, :] = 0.0
    hu[10:22, 12:36, 3:13] = -850.0
    hu[26:38, 12:36, 3:13] = -850.0
    label = np.zeros(hu.shape, np.uint8)
    hu[14:17, 20:23, 7:9] = 40.0
    label[14:17, 20:23, 7:9] = 1
    affine = torch.diag(torch.tensor([4.0, 4.0, 4.0, 1.0], dtype=torch.float64))
    image = MetaTensor(torch.from_numpy((hu + 1000.0) / 1400.0)[None], affine=affine)
    return {"image": image, "label": MetaTensor(torch.from_numpy(label)[None], affine=affine)}


class TestHardNegatives(unittest.TestCase):
    def test_background_indices_inside_the_envelope(self):
        parser = ConfigParser()
        parser.read_config([str(ROOT / "configs" / "train.json"),
                            str(ROOT / "bundle" / "experiments" / "configs" / "hard_negatives.json")])
        parser["patch_size"] = [16, 16, 8]
        sampling = parser.get_parsed_content("train#sampling")
        names = [type(t).__name__ for t in sampling]
        self.assertEqual(names, ["LungCandidateMaskd", "FgBgToIndicesd", "RandCropByPosNegLabeld", "DeleteItemsd"])
        d = chest_phantom()
        for t in sampling[:2]:
            d = t(d)
        mask = d["lung_mask"][0].numpy().astype(bool)
        self.assertLess(mask.mean(), 0.6)  # the envelope, not the all-ones fallback
        bg = np.asarray(d["label_bg_indices"])
        self.assertGreater(bg.size, 0)
        self.assertTrue(mask.ravel()[bg].all())  # every negative centre lies inside the envelope
        self.assertFalse(d["label"][0].numpy().ravel()[bg].any())
        # the whole chain yields patches without the helper keys
        d = Compose(sampling[2:])(d)
        self.assertEqual(len(d), parser.get_parsed_content("num_samples"))
        self.assertNotIn("lung_mask", d[0])


if __name__ == "__main__":
    unittest.main()
