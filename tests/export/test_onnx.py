"""ONNX export of the three graphs, round-tripped through the ONNX Runtime network (tiny network, CPU)."""

from __future__ import annotations

import unittest
from pathlib import Path
from tempfile import TemporaryDirectory

import torch
from monai.utils import optional_import

from bundle.export import export_onnx
from bundle.export.quantize import quantize_onnx_int8
from bundle.networks.runtime import OnnxRuntimeNetwork, onnx_variant_paths
from bundle.inferers import RoutedSlidingWindowInferer, SuspicionRouter
from bundle.networks import GhostCAUNet

_, has_ort = optional_import("onnxruntime")
_, has_onnxscript = optional_import("onnxscript")

ROI = (32, 32, 16)


def _tiny_net() -> GhostCAUNet:
    """The shipped layout in small: strided stem, full-resolution refinement, learned screen."""
    torch.manual_seed(0)
    return GhostCAUNet(spatial_dims=3, in_channels=1, out_channels=2, features=(4, 8, 8, 16), stem_stride=(2, 2, 1),
                       refine_channels=4, learned_screen=True).eval()


@unittest.skipUnless(has_ort and has_onnxscript, "onnxruntime/onnxscript not installed (requirements-ecosystem.txt)")
class TestOnnxExport(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.tmp = TemporaryDirectory()
        cls.net = _tiny_net()
        cls.path = Path(cls.tmp.name) / "model.onnx"
        cls.diffs = export_onnx(cls.net, cls.path, ROI)
        cls.ort_net = OnnxRuntimeNetwork(cls.path, num_threads=1)

    @classmethod
    def tearDownClass(cls) -> None:
        cls.tmp.cleanup()

    def test_files_and_reported_agreement(self):
        for variant, path in onnx_variant_paths(self.path).items():
            self.assertTrue(path.is_file(), variant)
            self.assertLessEqual(self.diffs[variant], 1e-4)

    def test_int8_graphs(self):
        """INT8 siblings of all three graphs, calibrated on windows, run by the same runtime network and stay close
        to the float graphs (quantisation noise, not another function)."""
        torch.manual_seed(2)
        windows = torch.rand(6, 1, *ROI)
        int8_path = Path(self.tmp.name) / "model_int8.onnx"
        written = quantize_onnx_int8(self.path, int8_path, windows)
        self.assertEqual(set(written), set(onnx_variant_paths(self.path)))
        int8_net = OnnxRuntimeNetwork(int8_path, num_threads=1)
        x = torch.rand(2, 1, *ROI)
        ref, got = self.ort_net(x), int8_net(x)
        self.assertEqual(got.shape, ref.shape)
        self.assertGreater(float(torch.corrcoef(torch.stack([got.flatten(), ref.flatten()]))[0, 1]), 0.9)
        self.assertEqual(tuple(int8_net.screen(x).shape), (2,))
        with self.assertRaises(FileNotFoundError):
            quantize_onnx_int8(Path(self.tmp.name) / "absent.onnx", int8_path, windows)

    def test_graphs_agree_with_torch_any_batch(self):
        torch.manual_seed(1)
        for batch in (1, 5):
            x = torch.rand(batch, 1, *ROI)
            with torch.no_grad():
                for enhancement in ("full", "basic"):
                    ref = self.net(x, enhancement=enhancement)
                    got = self.ort_net(x, enhancement=enhancement)
                    self.assertEqual(got.shape, ref.shape)
                    self.assertLessEqual(float((got - ref).abs().max()), 1e-4)
                self.assertLessEqual(float((self.ort_net.screen(x) - self.net.screen(x)).abs().max()), 1e-4)

    def test_routed_inferer_same_tiers_and_output(self):
        x = torch.rand(1, 1, 24, 20, 40)
        outs, tiers = [], []
        for network in (self.net, self.ort_net):
            inferer = RoutedSlidingWindowInferer(ROI, sw_batch_size=2, router=SuspicionRouter(0.6, 0.3))
            with torch.no_grad():
                outs.append(inferer(x, network))
            tiers.append([w["tier"] for w in inferer.last_stats["windows"]])
        self.assertEqual(tiers[0], tiers[1])
        self.assertLessEqual(float((outs[0] - outs[1]).abs().max()), 1e-4)

    def test_missing_graphs(self):
        with TemporaryDirectory() as tmp:
            full = Path(tmp) / "m.onnx"
            full.write_bytes(self.path.read_bytes())  # only the full graph
            net = OnnxRuntimeNetwork(full)
            self.assertIsNone(net.screen)  # the routed inferer then runs with routing off
            with self.assertRaisesRegex(ValueError, "m_basic.onnx"):
                net(torch.rand(1, 1, *ROI), enhancement="basic")

    def test_ill_arg(self):
        with self.assertRaisesRegex(ValueError, "does not exist"):
            OnnxRuntimeNetwork(Path(self.tmp.name) / "absent.onnx")
        with self.assertRaisesRegex(ValueError, "enhancement"):
            self.ort_net(torch.rand(1, 1, *ROI), enhancement="fast")
        with self.assertRaisesRegex(ValueError, "variants"):
            export_onnx(self.net, Path(self.tmp.name) / "x.onnx", ROI, variants=("half",))


if __name__ == "__main__":
    unittest.main()
