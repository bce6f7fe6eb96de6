"""The main job: ``python -m monai.bundle run --config_file configs/inference.json`` end to end, and the Model Zoo's
network checks (verify_net_in_out, ckpt_export to TorchScript), on small NIfTI files the tests write."""

from __future__ import annotations

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

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs"


def write_chest_like(path: Path, shape=(48, 40, 12), spacing=(2.0, 2.0, 5.0)) -> None:
    """A small CT-like volume in HU: body, two dark lungs, a bright nodule in one lung."""
    rng = np.random.default_rng(0)
    vol = np.full(shape, -1000.0, np.float32)
    vol[4:-4, 4:-4, :] = 40.0  # body
    vol[8:22, 10:30, 1:-1] = -850.0  # right lung
    vol[26:40, 10:30, 1:-1] = -850.0  # left lung
    vol[14:17, 18:21, 5:7] = 30.0  # nodule
    vol += rng.normal(0, 20, shape).astype(np.float32)
    nib.save(nib.Nifti1Image(vol, np.diag([*spacing, 1.0])), str(path))


def run_bundle(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.run(
        [sys.executable, "-m", "monai.bundle", *args], cwd=str(cwd), env=env, capture_output=True, text=True, timeout=600
    )


class TestInferenceConfig(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.tmp_path = Path(cls.tmp.name)
        cls.data = cls.tmp_path / "scans"
        cls.data.mkdir()
        write_chest_like(cls.data / "patient_a.nii.gz")
        (cls.data / "notes.txt").write_text("not an image")  # skipped, never a case
        (cls.data / "broken.nii.gz").write_bytes(b"\x1f\x8b\x08\x00truncated")  # a bad case in the batch
        # random (untrained) weights with a calibrated-looking prototype, saved as the bundle would ship them
        sys.path.insert(0, str(ROOT))
        from bundle.networks import GhostCAUNet

        cls.ckpt = cls.tmp_path / "model.pt"
        torch.manual_seed(0)
        torch.save(GhostCAUNet(features=(8, 24, 48, 96)).state_dict(), cls.ckpt)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def _check_outputs(self, out: Path, proc: subprocess.CompletedProcess) -> None:
        msg = proc.stdout[-3000:] + proc.stderr[-3000:]
        summary = json.loads((out / "summary.json").read_text())
        self.assertEqual(summary["cases_done"], ["patient_a"], msg)
        self.assertEqual([c["case"] for c in summary["cases_failed"]], ["broken"], msg)
        self.assertIn("broken.nii.gz", summary["cases_failed"][0]["error"])
        case = out / "patient_a"
        for name in ("seg.nii.gz", "lesions.json", "overlay.png"):
            self.assertTrue((case / name).is_file(), f"{name} missing")
        lesions = json.loads((case / "lesions.json").read_text())
        self.assertEqual(lesions["case"], "patient_a")
        self.assertIsInstance(lesions["lesions"], list)
        seg = nib.load(str(case / "seg.nii.gz"))
        self.assertEqual(seg.shape, (48, 40, 12))  # the input's own grid
        np.testing.assert_allclose(seg.affine, np.diag([2.0, 2.0, 5.0, 1.0]), atol=1e-4)
        # lesions are found on the 1 x 1 x 2.5 mm grid and mapped back: each one's labelled voxels lie in its box
        seg_array = np.asarray(seg.dataobj)
        for rank, lesion in enumerate(lesions["lesions"], start=1):
            where = np.argwhere(seg_array == rank)
            start, stop = lesion["box_voxel"]
            self.assertTrue(((where >= start) & (where < stop)).all(), (rank, lesion["box_voxel"]))
            np.testing.assert_allclose(
                lesion["center_mm"], (seg.affine @ [*lesion["center_voxel"], 1.0])[:3], atol=1e-3
            )
        # a failed case makes the command exit 1 after the good case was written, with one line and no traceback
        self.assertEqual(proc.returncode, 1, msg)
        self.assertIn("1 of 2 cases failed: broken", proc.stderr)
        self.assertNotIn("Traceback", proc.stderr)

    def test_in_process_run_leaves_nothing_frozen(self):
        # the config freezes the start-up objects for the garbage collector; bundle.io.pacs.process_study runs it in
        # a long-lived process, so the run must unfreeze them, or every study's garbage would be kept for good. The
        # run happens in a child process: the config also sets up logging and the excepthook for its process.
        data = self.tmp_path / "one_case"
        data.mkdir(exist_ok=True)
        write_chest_like(data / "patient_b.nii.gz")
        out = self.tmp_path / "out_in_process"
        script = (
            "import gc, sys\n"
            "from monai.bundle import run\n"
            f"run(config_file={str(CONFIGS / 'inference.json')!r}, bundle_root={str(ROOT)!r}, "
            f"dataset_dir={str(data)!r}, output_dir={str(out)!r}, ckpt_path={str(self.ckpt)!r}, quiet=True)\n"
            "print('frozen after run:', gc.get_freeze_count())\n"
        )
        env = dict(os.environ, PYTHONWARNINGS="ignore")
        proc = subprocess.run([sys.executable, "-c", script], cwd=str(ROOT), env=env, capture_output=True, text=True,
                              timeout=600)  # fmt: skip
        self.assertEqual(proc.returncode, 0, proc.stderr[-3000:])
        self.assertEqual(json.loads((out / "summary.json").read_text())["cases_done"], ["patient_b"])
        self.assertIn("frozen after run: 0", proc.stdout)

    def test_run_from_bundle_root(self):
        out = self.tmp_path / "out_root"
        proc = run_bundle(
            [
                "run",
                "--config_file",
                "configs/inference.json",
                "--dataset_dir",
                str(self.data),
                "--output_dir",
                str(out),
                "--ckpt_path",
                str(self.ckpt),
                "--roi_size",
                "[32, 32, 16]",
                "--explain",
                "True",
                "--explain_max_lesions",
                "1",
            ],
            cwd=ROOT,
        )
        self._check_outputs(out, proc)
        # the optional explanation step writes one figure per explained lesion next to the overlay
        n_lesions = len(json.loads((out / "patient_a" / "lesions.json").read_text())["lesions"])
        self.assertEqual(len(list((out / "patient_a").glob("explain_*.png"))), min(n_lesions, 1))

    def test_run_from_other_cwd(self):
        out = self.tmp_path / "out_elsewhere"
        proc = run_bundle(
            [
                "run",
                "--config_file",
                str(CONFIGS / "inference.json"),
                "--bundle_root",
                str(ROOT),
                "--dataset_dir",
                str(self.data),
                "--output_dir",
                str(out),
                "--ckpt_path",
                str(self.ckpt),
                "--roi_size",
                "[32, 32, 16]",
                "--routing",
                "False",
            ],
            cwd=self.tmp_path,
        )
        self._check_outputs(out, proc)

    def test_output_inside_dataset_refused(self):
        proc = run_bundle(
            [
                "run",
                "--config_file",
                "configs/inference.json",
                "--dataset_dir",
                str(self.data),
                "--output_dir",
                str(self.data / "out"),
                "--ckpt_path",
                str(self.ckpt),
            ],
            cwd=ROOT,
        )
        self.assertNotEqual(proc.returncode, 0)
        self.assertFalse((self.data / "out").exists())


class TestZooNetworkChecks(unittest.TestCase):
    def test_verify_net_in_out(self):
        proc = run_bundle(
            [
                "verify_net_in_out",
                "network_def",
                "--meta_file",
                "configs/metadata.json",
                "--config_file",
                "configs/inference.json",
                "--n",
                "4",
                "--device",
                "cpu",
            ],
            cwd=ROOT,
        )
        self.assertEqual(proc.returncode, 0, proc.stdout[-2000:] + proc.stderr[-2000:])
        self.assertIn("data shape of network is verified with no error", proc.stdout + proc.stderr)

    def test_ckpt_export_matches_eager(self):
        sys.path.insert(0, str(ROOT))
        from bundle.networks import GhostCAUNet

        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            torch.manual_seed(1)
            net = GhostCAUNet(features=(8, 24, 48, 96)).eval()
            torch.save(net.state_dict(), tmp / "model.pt")
            proc = run_bundle(
                [
                    "ckpt_export",
                    "network_def",
                    "--filepath",
                    str(tmp / "model.ts"),
                    "--ckpt_file",
                    str(tmp / "model.pt"),
                    "--meta_file",
                    "configs/metadata.json",
                    "--config_file",
                    "configs/inference.json",
                ],
                cwd=ROOT,
            )
            self.assertEqual(proc.returncode, 0, proc.stdout[-2000:] + proc.stderr[-2000:])
            scripted = torch.jit.load(str(tmp / "model.ts"))
            x = torch.rand(1, 1, 32, 32, 16)
            with torch.no_grad():
                np.testing.assert_allclose(scripted(x).numpy(), net(x).numpy(), atol=1e-5)


if __name__ == "__main__":
    unittest.main()
