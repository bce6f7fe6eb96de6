"""Batch inference over 2 processes (torchrun, gloo on CPU): every case once, one merged summary, the same outputs as
one process; and the shard merge on its own."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

from bundle.engines.distributed import merge_shards, records_file
from bundle.networks import GhostCAUNet
from tests.reliability import inputs as I
from tests.reliability.test_cli import run_inference

ROOT = Path(__file__).resolve().parents[2]
TORCHRUN = Path(sys.executable).parent / "torchrun"


def _run(data: Path, out: Path, ckpt: Path, processes: int) -> subprocess.CompletedProcess:
    """The main command with 1 process (tests/reliability/test_cli.py's) or ``processes`` torchrun processes."""
    if processes == 1:
        return run_inference(data, out, ckpt)
    flags = ["--dataset_dir", str(data), "--output_dir", str(out), "--ckpt_path", str(ckpt), "--roi_size", "[32,32,16]"]
    env = dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")
    configs = "['configs/inference.json','configs/multi_gpu_inference.json']"
    command = [str(TORCHRUN), "--standalone", "--nnodes=1", f"--nproc_per_node={processes}", "-m", "monai.bundle",
               "run", "--config_file", configs, *flags]  # fmt: skip
    return subprocess.run(command, cwd=str(ROOT), env=env, capture_output=True, text=True, timeout=900)


class TestTwoProcesses(unittest.TestCase):
    def test_shards_merge_into_one_summary_with_the_same_outputs(self):
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            data = root / "scans"
            data.mkdir()
            for i in range(3):
                I.write_nifti(data / f"case{i}.nii.gz", I.ct_like((40, 36, 12), seed=i))
            I.text_as_nifti(data)  # notes.nii.gz: a case that fails
            (data / "readme.txt").write_text("not a scan")  # an entry that is no case
            ckpt = root / "model.pt"
            torch.manual_seed(0)
            torch.save(GhostCAUNet(features=(8, 24, 48, 96)).state_dict(), ckpt)

            two = _run(data, root / "two", ckpt, 2)
            self.assertEqual(two.returncode, 1, two.stderr[-3000:])  # the failed case fails the job
            self.assertIn("notes.nii.gz", two.stderr)
            one = _run(data, root / "one", ckpt, 1)
            self.assertEqual(one.returncode, 1, one.stderr[-3000:])

            summaries = {n: json.loads((root / n / "summary.json").read_text()) for n in ("one", "two")}
            for key in ("cases_done", "cases_failed", "cases_skipped", "entries_ignored"):
                self.assertEqual(summaries["two"][key], summaries["one"][key], key)
            self.assertEqual(summaries["two"]["cases_done"], ["case0", "case1", "case2"])
            self.assertEqual(summaries["two"]["totals"]["cases"], 4)
            self.assertEqual([p.name for p in (root / "two").glob("records_rank*.json")], [])
            with open(root / "two" / "summary.csv", newline="") as f:
                self.assertEqual([r["status"] for r in csv.DictReader(f)], ["done", "done", "done", "failed", "ignored"])
            for case in summaries["one"]["cases_done"]:
                lesions = [json.loads((root / n / case / "lesions.json").read_text())["lesions"] for n in ("one", "two")]
                self.assertEqual(lesions[0], lesions[1], case)
                segs = [np.asarray(nib.load(str(root / n / case / "seg.nii.gz")).dataobj) for n in ("one", "two")]
                np.testing.assert_array_equal(segs[0], segs[1], err_msg=case)


class TestMergeShards(unittest.TestCase):
    def test_merge_and_missing_shard(self):
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp)
            shard0 = {"records": [{"case": "b", "image": "/d/b", "status": "done", "seconds": 2.0, "n_lesions": 1,
                                   "windows": None, "skipped_fraction": None}],
                      "seconds": 5.0, "ignored": [{"path": "/d/x.txt", "reason": "not an image"}]}  # fmt: skip
            shard1 = {"records": [{"case": "a", "image": "/d/a", "status": "failed", "error": "/d/a: bad"}],
                      "seconds": 7.5, "ignored": []}  # fmt: skip
            (out / records_file(0)).write_text(json.dumps(shard0))
            with self.assertRaisesRegex(ValueError, "records_rank1.json of rank 1 is missing"):
                merge_shards(out, 2)
            (out / records_file(1)).write_text(json.dumps(shard1))
            summary = json.loads(merge_shards(out, 2).read_text())
            self.assertEqual((summary["cases_done"], [f["case"] for f in summary["cases_failed"]]), (["b"], ["a"]))
            self.assertEqual(summary["totals"]["seconds"], 7.5)  # the slowest shard: the run's wall time
            self.assertEqual(summary["entries_ignored"], shard0["ignored"])
            self.assertEqual(sorted(p.name for p in out.iterdir()), ["summary.csv", "summary.json"])
        with self.assertRaisesRegex(ValueError, "world_size must be >= 1"):
            merge_shards(tmp, 0)
        with self.assertRaisesRegex(ValueError, "rank must be >= 0"):
            records_file(-1)


if __name__ == "__main__":
    unittest.main()
