"""bundle.experiments.benchmark_report: the report of a benchmark run (tables, files) and the run itself with the
measurements stubbed (a real run takes minutes per row)."""

from __future__ import annotations

import json
import os
import tempfile
import unittest
from pathlib import Path
from unittest import mock

from bundle.experiments import benchmark_report
from bundle.experiments.benchmark_report import (
    BUNDLE_ROOT,
    add_agreement,
    benchmark_markdown,
    cpu_name,
    run_benchmark,
    write_report,
)

ROOT = Path(__file__).resolve().parents[2]
ROWS = [
    {"kind": "slice", "network": "GhostCAUNet", "label": "plain", "backend": "torch", "params": 12345,
     "min_s": 0.123456, "median_s": 1.5, "cpu_s": 2.0, "peak_rss_mb": 512.25, "added_peak_mb": None,
     "row": "slice/GhostCAUNet/plain"},
    {"kind": "volume", "network": "GhostCAUNet", "label": "routed", "backend": "onnxruntime", "params": 9,
     "min_s": 10.0, "median_s": 11.0, "cpu_s": 20.0, "windows": {"high": 1, "medium": 2, "low": 3, "gated": 4},
     "skipped_fraction": 0.5, "saved_vs_plain": 0.3333, "torch_over_this": 1.6, "components": 5,
     "dice_vs_torch": 0.98765, "max_abs_vs_torch": 0.25, "peak_rss_mb": 1000.0, "added_peak_mb": 3.0},
    {"kind": "detector", "network": "retinanet_resnet10", "params": 2072469, "min_s": 3.0, "median_s": 3.5,
     "cpu_s": 6.0, "peak_rss_mb": 800.0, "added_peak_mb": 100.0},
    {"kind": "end_to_end", "routing": True, "backend": "torch", "min_s": 30.0, "median_s": 31.0, "case_seconds": 20.0,
     "windows": {"high": 5, "medium": 6, "low": 7}, "peak_rss_mb": 2000.0},
]  # fmt: skip
# benchmark_markdown(ROWS, [256, 256, 64], (64, 64, 32), "HEADER\n") as scripts/benchmark.py wrote it before the move
EXPECTED = (
    "HEADER\n"
    "\n"
    "### 512 x 512 slice, 2-D configuration (untrained weights; latency only)\n"
    "\n"
    "| network | path | backend | params | min s | median s | CPU s | torch s / this s | peak MB | added MB |\n"
    "|---|---|---|---|---|---|---|---|---|---|\n"
    "| GhostCAUNet | plain | torch | 12345 | 0.123 | 1.5 | 2 |  | 512 |  |\n"
    "\n"
    "\n"
    "### Sliding-window inference over the preprocessed chest CT [256, 256, 64] (1 x 1 x 2.5 mm), window [64, "
    "64, 32], overlap 0.25, Gaussian blending\n"
    "\n"
    "| network | path | backend | params | min s | median s | CPU s | windows high/medium/low/gated | skipped | "
    "time saved vs plain | torch s / this s | components p > 0.5 | Dice vs torch | max abs diff vs torch | peak MB | "
    "added MB |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    "| GhostCAUNet | routed | onnxruntime | 9 | 10 | 11 | 20 | 1/2/3/4 | 0.5 | 0.333 | 1.6 | 5 | 0.988 | 0.25 | 1e+03 | "
    "3 |\n"
    "\n"
    "\n"
    "### RetinaNet detectors over the same preprocessed chest CT [256, 256, 64], whole volume in one pass "
    "(untrained weights; latency only)\n"
    "\n"
    "| network | params | min s | median s | CPU s | peak MB | added MB |\n"
    "|---|---|---|---|---|---|---|\n"
    "| retinanet_resnet10 | 2072469 | 3 | 3.5 | 6 | 800 | 100 |\n"
    "\n"
    "\n"
    "### End to end: `python -m monai.bundle run --config_file configs/inference.json` on the embedded 512 x 512 "
    "x 64 chest CT (read DICOM, preprocess, lung mask, routed inference, lesions, outputs; includes Python "
    "start-up)\n"
    "\n"
    "| routing | backend | min s | median s | torch s / this s | case s (in-process) | windows high/medium/low | "
    "peak MB |\n"
    "|---|---|---|---|---|---|---|---|\n"
    "| True | torch | 30 | 31 |  | 20 | 5/6/7 | 2e+03 |\n"
)


class TestMarkdown(unittest.TestCase):
    def test_tables_of_every_kind(self):
        self.assertEqual(benchmark_markdown(ROWS, [256, 256, 64], (64, 64, 32), "HEADER\n"), EXPECTED)

    def test_kinds_not_measured_are_left_out(self):
        md = benchmark_markdown(ROWS[:1], None, (64, 64, 32), "H\n")
        self.assertEqual(md, EXPECTED.replace("HEADER", "H").split("\n\n\n### Sliding")[0] + "\n")

    def test_cpu_name(self):
        self.assertTrue(cpu_name())


class TestAgreement(unittest.TestCase):
    def test_onnx_rows_against_their_torch_row(self):
        import torch

        reference = torch.zeros(8, 8, 8)
        reference[1:3, 1:3, 1:3] = 0.9  # two components of 8 voxels each
        reference[5:7, 5:7, 5:7] = 0.8
        int8 = reference.clone()
        int8[5:7, 5:7, 5:7] = 0.3  # the INT8 graph loses the second component
        with tempfile.TemporaryDirectory() as tmp:
            rows = []
            for name, prob in (("plain", reference), ("plain, onnxruntime", reference + 0.01),
                               ("plain, onnxruntime int8", int8)):  # fmt: skip
                path = Path(tmp) / f"{len(rows)}.pt"
                torch.save(prob.to(torch.float16), path)
                rows.append({"row": f"volume/GhostCAUNet/{name}", "output_path": str(path)})
            rows.append({"row": "volume/UNet/plain"})  # no map: left alone
            add_agreement(rows)
        self.assertEqual([r.get("components") for r in rows], [2, 2, 1, None])
        self.assertNotIn("dice_vs_torch", rows[0])
        self.assertEqual(rows[1]["dice_vs_torch"], 1.0)
        self.assertAlmostEqual(rows[1]["max_abs_vs_torch"], 0.01, places=3)
        self.assertAlmostEqual(rows[2]["dice_vs_torch"], 2 * 8 / (8 + 16))
        self.assertAlmostEqual(rows[2]["max_abs_vs_torch"], 0.5, places=3)


class TestRun(unittest.TestCase):
    def test_bundle_root(self):
        self.assertEqual(BUNDLE_ROOT, ROOT)

    def test_list_rows(self):
        names = run_benchmark(list_rows=True).splitlines()
        self.assertIn("volume/GhostCAUNet/plain, onnxruntime", names)
        self.assertEqual(len(names), len(set(names)))

    def test_run_writes_the_report_after_each_row(self):
        def fake_worker(task, root):
            self.assertEqual(Path(root), Path(tmp))
            return {**task, "min_s": 2.0 if task["backend"] == "torch" else 1.0, "median_s": 2.0}

        with tempfile.TemporaryDirectory() as tmp, \
                mock.patch.object(benchmark_report, "run_worker", side_effect=fake_worker) as worker, \
                mock.patch.object(benchmark_report, "export_benchmark_onnx") as export, \
                mock.patch.object(benchmark_report, "prepare_volume") as prepare:
            path = run_benchmark(output_dir=str(Path(tmp) / "out"), rows="end_to_end/GhostCAUNet/routing True*",
                                 command="python -m scripts.benchmark --rows x", bundle_root=tmp)
            self.assertEqual(path, str(Path(tmp) / "out" / "benchmark.md"))
            self.assertEqual(worker.call_count, 2)  # torch and onnxruntime
            prepare.assert_not_called()  # no volume row
            self.assertEqual(export.call_args.args[:2], (Path(tmp) / "runs" / "benchmark" / "onnx" / "model.onnx", 3))
            md = (Path(tmp) / "out" / "benchmark.md").read_text()
            self.assertTrue(md.startswith("Command: `python -m scripts.benchmark --rows x`  \nMachine: "))
            self.assertIn("| True | onnxruntime | 1 | 2 | 2 |", md)  # torch s / this s of the ONNX Runtime row
            report = json.loads((Path(tmp) / "out" / "benchmark.json").read_text())
            self.assertEqual([r["backend"] for r in report["end_to_end"]], ["torch", "onnxruntime"])
            self.assertEqual(report["end_to_end"][0]["bundle_root"], ".")  # no machine-specific paths
            with self.assertRaisesRegex(ValueError, "match no benchmark row"):
                run_benchmark(output_dir=str(Path(tmp) / "out"), rows=["nothing/*"], bundle_root=tmp)

    def test_onnx_export_is_reused_only_when_newer_than_the_weights(self):
        from bundle.networks.runtime import onnx_variant_paths

        with tempfile.TemporaryDirectory() as tmp:
            onnx, weights = Path(tmp) / "m.onnx", Path(tmp) / "w.pt"
            weights.write_bytes(b"w")
            self.assertFalse(benchmark_report._reusable(onnx, weights, True))  # nothing exported
            for path in onnx_variant_paths(onnx).values():
                path.write_bytes(b"g")
                os.utime(path, (weights.stat().st_mtime + 10,) * 2)
            self.assertTrue(benchmark_report._reusable(onnx, weights, True))
            self.assertFalse(benchmark_report._reusable(onnx, weights, False))
            os.utime(weights, (weights.stat().st_mtime + 20,) * 2)
            self.assertFalse(benchmark_report._reusable(onnx, weights, True))  # the weights changed since

    def test_write_report(self):
        with tempfile.TemporaryDirectory() as tmp:
            rows = [{**ROWS[3], "bundle_root": str(Path(tmp) / "b")}]
            write_report(Path(tmp), rows, None, (64, 64, 32), 2, "python -m scripts.benchmark", Path(tmp) / "b")
            written = json.loads((Path(tmp) / "benchmark.json").read_text())
            self.assertEqual(written["end_to_end"][0]["bundle_root"], ".")
            self.assertIn("torch threads = ONNX Runtime intra-op threads = 2", (Path(tmp) / "benchmark.md").read_text())


if __name__ == "__main__":
    unittest.main()
