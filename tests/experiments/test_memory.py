"""bundle.experiments.memory: /proc status lines and the peak-memory probe."""

from __future__ import annotations

import os
import subprocess
import sys
import unittest

import numpy as np

from bundle.experiments.memory import memory_probe, status_mb

MEMORY = {"peak_rss_mb", "added_peak_mb"}
LINUX = os.path.exists("/proc/self/status")


class TestStatus(unittest.TestCase):
    @unittest.skipUnless(LINUX, "reads /proc")
    def test_this_and_another_process(self):
        rss, peak = status_mb("VmRSS"), status_mb("VmHWM")
        self.assertGreater(rss, 0.0)
        self.assertGreaterEqual(peak, rss)
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
        try:
            self.assertGreater(status_mb("VmHWM", child.pid), 0.0)
        finally:
            child.kill()
            child.wait()
        self.assertIsNone(status_mb("VmHWM", child.pid))  # gone
        self.assertIsNone(status_mb("NoSuchField"))


class TestMemoryProbe(unittest.TestCase):
    def test_memory_probe_sees_an_allocation(self):
        stop = memory_probe()
        block = np.ones(64 * 2**20 // 4, np.float32)  # 64 MB, touched
        block += 1
        result = stop()
        self.assertEqual(set(result), MEMORY)
        self.assertGreater(result["peak_rss_mb"], 0.0)
        if result["added_peak_mb"] is not None:  # Linux: the peak was reset at the probe's start
            self.assertGreater(result["added_peak_mb"], 50.0)
            self.assertLess(result["added_peak_mb"], result["peak_rss_mb"])


if __name__ == "__main__":
    unittest.main()
