"""Smoke test of configs/multi_gpu_train.json: data-parallel training with torchrun, 2 CPU processes (gloo)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

import torch

from bundle.networks import GhostCAUNet
from tests.configs.test_workflows import write_cases

ROOT = Path(__file__).resolve().parents[2]
NPROC = 2
TIMEOUT_S = 600  # a hung collective must fail the test, not the CI job


class TestMultiGPUTrain(unittest.TestCase):
    def test_torchrun_two_cpu_processes(self):
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            entries = write_cases(tmp, 5)
            (tmp / "datalist.json").write_text(json.dumps({"training": entries[:4], "validation": entries[4:]}))
            os.makedirs(tmp / "models")
            # transfer learning under DDP: every rank loads the same weights into its wrapped network
            network_def = json.loads((ROOT / "configs" / "train.json").read_text())["network_def"]
            pretrained = GhostCAUNet(**{k: v for k, v in network_def.items() if k != "_target_"})
            torch.save({"model": pretrained.state_dict()}, tmp / "pretrained.pt")
            overrides = {
                "bundle_root": str(ROOT),
                "dataset_dir": str(tmp),
                "output_dir": str(tmp / "run"),
                "ckpt_dir": str(tmp / "models"),
                "epochs": 2,
                "val_interval": 1,
                "num_val_cases": 1,
                "batch_size": 1,
                "num_samples": 2,
                "patch_size": "[32,32,16]",
                "calibration_windows_per_case": 2,
                "pretrained_ckpt": str(tmp / "pretrained.pt"),
            }
            cmd = [
                sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes=1",
                f"--nproc_per_node={NPROC}", "-m", "monai.bundle", "run",
                "--config_file", "['configs/train.json','configs/multi_gpu_train.json']",
                "--meta_file", "configs/metadata.json", "--logging_file", "configs/logging.conf",
            ]  # fmt: skip
            for key, value in overrides.items():
                cmd += [f"--{key}", str(value)]
            # one thread per process: the 2 processes share the CI machine's cores
            env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
            proc = subprocess.run(
                cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT_S, check=False
            )
            log = proc.stdout + proc.stderr
            self.assertEqual(proc.returncode, 0, log[-4000:])
            self.assertEqual(log.count("loaded pretrained weights from"), NPROC, log[-4000:])
            # 3 training cases sharded over 2 ranks (padded to 2 each): 2 iterations per epoch; only rank 0 keeps
            # the StatsHandler, so each iteration is logged once
            self.assertEqual(log.count("Epoch: 2/2, Iter: 2/2"), 1, log[-4000:])
            self.assertNotIn("Iter: 3/3", log)
            self.assertIn("Epoch[2] Metrics -- val_cpm", log)
            run_files = sorted(p.name for p in (tmp / "run").iterdir())
            self.assertIn("model_best.pt", run_files)
            self.assertTrue(any(name.startswith("last") for name in run_files), run_files)
            # rank 0 wrote the calibrated, unwrapped weights: no DDP "module." prefix, prototype set
            state = torch.load(tmp / "models" / "model.pt", weights_only=True)
            self.assertFalse(any(k.startswith("module.") for k in state))
            self.assertAlmostEqual(float(state["prototype"].norm()), 1.0, places=4)


if __name__ == "__main__":
    unittest.main()
