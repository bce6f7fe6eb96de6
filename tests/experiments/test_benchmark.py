"""bundle.experiments.benchmark at tiny sizes: the structure of each measurement, never its timings."""

from __future__ import annotations

import tempfile
import unittest
from pathlib import Path
from unittest import mock

import torch
from monai.utils import optional_import

from bundle.experiments.benchmark import (
    build_network,
    end_to_end_command,
    export_benchmark_onnx,
    run_worker,
    time_call,
    worker,
)
from bundle.networks import GhostCAUNet
from bundle.networks.runtime import onnx_variant_paths

onnx, has_onnx = optional_import("onnx")
_, has_ort = optional_import("onnxruntime")

ROOT = Path(__file__).resolve().parents[2]  # the bundle root (run_worker imports bundle from it)
TIMES = {"min_s", "median_s"}
MEMORY = {"peak_rss_mb", "added_peak_mb"}


def _write_stub_graphs(full: Path, spatial_dims: int) -> None:
    """Tiny hand-built graphs with the exported graphs' interface (input "image" (N, 1, *roi), dynamic N):
    full/basic = a 1x1 convolution to 2 channels, screen = the window's max (so empty windows score 0 -> LOW and
    windows holding 0.5 score 0.5 -> MEDIUM with thresholds 0.3 / 0.6). A real export takes minutes; these take ms.
    """
    from onnx import TensorProto, helper, numpy_helper

    import numpy as np

    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 1, *["s"] * spatial_dims])
    weight = numpy_helper.from_array(np.array([1.0, -1.0], np.float32).reshape(2, 1, *[1] * spatial_dims), "w")
    conv = helper.make_graph(
        [helper.make_node("Conv", ["image", "w"], ["pred"])], "conv", [image],
        [helper.make_tensor_value_info("pred", TensorProto.FLOAT, None)], [weight],
    )  # fmt: skip
    axes = numpy_helper.from_array(np.arange(1, 2 + spatial_dims, dtype=np.int64), "axes")
    screen = helper.make_graph(
        [helper.make_node("ReduceMax", ["image", "axes"], ["pred"], keepdims=0)], "screen", [image],
        [helper.make_tensor_value_info("pred", TensorProto.FLOAT, None)], [axes],
    )  # fmt: skip
    paths = onnx_variant_paths(full)
    for variant, graph in (("full", conv), ("basic", conv), ("screen", screen)):
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
        model.ir_version = 8
        onnx.save(model, str(paths[variant]))


class TestHelpers(unittest.TestCase):
    def test_time_call(self):
        calls = []
        result = time_call(lambda: calls.append(1), repeats=3, warmup=2)
        self.assertEqual(len(calls), 5)
        self.assertEqual(set(result), TIMES | {"cpu_s"})
        self.assertLessEqual(result["min_s"], result["median_s"])
        self.assertGreaterEqual(result["cpu_s"], 0.0)

    def test_build_network(self):
        self.assertEqual(type(build_network("GhostCAUNet", 2)).__name__, "GhostCAUNet")
        with torch.no_grad():
            self.assertEqual(tuple(build_network("SwinUNETR", 2)(torch.rand(1, 1, 64, 64)).shape), (1, 2, 64, 64))
        with self.assertRaisesRegex(ValueError, "name must be one of"):
            build_network("ResNet", 3)


class TestCommands(unittest.TestCase):
    def test_end_to_end_command(self):
        task = {"routing": True, "threads": 2}
        self.assertNotIn("--backend", end_to_end_command(task, "out"))
        cmd = end_to_end_command({**task, "backend": "onnxruntime", "onnx_path": "x/model.onnx"}, "out")
        self.assertEqual(cmd[-4:], ["--backend", "onnxruntime", "--onnx_path", "x/model.onnx"])
        with self.assertRaisesRegex(ValueError, "needs onnx_path"):
            end_to_end_command({**task, "backend": "onnxruntime"}, "out")
        with self.assertRaisesRegex(ValueError, "backend must be one of"):
            end_to_end_command({**task, "backend": "tensorrt"}, "out")

    def test_export_benchmark_onnx_arguments(self):
        with tempfile.TemporaryDirectory() as tmp:
            weights = Path(tmp) / "w.pt"
            torch.save(build_network("GhostCAUNet", 3).state_dict(), weights)
            with mock.patch("bundle.export.export_onnx", return_value={"full": 0.0}) as export:
                export_benchmark_onnx(Path(tmp) / "m.onnx", 3, (32, 16, 16), weights=str(weights))
            net, path, roi = export.call_args.args
            self.assertEqual((net.spatial_dims, path, roi), (3, Path(tmp) / "m.onnx", [32, 16, 16]))
            self.assertFalse(net.training)
            self.assertEqual(export.call_args.kwargs["variants"], ("full", "basic", "screen"))
            saved = torch.load(weights, weights_only=True)
            self.assertTrue(all(torch.equal(v, net.state_dict()[k]) for k, v in saved.items()))


class TestWorker(unittest.TestCase):
    def test_slice(self):
        for fold in (False, True):
            out = worker({"kind": "slice", "network": "GhostCAUNet", "threads": 1, "repeats": 1, "size": 32,
                          "fold_batchnorm": fold})
            self.assertTrue(TIMES | MEMORY | {"params"} <= set(out), out)
            self.assertGreater(out["params"], 0)

    def test_detector_whole_volume(self):
        with tempfile.TemporaryDirectory() as tmp:
            torch.save(torch.rand(1, 32, 32, 16), Path(tmp) / "v.pt")
            out = worker({"kind": "detector", "network": "retinanet_resnet10", "threads": 1, "repeats": 1,
                          "volume": str(Path(tmp) / "v.pt")})
        self.assertTrue(TIMES | MEMORY | {"params", "volume_shape"} <= set(out), out)
        self.assertEqual(out["volume_shape"], [32, 32, 16])
        self.assertEqual(out["params"], 2072469)

    def test_volume_with_gates(self):
        with tempfile.TemporaryDirectory() as tmp:
            volume = torch.zeros(1, 40, 40, 20)
            volume[:, :6] = 0.5  # tissue only for x < 6
            mask = torch.zeros(1, 40, 40, 20, dtype=torch.uint8)
            mask[:, :5] = 1
            torch.save(volume, Path(tmp) / "v.pt")
            torch.save(mask, Path(tmp) / "m.pt")
            base = {"kind": "volume", "network": "GhostCAUNet", "threads": 1, "repeats": 1,
                    "volume": str(Path(tmp) / "v.pt"), "roi_size": [32, 32, 16]}
            plain = worker({**base, "routing": False, "output_path": str(Path(tmp) / "maps" / "plain.pt")})
            prob = torch.load(Path(tmp) / "maps" / "plain.pt", weights_only=True)
            masked = worker({**base, "routing": True, "mask": str(Path(tmp) / "m.pt")})
            tissue = worker({**base, "routing": True, "tissue_threshold": 0.15, "fold_batchnorm": False})
        for out in (plain, masked, tissue):
            self.assertTrue(TIMES | MEMORY | {"windows", "skipped_fraction", "volume_shape"} <= set(out), out)
            self.assertEqual(out["volume_shape"], [40, 40, 20])
            self.assertEqual(sum(out["windows"][t] for t in ("high", "medium", "low")), 8)  # 2 x 2 x 2 windows
        self.assertEqual((plain["windows"]["high"], plain["windows"]["gated"]), (8, 0))
        self.assertEqual((prob.shape, prob.dtype), (torch.Size([40, 40, 20]), torch.float16))  # the foreground map
        self.assertTrue(bool(((prob >= 0) & (prob <= 1)).all()))
        self.assertEqual(masked["windows"]["gated"], 4)  # the x windows [8, 40) hold no mask voxel
        self.assertGreaterEqual(masked["skipped_fraction"], 0.5)
        self.assertEqual(tissue["windows"]["gated"], 4)  # the x window [8, 40) holds tissue

    def test_layouts(self):
        """The release and light networks are built with their own layouts, the shipped one from its config."""
        from bundle.experiments.benchmark import shipped_network_kwargs
        from bundle.experiments.model_stats import LIGHT_LAYOUT

        release, light = build_network("GhostCAUNet-0.6.0", 3), build_network("GhostCAUNet-light", 3)
        self.assertEqual(release.stem_stride, (1, 1, 1))
        self.assertEqual(list(light.stem_stride), LIGHT_LAYOUT["stem_stride"])
        self.assertEqual(light.features, tuple(LIGHT_LAYOUT["features"]))
        shipped = shipped_network_kwargs(3)
        self.assertEqual(build_network("GhostCAUNet", 3).features, tuple(shipped["features"]))

    def test_window(self):
        out = worker({"kind": "window", "network": "tiny", "threads": 1, "repeats": 1, "roi_size": [32, 32, 16],
                      "kwargs": {"features": [4, 8, 8, 16], "stem_stride": [2, 2, 1], "learned_screen": True}})
        self.assertTrue(TIMES <= set(out), out)
        self.assertAlmostEqual(out["ms_per_window"], 1000.0 * out["min_s"] / 4)
        self.assertGreater(out["screen_ms_per_window"], 0.0)
        self.assertEqual(out["params"], sum(p.numel() for p in GhostCAUNet(
            features=[4, 8, 8, 16], stem_stride=[2, 2, 1], learned_screen=True).parameters()))

    @unittest.skipUnless(has_onnx and has_ort, "onnx/onnxruntime not installed (requirements-ecosystem.txt)")
    def test_onnxruntime_slice_and_volume(self):
        with tempfile.TemporaryDirectory() as tmp:
            _write_stub_graphs(Path(tmp) / "s.onnx", 2)
            _write_stub_graphs(Path(tmp) / "v.onnx", 3)
            out = worker({"kind": "slice", "network": "GhostCAUNet", "threads": 1, "repeats": 1, "size": 32,
                          "backend": "onnxruntime", "onnx_path": str(Path(tmp) / "s.onnx")})
            self.assertTrue(TIMES | MEMORY | {"params"} <= set(out), out)
            self.assertEqual(out["params"], sum(p.numel() for p in build_network("GhostCAUNet", 2).parameters()))
            volume = torch.zeros(1, 40, 20, 20)
            volume[:, :6] = 0.5
            mask = torch.zeros(1, 40, 20, 20, dtype=torch.uint8)
            mask[:, :5] = 1
            torch.save(volume, Path(tmp) / "v.pt")
            torch.save(mask, Path(tmp) / "m.pt")
            base = {"kind": "volume", "network": "GhostCAUNet", "threads": 1, "repeats": 1, "routing": False,
                    "volume": str(Path(tmp) / "v.pt"), "roi_size": [32, 16, 16], "backend": "onnxruntime",
                    "onnx_path": str(Path(tmp) / "v.onnx")}  # fmt: skip
            plain = worker(base)
            routed = worker({**base, "routing": True, "mask": str(Path(tmp) / "m.pt")})
            screened = worker({**base, "routing": True})
        self.assertEqual(plain["windows"], {"high": 8, "medium": 0, "low": 0, "gated": 0})
        # the ONNX screen drives the router: the 4 windows x in [0, 32) hold 0.5 (MEDIUM), the rest is gated out
        self.assertEqual(routed["windows"], {"high": 0, "medium": 4, "low": 4, "gated": 4})
        self.assertEqual(screened["windows"], {"high": 0, "medium": 4, "low": 4, "gated": 0})  # scored 0, not gated

    def test_backend_ill_arg(self):
        base = {"kind": "slice", "network": "GhostCAUNet", "threads": 1, "repeats": 1, "size": 16}
        with self.assertRaisesRegex(ValueError, "backend must be one of"):
            worker({**base, "backend": "tensorrt"})
        with self.assertRaisesRegex(ValueError, "needs onnx_path"):
            worker({**base, "backend": "onnxruntime"})
        with self.assertRaisesRegex(ValueError, "fold_batchnorm applies to the torch backend only"):
            worker({**base, "backend": "onnxruntime", "onnx_path": "m.onnx", "fold_batchnorm": True})

    def test_unknown_kind(self):
        with self.assertRaisesRegex(ValueError, "unknown task kind"):
            worker({"kind": "train", "threads": 1})


class TestRunWorker(unittest.TestCase):
    def test_subprocess_slice(self):
        out = run_worker({"kind": "slice", "network": "UNet", "threads": 1, "repeats": 1, "size": 32}, ROOT)
        self.assertTrue(TIMES | MEMORY | {"params"} <= set(out), out)
        self.assertGreater(out["peak_rss_mb"], 0.0)

    def test_subprocess_failure_is_reported(self):
        with self.assertRaisesRegex(RuntimeError, "unknown task kind"):
            run_worker({"kind": "nothing", "threads": 1}, ROOT)


if __name__ == "__main__":
    unittest.main()
