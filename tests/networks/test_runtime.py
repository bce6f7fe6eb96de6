"""The network backends (bundle.networks.runtime); the ONNX Runtime network on exported graphs is tested with the
export in tests/export/test_onnx.py."""

from __future__ import annotations

import unittest
from pathlib import Path
from tempfile import TemporaryDirectory

import torch

from bundle.networks.runtime import OnnxRuntimeNetwork, onnx_variant_paths, select_network


class TestOnnxVariantPaths(unittest.TestCase):
    def test_siblings_of_the_full_graph(self):
        paths = onnx_variant_paths("models/model.onnx")
        self.assertEqual({k: p.as_posix() for k, p in paths.items()},
                         {"full": "models/model.onnx", "basic": "models/model_basic.onnx",
                          "screen": "models/model_screen.onnx"})  # fmt: skip

    def test_missing_file_says_how_to_export(self):
        with TemporaryDirectory() as tmp, self.assertRaisesRegex(ValueError, "does not exist; export it first"):
            OnnxRuntimeNetwork(Path(tmp) / "absent.onnx")


class TestSelectNetwork(unittest.TestCase):
    def test_select(self):
        a, b = torch.nn.Identity(), torch.nn.Identity()
        self.assertIs(select_network("torch", a, b), a)
        self.assertIs(select_network("onnxruntime", a, b), b)
        with self.assertRaisesRegex(ValueError, "backend must be one of"):
            select_network("tensorrt", a, b)
        with self.assertRaisesRegex(ValueError, "not built"):
            select_network("onnxruntime", a, None)


if __name__ == "__main__":
    unittest.main()
