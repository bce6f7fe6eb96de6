"""bundle.experiments.model_stats: parameter and FLOP counts, and the table docs/model_stats.md holds."""

from __future__ import annotations

import json
import tempfile
import unittest
from pathlib import Path

import torch

from bundle.experiments.model_stats import (
    MODEL_STATS_HEADER,
    count_flops,
    count_parameters,
    model_stats_markdown,
    model_stats_rows,
    LIGHT_LAYOUT,
    write_model_stats,
)

ROOT = Path(__file__).resolve().parents[2]


class TestCounts(unittest.TestCase):
    def test_linear(self):
        layer = torch.nn.Linear(3, 4)
        self.assertEqual(count_parameters(layer), 16)
        self.assertEqual(count_flops(lambda: layer(torch.zeros(2, 3))), 2 * 2 * 3 * 4)  # 2 * MAC

    def test_rows_and_table(self):
        rows = model_stats_rows((32, 32, 16), (32, 32), include_references=False)
        shipped, release = "GhostCAUNet 3D, shipped (configs/inference.json)", "GhostCAUNet 3D, release 0.6.0 layout (class defaults)"
        self.assertEqual([(r["model"], r["pass"]) for r in rows[:6]], [
            (shipped, "forward full"), (shipped, "forward basic"), (shipped, "screen"),
            (release, "forward full"), (release, "forward basic"), (release, "screen"),
        ])  # fmt: skip
        # the light layout is a fraction of release 0.6.0's FLOPs
        light = [r for r in rows if r["model"].startswith("light (")]
        self.assertEqual([r["pass"] for r in light], ["forward full", "forward basic", "screen"])
        self.assertLess(light[0]["gflops"], 0.5 * rows[3]["gflops"])
        self.assertEqual(rows[-1]["model"], "GhostCAUNet 2D (defaults)")
        self.assertEqual(rows[0]["rel"], 1.0)
        self.assertEqual(rows[0]["input"], "32x32x16")
        table = model_stats_markdown(rows)
        self.assertEqual(len(table.splitlines()), 2 + len(rows))
        self.assertTrue(table.splitlines()[2].startswith(f"| {shipped} | forward full | 32x32x16 |"))
        self.assertTrue(table.splitlines()[2].endswith("| 100.0 % |"))

    def test_light_layout_is_the_experiment_config(self):
        config = json.loads((ROOT / "bundle" / "experiments" / "configs" / "light_network.json").read_text())
        self.assertEqual({k.split("#")[1]: v for k, v in config.items() if k.startswith("network_def#")}, LIGHT_LAYOUT)

    def test_write(self):
        with tempfile.TemporaryDirectory() as tmp:
            write_model_stats(Path(tmp) / "stats.md", "| table |\n")
            self.assertEqual((Path(tmp) / "stats.md").read_text(), MODEL_STATS_HEADER + "| table |\n")
        # the committed page starts with the same header
        self.assertTrue((ROOT / "docs" / "model_stats.md").read_text().startswith(MODEL_STATS_HEADER))


if __name__ == "__main__":
    unittest.main()
