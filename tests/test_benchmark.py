"""bundle.benchmark at tiny sizes: the structure of each measurement, never its timings."""

from __future__ import annotations

import tempfile
import unittest
from pathlib import Path

import torch

from bundle.benchmark import build_network, markdown_table, memory_probe, run_worker, time_call, worker

ROOT = Path(__file__).resolve().parents[1]
TIMES = {"min_s", "median_s"}
MEMORY = {"peak_rss_mb", "added_peak_mb"}


class TestHelpers(unittest.TestCase):
    def test_time_call(self):
        calls = []
        result = time_call(lambda: calls.append(1), repeats=3, warmup=2)
        self.assertEqual(len(calls), 5)
        self.assertEqual(set(result), TIMES)
        self.assertLessEqual(result["min_s"], result["median_s"])

    def test_memory_probe_sees_an_allocation(self):
        stop = memory_probe()
        block = torch.ones(64 * 2**20 // 4)  # 64 MB, touched
        block += 1
        result = stop()
        self.assertEqual(set(result), MEMORY)
        self.assertGreater(result["peak_rss_mb"], 0.0)
        if result["added_peak_mb"] is not None:  # Linux: the peak was reset at the probe's start
            self.assertGreater(result["added_peak_mb"], 50.0)
            self.assertLess(result["added_peak_mb"], result["peak_rss_mb"])

    def test_markdown_table(self):
        rows = [{"a": 0.123456, "b": {"high": 1, "medium": 2, "low": 3, "gated": 0}}, {"a": None, "b": "x"}]
        table = markdown_table(rows, [("a", "A"), ("b", "B")]).splitlines()
        self.assertEqual(table[0], "| A | B |")
        self.assertEqual(table[2], "| 0.123 | 1/2/3/0 |")
        self.assertEqual(table[3], "|  | x |")

    def test_build_network(self):
        self.assertEqual(type(build_network("GhostCAUNet", 2)).__name__, "GhostCAUNet")
        with self.assertRaisesRegex(ValueError, "name must be one of"):
            build_network("ResNet", 3)


class TestWorker(unittest.TestCase):
    def test_slice(self):
        for fold in (False, True):
            out = worker({"kind": "slice", "network": "GhostCAUNet", "threads": 1, "repeats": 1, "size": 32,
                          "fold_batchnorm": fold})
            self.assertTrue(TIMES | MEMORY | {"params"} <= set(out), out)
            self.assertGreater(out["params"], 0)

    def test_volume_with_gates(self):
        with tempfile.TemporaryDirectory() as tmp:
            volume = torch.zeros(1, 40, 20, 20)
            volume[:, :6] = 0.5  # tissue only for x < 6
            mask = torch.zeros(1, 40, 20, 20, dtype=torch.uint8)
            mask[:, :5] = 1
            torch.save(volume, Path(tmp) / "v.pt")
            torch.save(mask, Path(tmp) / "m.pt")
            base = {"kind": "volume", "network": "GhostCAUNet", "threads": 1, "repeats": 1,
                    "volume": str(Path(tmp) / "v.pt"), "roi_size": [32, 16, 16]}
            plain = worker({**base, "routing": False})
            masked = worker({**base, "routing": True, "mask": str(Path(tmp) / "m.pt")})
            tissue = worker({**base, "routing": True, "tissue_threshold": 0.15, "fold_batchnorm": False})
        for out in (plain, masked, tissue):
            self.assertTrue(TIMES | MEMORY | {"windows", "skipped_fraction", "volume_shape"} <= set(out), out)
            self.assertEqual(out["volume_shape"], [40, 20, 20])
            self.assertEqual(sum(out["windows"][t] for t in ("high", "medium", "low")), 8)  # 2 x 2 x 2 windows
        self.assertEqual((plain["windows"]["high"], plain["windows"]["gated"]), (8, 0))
        self.assertEqual(masked["windows"]["gated"], 4)  # the x windows [8, 40) hold no mask voxel
        self.assertGreaterEqual(masked["skipped_fraction"], 0.5)
        self.assertEqual(tissue["windows"]["gated"], 4)  # the x window [8, 40) holds tissue

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
