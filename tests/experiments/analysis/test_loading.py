"""bundle.experiments.analysis.loading: the network with its weights and the preprocessing of bundle configs."""

from __future__ import annotations

import json
import shutil
import tempfile
import unittest
from pathlib import Path

import torch

from bundle.experiments.analysis.loading import (
    BUNDLE_ROOT,
    inference_parts,
    load_network,
    load_preprocessing,
    network_and_preprocessing,
)
from bundle.networks import GhostCAUNet

ROOT = Path(__file__).resolve().parents[3]
NETWORK = {"_target_": "bundle.networks.GhostCAUNet", "features": [4, 8, 8, 8]}


class TestLoading(unittest.TestCase):
    def setUp(self):
        self.root = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, self.root, ignore_errors=True)
        (self.root / "configs").mkdir()
        (self.root / "models").mkdir()
        config = {"network_def": NETWORK, "image_preprocessing": "$lambda d: ('image', d)",
                  "preprocessing": "$lambda d: ('both', d)", "roi_size": [16, 16, 8]}
        (self.root / "configs" / "inference.json").write_text(json.dumps(config))
        torch.manual_seed(0)
        self.state = GhostCAUNet(features=(4, 8, 8, 8)).state_dict()
        torch.save(self.state, self.root / "models" / "model.pt")

    def test_bundle_root(self):
        self.assertEqual(BUNDLE_ROOT, ROOT)

    def test_network_with_its_weights(self):
        net = load_network(self.root / "configs" / "inference.json", self.root / "models" / "model.pt")
        self.assertFalse(net.training)
        self.assertTrue(all(torch.equal(v, net.state_dict()[k]) for k, v in self.state.items()))
        torch.save({"model": self.state}, self.root / "models" / "wrapped.pt")  # a training checkpoint
        load_network(self.root / "configs" / "inference.json", self.root / "models" / "wrapped.pt")

    def test_ill_arg(self):
        with self.assertRaisesRegex(ValueError, "ckpt must be an existing weights file"):
            load_network(self.root / "configs" / "inference.json", self.root / "models" / "none.pt")
        torch.save(GhostCAUNet(features=(4, 8, 8, 16)).state_dict(), self.root / "models" / "other.pt")
        with self.assertRaisesRegex(ValueError, "other.pt: weights do not fit network_def of"):
            load_network(self.root / "configs" / "inference.json", self.root / "models" / "other.pt")

    def test_paths_relative_to_the_bundle_root(self):
        self.assertEqual(load_preprocessing(self.root / "configs" / "inference.json")(1), ("both", 1))
        threads = torch.get_num_threads()
        self.addCleanup(torch.set_num_threads, threads)
        net, pre = network_and_preprocessing(key="image_preprocessing", threads=1, bundle_root=self.root,
                                             preprocessing_config="configs/inference.json")
        self.assertEqual((type(net).__name__, pre(2), torch.get_num_threads()), ("GhostCAUNet", ("image", 2), 1))
        net, pre, roi = inference_parts(bundle_root=self.root)
        self.assertEqual((pre(3), roi), (("image", 3), [16, 16, 8]))


if __name__ == "__main__":
    unittest.main()
