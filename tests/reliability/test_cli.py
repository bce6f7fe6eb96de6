"""The real command line on a batch of bad inputs: ``python -m monai.bundle run --config_file configs/inference.json``
with one good case and several bad ones in one ``--dataset_dir``; then a re-run that skips finished cases. Also the
one-line excepthook and the type check of the run flags."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

import torch

from bundle.engines import LesionInferenceEvaluator
from bundle.networks import GhostCAUNet
from tests.reliability import inputs as I

ROOT = Path(__file__).resolve().parents[2]


def run_inference(data: Path, out: Path, ckpt: Path, *extra: str) -> subprocess.CompletedProcess:
    args = ["--dataset_dir", str(data), "--output_dir", str(out), "--ckpt_path", str(ckpt), "--roi_size", "[32,32,16]"]
    env = dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "monai.bundle", "run", "--config_file", "configs/inference.json", *args, *extra]
    return subprocess.run(command, cwd=str(ROOT), env=env, capture_output=True, text=True, timeout=900)


class TestBatchOfBadInputs(unittest.TestCase):
    def test_batch_then_skip_finished(self):
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            data = root / "scans"
            data.mkdir()
            good = I.write_nifti(data / "good.nii.gz", I.ct_like((40, 36, 12)))
            bad = {
                "notes": I.text_as_nifti(data),
                "cut": I.truncated_gzip(data),
                "timeseries": I.four_d(data),
                "series_garbage": I.dicom_garbage(data),
            }
            (data / "full_gz.nii.gz").unlink()  # the truncated file's source, not a case here
            before = {p: p.stat().st_mtime_ns for p in data.rglob("*")}
            ckpt = root / "model.pt"
            torch.manual_seed(0)
            torch.save(GhostCAUNet(features=(8, 24, 48, 96)).state_dict(), ckpt)
            out = root / "out"

            proc = run_inference(data, out, ckpt)
            log = proc.stdout[-3000:] + proc.stderr[-3000:]
            self.assertEqual(proc.returncode, 1, log)
            self.assertNotIn("Traceback", proc.stderr)
            self.assertIn("4 of 5 cases failed", proc.stderr)
            summary = json.loads((out / "summary.json").read_text())
            self.assertEqual(summary["cases_done"], ["good"], log)
            failed = {f["case"]: f["error"] for f in summary["cases_failed"]}
            self.assertEqual(sorted(failed), sorted(bad))
            for case, path in bad.items():
                self.assertIn(str(path), failed[case])
                self.assertNotIn("\n", failed[case])
            self.assertRegex(failed["cut"], "truncated|ended before the end-of-stream marker")
            self.assertRegex(failed["notes"], "unreadable header")
            # the alternatives: MONAI's fallback readers' words, until presets.py loads with LoadVolumed
            self.assertRegex(failed["series_garbage"], "no readable DICOM image slices|does not have pixel_array")
            self.assertRegex(failed["timeseries"], "2 channels or time points|got \\(2, ")
            lesions = out / "good" / "lesions.json"
            first_write = lesions.stat().st_mtime_ns
            self.assertEqual(json.loads(lesions.read_text())["image"], str(good))

            # re-run with --overwrite False: the finished case is skipped, untouched; the failures are listed again
            proc = run_inference(data, out, ckpt, "--overwrite", "False")
            self.assertEqual(proc.returncode, 1, proc.stderr[-3000:])
            summary = json.loads((out / "summary.json").read_text())
            self.assertEqual(summary["cases_skipped"], ["good"])
            self.assertEqual(len(summary["cases_failed"]), 4)
            self.assertEqual(lesions.stat().st_mtime_ns, first_write)
            # inputs are never written: same files, same modification times; no temporary file left
            self.assertEqual({p: p.stat().st_mtime_ns for p in data.rglob("*")}, before)
            self.assertEqual([p for p in out.rglob("*") if p.name.endswith(".tmp") or ".tmp." in p.name], [])


class TestEveryEntryAccountedFor(unittest.TestCase):
    def test_empty_folder_one_voxel_and_quiet(self):
        """An empty series folder and a text file are listed under entries_ignored (they never fail the run), a
        one-voxel NIfTI is a failed case; the console has one result line per case and no bar (not a terminal);
        --quiet True prints nothing but errors."""
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            data = root / "scans"
            data.mkdir()
            I.write_nifti(data / "good.nii.gz", I.ct_like((40, 36, 12)))
            one_voxel = I.one_voxel(data)
            (data / "series_empty").mkdir()
            (data / "notes.txt").write_text("not an image")
            ckpt = root / "model.pt"
            torch.manual_seed(0)
            torch.save(GhostCAUNet(features=(8, 24, 48, 96)).state_dict(), ckpt)
            out = root / "out"

            proc = run_inference(data, out, ckpt)
            log = proc.stdout[-3000:] + proc.stderr[-3000:]
            self.assertEqual(proc.returncode, 1, log)
            summary = json.loads((out / "summary.json").read_text())
            self.assertEqual(summary["cases_done"], ["good"], log)
            (failed,) = summary["cases_failed"]
            self.assertEqual(failed["case"], "one_voxel")
            self.assertIn(f"image '{one_voxel}' is too small to hold a lesion: size (1, 1, 1)", failed["error"])
            ignored = {Path(e["path"]).name: e["reason"] for e in summary["entries_ignored"]}
            self.assertEqual(ignored, {"series_empty": "empty folder (no files, no subfolders)",
                                       "notes.txt": ignored.get("notes.txt")})  # fmt: skip
            self.assertRegex(ignored["notes.txt"], "not a recognised image file")
            self.assertEqual((summary["totals"]["cases"], summary["totals"]["ignored"]), (2, 2))
            # one result line per case, numbered; the summary line counts the ignored entries; no bar, no traceback
            done = r"INFO - \[1/2\] good: done, \d+ lesions? in \d+\.\d s, \d+ % of windows skipped\n"
            self.assertRegex(proc.stdout, done)
            self.assertRegex(proc.stdout, r"WARNING - \[2/2\] one_voxel: failed after \d+\.\d s: .*one_voxel\.nii\.gz")
            self.assertIn("1 done, 1 failed, 0 skipped of 2 cases", proc.stdout)
            self.assertIn("2 input entries ignored", proc.stdout)
            self.assertNotIn("Epoch[1] Complete", proc.stdout)
            self.assertNotIn("cases", proc.stderr.replace("1 of 2 cases failed", ""))
            self.assertNotIn("Traceback", proc.stderr)
            last = [ln for ln in proc.stderr.splitlines() if ln.strip()][-1]
            self.assertTrue(last.startswith(f"1 of 2 cases failed: one_voxel ({one_voxel}: "), last)

            # ignored entries alone never fail the run; --quiet True: nothing but errors (none here)
            one_voxel.unlink()
            proc = run_inference(data, out, ckpt, "--quiet", "True", "--overwrite", "False")
            self.assertEqual(proc.returncode, 0, proc.stdout[-3000:] + proc.stderr[-3000:])
            self.assertEqual(proc.stderr.strip(), "")
            # MONAI logs one line before it reads the config; nothing after it
            self.assertEqual([ln for ln in proc.stdout.splitlines() if ln.strip() and "Setting logging" not in ln], [])
            summary = json.loads((out / "summary.json").read_text())
            self.assertEqual((summary["cases_skipped"], summary["totals"]["ignored"]), (["good"], 2))


class TestOneLineErrors(unittest.TestCase):
    def test_excepthook_prints_one_line(self):
        code = (
            "import bundle.io.errors as d; d.install_excepthook()\n"
            "try:\n    raise ValueError(\"dataset_dir must hold images, got dataset_dir='/x' (empty folder).\")\n"
            "except ValueError as e:\n    raise RuntimeError('Failed to instantiate component list_cases') from e\n"
        )
        proc = subprocess.run([sys.executable, "-c", code], cwd=str(ROOT), capture_output=True, text=True, timeout=900)
        self.assertEqual(proc.returncode, 1)
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        expected = "error: ValueError: dataset_dir must hold images, got dataset_dir='/x' (empty folder)."
        self.assertEqual(lines, [expected])

    def test_flag_of_wrong_type(self):
        with self.assertRaisesRegex(TypeError, "overwrite must be True or False, got overwrite='maybe'"):
            LesionInferenceEvaluator("cpu", [], torch.nn.Conv3d(1, 2, 1), tempfile.gettempdir(), overwrite="maybe")
