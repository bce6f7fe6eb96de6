"""bundle.experiments.benchmark_plan: the benchmark's named rows, their selection by pattern and the relative
columns."""

from __future__ import annotations

import unittest
from pathlib import Path

from bundle.experiments.benchmark_plan import add_comparisons, plan_tasks, select_rows

ROOT = Path(__file__).resolve().parents[2]


class TestRows(unittest.TestCase):
    def setUp(self):
        self.tasks = plan_tasks(2, 3, ROOT, "v.pt", "m.pt", "w.pt", (64, 64, 32), "s.onnx", "model.onnx")

    def test_plan(self):
        names = [t["row"] for t in self.tasks]
        self.assertEqual(len(names), len(set(names)))
        for row in ("slice/SwinUNETR/plain", "volume/SwinUNETR/plain", "detector/retinanet_resnet50/whole volume",
                    "detector/retinanet_resnet10/whole volume",
                    "slice/GhostCAUNet/plain, onnxruntime", "volume/GhostCAUNet/plain, onnxruntime",
                    "volume/GhostCAUNet/routed + lung-mask gate, onnxruntime", "volume/GhostCAUNet/plain",
                    "window/GhostCAUNet 3D, shipped (configs/inference.json)/BN folded",
                    "window/GhostCAUNet 3D, release 0.6.0 layout (class defaults)/BN folded"):
            self.assertIn(row, names)
        for task in self.tasks:
            self.assertEqual(task["threads"], 2)
            if task["backend"] == "onnxruntime":
                self.assertFalse(task.get("fold_batchnorm"))
                expected = "s.onnx" if task["kind"] == "slice" else (
                    "model_int8.onnx" if task["row"].endswith("onnxruntime int8") else "model.onnx")
                self.assertEqual(task["onnx_path"], expected)
        torch_gate, ort_gate = (
            next(t for t in self.tasks if t["row"] == "volume/GhostCAUNet/routed + lung-mask gate" + suffix)
            for suffix in ("", ", onnxruntime")
        )
        int8_gate = next(t for t in self.tasks if t["row"] == "volume/GhostCAUNet/routed + lung-mask gate, onnxruntime int8")
        self.assertEqual(int8_gate["mask"], torch_gate["mask"])
        for key in ("routing", "mask", "weights", "roi_size", "repeats", "volume"):
            self.assertEqual(torch_gate[key], ort_gate[key], key)  # same measurement, other backend

    def test_release_rows(self):
        """With release 0.6.0's weights its network's rows sit before the current ones, each with its own weights."""
        self.assertFalse(any(t["row"].startswith("volume/GhostCAUNet-0.6.0") for t in self.tasks))
        tasks = plan_tasks(2, 3, ROOT, "v.pt", "m.pt", "w.pt", (64, 64, 32), "s.onnx", "model.onnx",
                           baseline_weights="old.pt")
        rows = [t["row"] for t in select_rows(tasks, ["volume/GhostCAUNet*"])]
        self.assertEqual(rows[:3], ["volume/GhostCAUNet-0.6.0/plain", "volume/GhostCAUNet-0.6.0/routed + lung-mask gate",
                                    "volume/GhostCAUNet/plain"])
        weights = {t["row"]: t["weights"] for t in tasks if t["kind"] == "volume" and "GhostCAUNet" in t["row"]}
        self.assertEqual(weights["volume/GhostCAUNet-0.6.0/plain"], "old.pt")
        self.assertEqual(weights["volume/GhostCAUNet/plain"], "w.pt")
        measured = [{**next(t for t in tasks if t["row"] == r), "min_s": s}
                    for r, s in (("volume/GhostCAUNet-0.6.0/plain", 10.0),
                                 ("volume/GhostCAUNet-0.6.0/routed + lung-mask gate", 8.0))]
        add_comparisons(measured)
        self.assertAlmostEqual(measured[1]["saved_vs_plain"], 0.2)  # against its own network's plain row
        tasks = plan_tasks(2, 3, ROOT, "v.pt", "m.pt", "w.pt", (64, 64, 32), "s.onnx", "model.onnx",
                           light_weights="light.pt")
        light = [t for t in tasks if t["network"] == "GhostCAUNet-light"]
        self.assertEqual([t["label"] for t in light], ["plain", "routed + lung-mask gate"])
        self.assertEqual({t["weights"] for t in light}, {"light.pt"})

    def test_select(self):
        chosen = select_rows(self.tasks, ["volume/GhostCAUNet/plain*", "*/GhostCAUNet/routed + lung-mask gate"])
        self.assertEqual([t["row"] for t in chosen], [
            "volume/GhostCAUNet/plain", "volume/GhostCAUNet/plain, BN folded", "volume/GhostCAUNet/plain, onnxruntime",
            "volume/GhostCAUNet/plain, onnxruntime int8", "volume/GhostCAUNet/routed + lung-mask gate",
        ])  # fmt: skip
        chosen = select_rows(self.tasks, ["slice/UNet/plain", "*/GhostCAUNet/plain", "volume/*"])  # in pattern order
        self.assertEqual([t["row"] for t in chosen[:3]],
                         ["slice/UNet/plain", "slice/GhostCAUNet/plain", "volume/GhostCAUNet/plain"])
        self.assertEqual(len(chosen), len({t["row"] for t in chosen}))  # each row once
        self.assertEqual(len(select_rows(self.tasks, None)), len(self.tasks))
        self.assertEqual([t["row"] for t in select_rows(self.tasks, "slice/UNet/*")], ["slice/UNet/plain"])
        with self.assertRaisesRegex(ValueError, r"rows \['volume/ResNet\*'\] match no benchmark row"):
            select_rows(self.tasks, ["volume/GhostCAUNet/plain", "volume/ResNet*"])

    def test_comparisons(self):
        rows = [
            {"row": "volume/GhostCAUNet/plain", "kind": "volume", "network": "GhostCAUNet", "min_s": 10.0},
            {"row": "volume/GhostCAUNet/routed + lung-mask gate", "kind": "volume", "network": "GhostCAUNet",
             "min_s": 4.0},
            {"row": "volume/GhostCAUNet/plain, onnxruntime", "kind": "volume", "network": "GhostCAUNet",
             "min_s": 5.0, "backend": "onnxruntime"},
            {"row": "volume/GhostCAUNet/routed + lung-mask gate, onnxruntime", "kind": "volume",
             "network": "GhostCAUNet", "min_s": 2.5, "backend": "onnxruntime"},
            {"row": "slice/GhostCAUNet/plain, onnxruntime", "kind": "slice", "network": "GhostCAUNet", "min_s": 1.0,
             "backend": "onnxruntime"},  # its torch row was not run
            {"row": "volume/GhostCAUNet/plain, onnxruntime int8", "kind": "volume", "network": "GhostCAUNet",
             "min_s": 4.0, "backend": "onnxruntime"},
            {"row": "volume/GhostCAUNet/routed + lung-mask gate, onnxruntime int8", "kind": "volume",
             "network": "GhostCAUNet", "min_s": 1.0, "backend": "onnxruntime"},
        ]  # fmt: skip
        add_comparisons(rows)
        self.assertAlmostEqual(rows[1]["saved_vs_plain"], 0.6)
        self.assertAlmostEqual(rows[3]["saved_vs_plain"], 0.5)  # against the plain row of its own backend
        self.assertAlmostEqual(rows[2]["torch_over_this"], 2.0)
        self.assertAlmostEqual(rows[3]["torch_over_this"], 1.6)
        self.assertNotIn("torch_over_this", rows[0])
        self.assertNotIn("torch_over_this", rows[4])
        # INT8 rows: against the INT8 plain row, and against PyTorch on the same path
        self.assertAlmostEqual(rows[6]["saved_vs_plain"], 0.75)
        self.assertAlmostEqual(rows[5]["torch_over_this"], 2.5)
        self.assertAlmostEqual(rows[6]["torch_over_this"], 4.0)


if __name__ == "__main__":
    unittest.main()
