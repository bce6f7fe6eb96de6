"""Training faults: a run killed with SIGKILL and resumed from its last checkpoint ends with the same weights as an
uninterrupted run (exact equality on CPU), because the checkpoint carries the random state and which parameters
hold a gradient (``bundle.engines.RandomState``, ``GradientState``). Real subprocesses of ``python -m monai.bundle
run --config_file configs/train.json`` on tiny synthetic NIfTI cases; a resume from a checkpoint without them (as
written before they were saved) is the control that shows the comparison can fail."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import unittest
from pathlib import Path

import torch

from bundle.engines.pretrained import read_checkpoint
from tests.configs.test_workflows import write_cases

ROOT = Path(__file__).resolve().parents[2]
EPOCHS = 4
KILL_AFTER_EPOCH = 2  # SIGKILL as soon as this epoch's checkpoint is complete
TOLERANCE = 0.0  # max abs difference allowed between the weights: exact, single-threaded CPU
TIMEOUT_S = 300
OVERRIDES = {
    "epochs": EPOCHS,
    "val_interval": 100,  # no validation: its cost is not what is tested
    "num_val_cases": 1,
    "batch_size": 1,
    "num_samples": 2,
    "patch_size": [32, 32, 16],
    "pixdim": [1.0, 1.0, 2.5],
    "network_def#features": [4, 8, 16, 16],
    "calibration_windows_per_case": 1,
}
CKPT = re.compile(r"last_checkpoint_epoch=(\d+)\.pt")


def command(args_file: Path, run_dir: Path, *extra: str) -> list[str]:
    """``python -m monai.bundle run`` of configs/train.json writing checkpoints and model.pt under ``run_dir``."""
    return [sys.executable, "-m", "monai.bundle", "run", "--config_file", "configs/train.json",
            "--args_file", str(args_file), "--output_dir", str(run_dir / "ckpts"), "--ckpt_dir", str(run_dir),
            *extra]


def env() -> dict[str, str]:
    """One CPU thread: the same reduction order in every run, and polite on a shared machine."""
    return dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")


def train(args_file: Path, run_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    run_dir.mkdir()
    proc = subprocess.run(command(args_file, run_dir, *extra), cwd=str(ROOT), env=env(), capture_output=True,
                          text=True, timeout=TIMEOUT_S)
    if proc.returncode != 0:
        raise AssertionError(f"training in {run_dir} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    return proc


def complete_checkpoints(folder: Path) -> dict[int, Path]:
    """``{epoch: path}`` of the ``last_checkpoint_epoch=N.pt`` files that read completely (MONAI's saver writes
    in place, not atomically, so the newest one may be cut short)."""
    found = {}
    for path in folder.glob("last_checkpoint_epoch=*.pt") if folder.is_dir() else []:
        try:
            read_checkpoint(path, ["model", "trainer"])
        except ValueError:
            continue
        found[int(CKPT.fullmatch(path.name).group(1))] = path
    return found


def train_and_kill(args_file: Path, run_dir: Path) -> Path:
    """Start training, SIGKILL it once epoch ``KILL_AFTER_EPOCH``'s checkpoint is complete, and return the newest
    complete checkpoint left behind."""
    run_dir.mkdir()
    log = (run_dir / "log.txt").open("w")
    proc = subprocess.Popen(command(args_file, run_dir), cwd=str(ROOT), env=env(), stdout=log, stderr=log)
    deadline = time.monotonic() + TIMEOUT_S
    try:
        while max(complete_checkpoints(run_dir / "ckpts"), default=0) < KILL_AFTER_EPOCH:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"no epoch-{KILL_AFTER_EPOCH} checkpoint before the run ended (rc "
                                     f"{proc.returncode}):\n{(run_dir / 'log.txt').read_text()[-3000:]}")
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=60) == -signal.SIGKILL, "the run ended before it was killed"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    checkpoints = complete_checkpoints(run_dir / "ckpts")
    epoch = max(checkpoints)
    assert epoch < EPOCHS and not (run_dir / "model.pt").exists(), f"the killed run got to epoch {epoch} and ended"
    return checkpoints[epoch]


def max_abs_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys(), sorted(set(a) ^ set(b))
    return max(float((a[k].double() - b[k].double()).abs().max()) if a[k].numel() else 0.0 for k in a)


class TestSigkillResume(unittest.TestCase):
    def test_resume_after_sigkill_matches_uninterrupted(self):
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            data = tmp / "data"
            data.mkdir()
            entries = write_cases(data, 4)
            (data / "datalist.json").write_text(json.dumps({"training": entries}))
            args_file = tmp / "args.json"
            args_file.write_text(json.dumps({"bundle_root": str(ROOT), "dataset_dir": str(data), **OVERRIDES}))

            train(args_file, tmp / "straight")
            expected = torch.load(tmp / "straight" / "model.pt", weights_only=True)

            resume_from = train_and_kill(args_file, tmp / "killed")
            checkpoint = read_checkpoint(resume_from)
            self.assertIn("rng", checkpoint)
            self.assertIn("grads", checkpoint)
            epoch = int(CKPT.fullmatch(resume_from.name).group(1))
            self.assertEqual(checkpoint["trainer"]["iteration"], epoch * checkpoint["trainer"]["epoch_length"])
            resumed = train(args_file, tmp / "resumed", "--resume_ckpt", str(resume_from))
            self.assertNotIn("random stream restarted", resumed.stdout + resumed.stderr)
            final = read_checkpoint(tmp / "resumed" / "ckpts" / f"last_checkpoint_epoch={EPOCHS}.pt")
            self.assertEqual(final["trainer"]["iteration"], EPOCHS * final["trainer"]["epoch_length"])
            got = torch.load(tmp / "resumed" / "model.pt", weights_only=True)
            self.assertLessEqual(max_abs_diff(expected, got), TOLERANCE)

            # control: the same checkpoint without them resumes (with a warning) but diverges
            del checkpoint["rng"], checkpoint["grads"]
            torch.save(checkpoint, tmp / "no_rng.pt")
            control = train(args_file, tmp / "control", "--resume_ckpt", str(tmp / "no_rng.pt"))
            self.assertIn("random stream restarted", control.stdout + control.stderr)
            diverged = torch.load(tmp / "control" / "model.pt", weights_only=True)
            self.assertGreater(max_abs_diff(expected, diverged), 1e-4)


if __name__ == "__main__":
    unittest.main()
