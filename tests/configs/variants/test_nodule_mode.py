"""Nodule mode (opt-in): the per-lesion network with the false-positive-reduction rescorer, for inference
(``configs/inference.json`` + ``configs/variants/nodule_mode.json``) and evaluation (``configs/train.json`` +
``configs/evaluate.json`` + ``configs/variants/nodule_mode_evaluate.json``)."""

from __future__ import annotations

import unittest
from pathlib import Path

import torch
from monai.bundle import ConfigParser

from bundle.lesions.rescore import CandidateRescorer

ROOT = Path(__file__).resolve().parents[3]
CONFIGS = ROOT / "configs"


def parser(*names: str) -> ConfigParser:
    p = ConfigParser()
    p.read_config([str(CONFIGS / n) for n in names])
    p["bundle_root"] = str(ROOT)
    return p


class TestNoduleMode(unittest.TestCase):
    def test_default_inference_has_no_rescorer(self):
        p = parser("inference.json")
        self.assertIsNone(p.get_parsed_content("rescorer"))
        self.assertEqual(p.get_parsed_content("evaluator#lesion_kwargs")["threshold"], 0.5)
        self.assertTrue(p.get_parsed_content("ckpt_path").endswith("models/model.pt"))

    def test_nodule_mode_inference_rescores_candidates_cut_at_the_evaluation_threshold(self):
        p = parser("inference.json", "variants/nodule_mode.json")
        self.assertIsInstance(p.get_parsed_content("rescorer"), CandidateRescorer)
        for component in ("evaluator", "detector"):
            self.assertEqual(p.get_parsed_content(f"{component}#lesion_kwargs")["threshold"], 0.2)
            self.assertEqual(p.get_parsed_content(f"{component}#rescore_threshold"), 0.5)
        # the shipped weights fit the inference network exactly
        network = p.get_parsed_content("network_def")
        state = torch.load(p.get_parsed_content("ckpt_path"), map_location="cpu", weights_only=True)
        network.load_state_dict(state, strict=True)

    def test_shipped_rescorer_matches_this_version_of_the_features(self):
        # CandidateRescorer refuses a model whose feature names differ: a change of the features needs a refit
        CandidateRescorer(ROOT / "models" / "nodule_mode" / "fp_reduction.json")

    def test_evaluation_override_uses_the_rescorer_and_the_nodule_mode_weights(self):
        p = parser("train.json", "evaluate.json", "variants/nodule_mode_evaluate.json")
        self.assertTrue(p.get_parsed_content("ckpt_path").endswith("models/nodule_mode/model.pt"))
        transform = p.get_parsed_content("validate#key_metric#heldout_cpm#output_transform")
        self.assertIsInstance(transform.rescorer, CandidateRescorer)
        p["rescorer_model"] = ""  # collecting features for a fit: no model, scores kept
        p.parse()
        self.assertFalse(p.get_parsed_content("rescorer").fitted)


if __name__ == "__main__":
    unittest.main()
