"""Building the bundle's network from its config with its weights, and exporting it (bundle.export.bundle_export)."""

from __future__ import annotations

import json
import unittest
from pathlib import Path
from tempfile import TemporaryDirectory

import torch
from monai.utils import optional_import

from bundle.export.bundle_export import export_bundle_onnx, load_bundle_network
from bundle.networks import GhostCAUNet

_, has_ort = optional_import("onnxruntime")
_, has_onnxscript = optional_import("onnxscript")

NET = {"_target_": "bundle.networks.GhostCAUNet", "spatial_dims": 3, "in_channels": 1, "out_channels": 2,
       "features": [4, 8, 8, 16]}  # fmt: skip


class TestBundleExport(unittest.TestCase):
    def setUp(self) -> None:
        self.tmp = TemporaryDirectory()
        self.root = Path(self.tmp.name)
        (self.root / "configs").mkdir()
        (self.root / "models").mkdir()
        self.config = self.root / "configs" / "inference.json"
        self.config.write_text(json.dumps({"roi_size": [16, 16, 32], "network_def": NET}))
        torch.manual_seed(0)
        self.net = GhostCAUNet(features=(4, 8, 8, 16))
        torch.save({"model": self.net.state_dict()}, self.root / "models" / "model.pt")

    def tearDown(self) -> None:
        self.tmp.cleanup()

    def test_load_builds_the_config_network_with_the_weights(self):
        network, parser = load_bundle_network(self.config, bundle_root=self.root)
        self.assertFalse(network.training)
        self.assertEqual(parser["bundle_root"], str(self.root))
        for name, tensor in self.net.state_dict().items():
            torch.testing.assert_close(network.state_dict()[name], tensor)

    def test_load_refuses_missing_files_and_other_weights(self):
        with self.assertRaisesRegex(ValueError, "does not exist"):
            load_bundle_network(self.root / "configs" / "absent.json", bundle_root=self.root)
        with self.assertRaisesRegex(ValueError, "does not exist"):
            load_bundle_network(self.config, self.root / "models" / "absent.pt", bundle_root=self.root)
        other = self.root / "models" / "other.pt"
        torch.save(GhostCAUNet(features=(4, 8, 8, 32)).state_dict(), other)  # another bottleneck width
        with self.assertRaisesRegex(ValueError, "strict=True"):
            load_bundle_network(self.config, other, bundle_root=self.root)

    @unittest.skipUnless(has_ort and has_onnxscript, "onnxruntime/onnxscript not installed (requirements-ecosystem.txt)")
    def test_export_writes_the_graph_at_the_config_window(self):
        diffs = export_bundle_onnx(self.config, bundle_root=self.root, variants=("full",))
        self.assertEqual(set(diffs), {"full"})
        self.assertLessEqual(diffs["full"], 1e-4)
        self.assertTrue((self.root / "models" / "model.onnx").is_file())


if __name__ == "__main__":
    unittest.main()
