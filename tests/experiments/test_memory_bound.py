"""bundle.experiments.memory_bound: the synthetic CT, the child's peak and the result, with a stand-in inference
config (the real one takes minutes on a large volume)."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

import numpy as np

from bundle.experiments.memory_bound import BUNDLE_ROOT, measure_memory_bound, synthetic_ct, write_memory_bound

ROOT = Path(__file__).resolve().parents[2]
KEYS = {"shape", "spacing_mm", "input_mib", "resampled_shape", "resampled_float32_mib", "peak_rss_mib",
        "peak_sampled_mib", "complete", "peak_timeline_s_mib", "seconds", "returncode", "threads", "command"}


class TestSyntheticCT(unittest.TestCase):
    def test_volume(self):
        volume = synthetic_ct((40, 32, 12))
        self.assertEqual((volume.shape, volume.dtype), ((40, 32, 12), np.int16))
        self.assertLess(volume[0, 0].mean(), -900)  # air in the corner
        self.assertTrue(-1000 < volume[12, 16].mean() < -700)  # a lung
        np.testing.assert_array_equal(volume, synthetic_ct((40, 32, 12)))  # seeded


class TestMeasure(unittest.TestCase):
    def test_bundle_root(self):
        self.assertEqual(BUNDLE_ROOT, ROOT)

    def test_imports_no_torch(self):
        """Whatever this process holds when it starts the child counts in the child's ru_maxrss."""
        code = "import sys, scripts.memory_bound; print('torch' in sys.modules)"
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
        self.assertEqual(done.stdout.strip(), "False")

    def test_a_child_stopped_at_the_limit_is_incomplete(self):
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "configs").mkdir()
            (Path(tmp) / "configs" / "inference.json").write_text("{}")  # never read: the child is stopped first
            result = measure_memory_bound((16, 16, 8), (0.8, 0.8, 5.0), 1, ["--routing", False], timeout_s=0.0,
                                          poll_s=0.01, bundle_root=tmp)
            self.assertTrue(KEYS <= set(result), result)
            self.assertFalse(result["complete"])
            self.assertNotEqual(result["returncode"], 0)
            self.assertIn("stderr_tail", result)
            self.assertEqual(result["resampled_shape"], [13, 13, 16])
            self.assertTrue(result["command"].startswith("-m monai.bundle run --config_file configs/inference.json"))
            self.assertTrue(result["command"].endswith("--num_threads 1 --routing False"))
            write_memory_bound(Path(tmp) / "bound.json", result)
            self.assertEqual(json.loads((Path(tmp) / "bound.json").read_text()), json.loads(json.dumps(result)))


if __name__ == "__main__":
    unittest.main()
