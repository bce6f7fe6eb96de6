from __future__ import annotations

import json
import unittest

import torch
from monai.bundle import ConfigParser
from parameterized import parameterized

from bundle.ablation import LABELS, VARIANTS, ablation_table, variant_overrides


class TestAblation(unittest.TestCase):
    @parameterized.expand([[name] for name in VARIANTS])
    def test_every_variant_builds_from_train_json(self, name):
        parser = ConfigParser()
        parser.read_config("configs/train.json")
        parser.update(variant_overrides(name, num_eval_cases=2, num_train_cases=4))
        net = parser.get_parsed_content("network_def", instantiate=True).eval()
        with torch.no_grad():
            out = net(torch.rand(1, 1, 32, 32, 16))
        self.assertEqual(tuple(out.shape), (1, 2, 32, 32, 16))
        json.dumps(variant_overrides(name))  # the override file is written as JSON

    def test_ablation_steps_differ_as_named(self):
        ghost = {n: VARIANTS[n][0].get("ghost_levels") for n in ("unet", "ghost", "ca", "ghost_ca")}
        ca = {n: VARIANTS[n][0].get("ca_stages") for n in ("unet", "ghost", "ca", "ghost_ca")}
        self.assertEqual(ghost, {"unet": [], "ghost": [2], "ca": [], "ghost_ca": [2]})
        self.assertEqual(ca, {"unet": [], "ghost": [], "ca": [3], "ghost_ca": [3]})
        self.assertEqual(VARIANTS["ghost_ca_routed"][0], VARIANTS["ghost_ca"][0])
        self.assertTrue(VARIANTS["ghost_ca_routed"][1])
        self.assertFalse(VARIANTS["ghost_ca"][1])
        self.assertEqual(set(LABELS), set(VARIANTS))

    def test_monai_baselines_skip_screen_calibration(self):
        self.assertIn("finalize", variant_overrides("monai_unet"))
        self.assertNotIn("finalize", variant_overrides("ghost_ca"))
        self.assertIn("[:3]", variant_overrides("unet", 3)["heldout_datalist"])
        self.assertIn("'training')][:5]", variant_overrides("unet", None, 5)["train_all"])
        self.assertNotIn("train_all", variant_overrides("unet"))

    def test_ill_arg(self):
        with self.assertRaises(ValueError):
            variant_overrides("resnet")
        with self.assertRaises(ValueError):
            variant_overrides("unet", 0)
        with self.assertRaises(ValueError):
            variant_overrides("unet", None, 2)

    def test_table(self):
        m = {"recall": 0.5, "precision": 0.25, "f1": 1 / 3, "cpm": 0.4, "params_millions": 0.64,
             "seconds_per_volume": 12.34}
        table = ablation_table({"ghost_ca": m, "unet": {**m, "seconds_per_volume": None}})
        lines = table.splitlines()
        self.assertEqual(len(lines), 4)
        self.assertIn("| + Ghost + CA (bundle network) | 0.500 | 0.250 | 0.333 | 0.400 | 0.640 | 12.3 |", lines)
        self.assertTrue(lines[3].endswith("| n/a |"))


if __name__ == "__main__":
    unittest.main()
