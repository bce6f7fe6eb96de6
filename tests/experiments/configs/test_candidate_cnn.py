"""bundle/experiments/configs/candidate_cnn.json (on configs/inference.json) and candidate_cnn_evaluate.json (on
configs/train.json + configs/evaluate.json), issue #21: the CNN candidate classifier becomes the second stage."""

from __future__ import annotations

import tempfile
import unittest
from pathlib import Path

from monai.bundle import ConfigParser

from bundle.engines.candidate_classifier import CandidateClassifier, save_candidate_net
from bundle.networks.nets.candidate_net import CandidateNet

ROOT = Path(__file__).resolve().parents[3]
LAYERS = ROOT / "bundle" / "experiments" / "configs"


class TestCandidateCnnLayers(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.model = str(Path(self.tmp.name) / "candidate_net.pt")
        save_candidate_net(CandidateNet(channels=(4, 8, 8)), {"channels": [4, 8, 8]}, self.model)

    def tearDown(self):
        self.tmp.cleanup()

    def test_inference_layer(self):
        parser = ConfigParser()
        parser.read_config([str(ROOT / "configs" / "inference.json"), str(LAYERS / "candidate_cnn.json")])
        self.assertIsNone(parser.get_parsed_content("rescorer"))  # no --candidate_model: no second stage
        parser = ConfigParser()
        parser.read_config([str(ROOT / "configs" / "inference.json"), str(LAYERS / "candidate_cnn.json")])
        parser["candidate_model"] = self.model
        self.assertIsInstance(parser.get_parsed_content("rescorer"), CandidateClassifier)
        # with a second stage the first one keeps candidates down to candidate_threshold
        self.assertEqual(parser.get_parsed_content("lesion_kwargs")["threshold"],
                         parser.get_parsed_content("candidate_threshold"))

    def test_evaluate_layer(self):
        parser = ConfigParser()
        parser.read_config([str(ROOT / "configs" / "train.json"), str(ROOT / "configs" / "evaluate.json"),
                            str(LAYERS / "candidate_cnn_evaluate.json")])
        parser["candidate_model"] = self.model
        transform = parser.get_parsed_content("validate#key_metric#heldout_cpm#output_transform")
        self.assertIsInstance(transform.rescorer, CandidateClassifier)


if __name__ == "__main__":
    unittest.main()
