"""The small-lesion training recipe (``configs/variants/nodule_mode_train.json``, which trained
``models/nodule_mode/model.pt``): every lesion is drawn as a patch centre equally often, whatever its size,
negatives come from the body, and the Dice term is per patch, so a missed 3 mm nodule costs as much as a missed
30 mm one."""

from __future__ import annotations

import unittest
from pathlib import Path

import numpy as np
import torch
from monai.bundle import ConfigParser
from monai.data import MetaTensor
from monai.transforms import Compose

CONFIGS = Path(__file__).resolve().parents[3] / "configs"
RECIPE = [str(CONFIGS / "train.json"), str(CONFIGS / "variants" / "nodule_mode_train.json")]


def phantom() -> dict:
    """[0, 1] volume: air (0) around a body (0.7); a 1-voxel lesion and a 6x6x4 (144-voxel) lesion."""
    image = np.zeros((40, 40, 16), np.float32)
    image[4:36, 4:36, :] = 0.7
    label = np.zeros(image.shape, np.uint8)
    label[10, 10, 8] = 1
    label[24:30, 24:30, 6:10] = 1
    affine = torch.eye(4, dtype=torch.float64)
    return {
        "image": MetaTensor(torch.from_numpy(image)[None], affine=affine),
        "label": MetaTensor(torch.from_numpy(label)[None], affine=affine),
    }


class TestSmallLesionRecipe(unittest.TestCase):
    def setUp(self):
        self.parser = ConfigParser()
        self.parser.read_config(RECIPE)
        self.parser["patch_size"] = [5, 5, 3]
        self.parser["num_samples"] = 600

    def test_patch_centres(self):
        sampling = self.parser.get_parsed_content("train#sampling")
        chain = Compose(sampling)
        chain.set_random_state(0)
        patches = chain(phantom())
        self.assertEqual(len(patches), 600)
        self.assertNotIn("sample_weight", patches[0])
        centre = (2, 2, 1)  # the centre voxel of a 5 x 5 x 3 patch
        small = big = body = air = 0
        for p in patches:
            lab, img = p["label"][0], p["image"][0]
            if lab[centre] > 0:
                small += int(lab.sum() == 1)
                big += int(lab.sum() > 1)
            else:
                body += int(img[centre] > 0.05)
                air += int(img[centre] <= 0.05)
        # uniform foreground sampling would centre 1 in 145 positive patches on the 1-voxel lesion
        self.assertGreater(small, 100)
        self.assertGreater(big, 100)
        self.assertLess(abs(small - big), 0.35 * (small + big))
        self.assertGreater(body, 200)  # about half the draws are negatives ...
        self.assertEqual(air, 0)  # ... and none is centred in the air around the body

    def test_missed_small_lesion_costs_like_a_missed_large_one(self):
        loss = self.parser.get_parsed_content("loss")
        target = torch.zeros(2, 1, 16, 16, 8)
        target[0, 0, 8, 8, 4] = 1  # one-voxel lesion in patch 0
        target[1, 0, 2:14, 2:14, 1:7] = 1  # large lesion in patch 1
        logits = torch.zeros(2, 2, 16, 16, 8)
        logits[:, 0], logits[:, 1] = 8.0, -8.0  # background everywhere ...
        logits[1, 0][target[1, 0] > 0], logits[1, 1][target[1, 0] > 0] = -8.0, 8.0  # ... but the large lesion found
        missed_small = float(loss(logits, target))
        found_all = logits.clone()
        found_all[0, 0, 8, 8, 4], found_all[0, 1, 8, 8, 4] = -8.0, 8.0
        # per-patch Dice: missing the one voxel costs about half the Dice term; batch Dice would hide it (< 0.01)
        self.assertGreater(missed_small - float(loss(found_all, target)), 0.4)


if __name__ == "__main__":
    unittest.main()
