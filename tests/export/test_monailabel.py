"""MONAI Label 0.8.5 serves this bundle: the real server on loopback, offline, segmentation and detection modes.

The server runs from ``.venv-monailabel`` (``.ci/setup-monailabel``; ``MONAILABEL_PYTHON`` overrides the
interpreter). Without it the tests skip, except when ``BUNDLE_REQUIRE_MONAILABEL=1`` (CI), where they fail.
The bundle is linked into the ``monaibundle`` sample app's ``model/`` folder twice: as
``small_lesion_ct_segmentation`` (segmentation mode) and ``small_lesion_ct_detection`` (detection mode: the
``detector``/``detector_ops`` ids). Training (``POST /train/<model>``, MONAI Label's ``BundleTrainTask`` running
``configs/train.json`` in the server process) runs on a second server with a COPY of the bundle, since training
writes ``models/model.pt`` under the bundle root.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import unittest
import urllib.error
import urllib.request
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import torch

from tests.io import dicom_fixtures, orthanc

ROOT = Path(__file__).resolve().parents[2]
SEG, DET = "small_lesion_ct_segmentation", "small_lesion_ct_detection"
LINKED = ("configs", "models", "bundle", "LICENSE", "docs")
TRAIN_MODEL = "small_lesion_ct_trained"
START_TIMEOUT_S = float(os.environ.get("MONAILABEL_START_TIMEOUT", "600"))
REQUEST_TIMEOUT_S = 600.0
# the DICOMweb study's ball, off centre in every axis so that a mirrored or reversed display shows
BALL_OFF_CENTRE_MM = (22.0, 40.0, 22.5)


def _python() -> Path | None:
    """The MONAI Label environment's interpreter, or None when it is absent or cannot import monailabel."""
    py = Path(os.environ.get("MONAILABEL_PYTHON", ROOT / ".venv-monailabel" / "bin" / "python"))
    if not py.is_file():
        return None
    ok = subprocess.run([str(py), "-c", "import monailabel"], capture_output=True, timeout=300).returncode == 0
    return py if ok else None


PYTHON = _python()
REQUIRED = os.environ.get("BUNDLE_REQUIRE_MONAILABEL") == "1"
# the OHIF viewer check: Playwright (PyPI) driving Debian's chromium; CI sets BUNDLE_REQUIRE_VIEWER=1
VIEWER = importlib.util.find_spec("playwright") is not None and Path("/usr/bin/chromium").is_file()
VIEWER_REQUIRED = os.environ.get("BUNDLE_REQUIRE_VIEWER") == "1"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _study_volume(
    shape: tuple[int, int, int] = (64, 64, 24),
    seed: int = 0,
    centre_mm: tuple[float, float, float] = (32.0, 32.0, 30.0),
) -> tuple[np.ndarray, np.ndarray]:
    """A small CT-like volume (HU, 1 x 1 x 2.5 mm voxels): lung-density background with a 16 mm soft-tissue ball
    centred at ``centre_mm`` (from the first voxel's centre)."""
    rng = np.random.default_rng(seed)
    spacing = np.array([1.0, 1.0, 2.5])
    img = -800.0 + rng.normal(0.0, 20.0, shape)
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), -1) * spacing
    ball = np.linalg.norm(grid - np.asarray(centre_mm), axis=-1) <= 8.0
    img[ball] = 40.0
    return img.astype(np.float32), ball


def _write_study(path: Path, shape: tuple[int, int, int] = (64, 64, 24), seed: int = 0) -> np.ndarray:
    """:func:`_study_volume` as NIfTI; returns the ball mask."""
    img, ball = _study_volume(shape, seed)
    nib.save(nib.Nifti1Image(img, np.diag([1.0, 1.0, 2.5, 1.0])), str(path))
    return ball


def _nifti(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """(integer array, affine) of a NIfTI file's bytes."""
    with tempfile.NamedTemporaryFile(suffix=".nii.gz") as f:
        f.write(data)
        f.flush()
        image = nib.load(f.name)
        return np.asarray(image.dataobj).astype(int), image.affine


def _command_line(dataset_dir: Path, out: Path, case: str) -> tuple[np.ndarray, np.ndarray, list]:
    """The bundle's own command on ``dataset_dir`` (``.venv``): ``case``'s label map, its affine and its lesions."""
    cli = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "python"), "-m", "monai.bundle", "run", "--config_file", "configs/inference.json",
         "--dataset_dir", str(dataset_dir), "--output_dir", str(out), "--quiet", "True"],
        cwd=str(ROOT), capture_output=True, text=True, timeout=REQUEST_TIMEOUT_S, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    if cli.returncode != 0:
        raise AssertionError(f"the command line failed:\n{cli.stderr[-2000:]}")
    seg = nib.load(str(out / case / "seg.nii.gz"))
    return np.asarray(seg.dataobj).astype(int), seg.affine, json.loads((out / case / "lesions.json").read_text())["lesions"]


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


class _ServerCase(unittest.TestCase):
    """Starts the ``monaibundle`` sample app on loopback; subclasses fill ``app/model/<name>`` and the studies."""

    @classmethod
    def _prepare_app(cls) -> Path:
        """A temporary work folder holding a copy of the sample app (``app/``) and an empty ``studies/``."""
        if PYTHON is None:
            raise RuntimeError("BUNDLE_REQUIRE_MONAILABEL=1 but no MONAI Label environment: run .ci/setup-monailabel")
        cls.tmp = tempfile.TemporaryDirectory()
        work = Path(cls.tmp.name)
        prefix = subprocess.run(
            [str(PYTHON), "-c", "import sys; print(sys.prefix)"], capture_output=True, text=True, check=True
        ).stdout.strip()
        shutil.copytree(Path(prefix) / "monailabel" / "sample-apps" / "monaibundle", work / "app")
        (work / "studies").mkdir()
        return work

    @classmethod
    def _start(cls, work: Path, models: str, studies: str | None = None) -> None:
        """Start the server on ``studies`` (default ``work/studies``; a DICOMweb address makes it the datastore)."""
        cls.port = _free_port()
        cls.url = f"http://127.0.0.1:{cls.port}"
        cls.log = open(work / "server.log", "wb")
        env = {**os.environ, "PATH": f"{Path(PYTHON).parent}:{os.environ.get('PATH', '')}", "OMP_NUM_THREADS": "1",
               "PYTHONUNBUFFERED": "1", "MONAI_LABEL_DICOMWEB_CACHE_PATH": str(work / "dicomweb_cache"),
               "MONAI_LABEL_DATASTORE_CACHE_PATH": str(work / "dicomweb_cache")}  # fmt: skip
        cmd = [str(PYTHON), "-m", "monailabel.main", "start_server", "--app", str(work / "app"), "--studies",
               studies or str(work / "studies"), "--conf", "models", models, "--conf", "zoo_source", "github",
               "--conf", "sam2", "false", "--host", "127.0.0.1", "--port", str(cls.port)]  # fmt: skip
        cls.server = subprocess.Popen(cmd, cwd=work, env=env, stdout=cls.log, stderr=subprocess.STDOUT)
        try:
            cls.info = cls._wait_ready()
        except Exception:
            cls._stop()
            raise

    @classmethod
    def _wait_ready(cls) -> dict:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if cls.server.poll() is not None:
                raise RuntimeError(f"MONAI Label exited with {cls.server.returncode}; log:\n{cls._log_tail()}")
            try:
                with urllib.request.urlopen(f"{cls.url}/info/", timeout=10) as r:
                    return json.loads(r.read())
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(2.0)
        raise TimeoutError(f"MONAI Label not ready after {START_TIMEOUT_S:.0f} s; log:\n{cls._log_tail()}")

    @classmethod
    def _log_tail(cls, chars: int = 3000) -> str:
        cls.log.flush()
        return (Path(cls.tmp.name) / "server.log").read_text(errors="replace")[-chars:]

    @classmethod
    def _stop(cls) -> None:
        if cls.server.poll() is None:
            cls.server.terminate()
            try:
                cls.server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                cls.server.kill()
                cls.server.wait(timeout=30)
        cls.log.close()
        cls.tmp.cleanup()

    @classmethod
    def tearDownClass(cls) -> None:
        cls._stop()

    def _infer(self, model: str, output: str, image: str = "case1") -> bytes:
        request = urllib.request.Request(f"{self.url}/infer/{model}?image={image}&output={output}", method="POST")
        try:
            with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S) as r:
                return r.read()
        except urllib.error.HTTPError as e:
            self.fail(f"/infer/{model} failed with HTTP {e.code}: {e.read()[:500]!r}; log:\n{self._log_tail()}")


@unittest.skipIf(PYTHON is None and not REQUIRED, "MONAI Label environment absent: build it with .ci/setup-monailabel")
class TestMonaiLabelServer(_ServerCase):
    @classmethod
    def setUpClass(cls) -> None:
        work = cls._prepare_app()
        for name in (SEG, DET):
            (work / "app" / "model" / name).mkdir(parents=True)
            for item in LINKED:
                (work / "app" / "model" / name / item).symlink_to(ROOT / item)
        cls.ball = _write_study(work / "studies" / "case1.nii.gz")
        cls._start(work, f"{SEG},{DET}")

    def test_info_lists_both_modes(self):
        models = self.info["models"]
        self.assertEqual(models[SEG]["type"], "segmentation")
        self.assertEqual(models[DET]["type"], "detection")
        self.assertEqual(models[SEG]["labels"], {"lesion": 1})
        self.assertEqual(models[SEG]["dimension"], 3)

    def test_infer_label_map_is_the_command_lines(self):
        arr, affine = _nifti(self._infer(SEG, "image"))
        self.assertEqual(arr.shape, self.ball.shape)  # restored to the input's grid
        np.testing.assert_allclose(affine, np.diag([1.0, 1.0, 2.5, 1.0]), atol=1e-4)
        # what the viewer shows is what the batch report lists: the command line's lesion label map of the same
        # study (same lesion extraction, lung-envelope candidate mask and lesion numbering)
        expected, _, lesions = _command_line(Path(self.tmp.name) / "studies", Path(self.tmp.name) / "cli", "case1")
        self.assertGreater(len(lesions), 0, "the command line found nothing on the ball")
        self.assertEqual(sorted(np.unique(arr).tolist()), list(range(len(lesions) + 1)))
        agree = (arr == expected).mean()
        self.assertGreaterEqual(agree, 0.999, f"{agree:.5f} of voxels agree")
        for n, lesion in enumerate(lesions, start=1):  # lesion n is label n in both, centred where the report says
            centre = np.argwhere(arr == n).mean(0)
            np.testing.assert_allclose(centre, lesion["center_voxel"], atol=1.0, err_msg=f"lesion {n}")
        labelled = arr > 0
        self.assertGreaterEqual((labelled & self.ball).sum() / labelled.sum(), 0.5, "labels mostly off the ball")

    def test_detection_boxes(self):
        result = json.loads(self._infer(DET, "json"))
        boxes = np.asarray(result["box"], dtype=float).reshape(-1, 6)
        self.assertGreaterEqual(len(boxes), 1, result)
        self.assertEqual(len(result["label"]), len(boxes))
        # the ball's centre (32, 32, 30) mm in RAS is (-32, -32, 30) in LPS; the best box must contain it
        centre = np.array([-32.0, -32.0, 30.0])
        inside = np.all(np.abs(boxes[:, :3] - centre) <= boxes[:, 3:] / 2 + 2.5, axis=1)
        self.assertTrue(inside.any(), boxes.tolist())


@unittest.skipIf(PYTHON is None and not REQUIRED, "MONAI Label environment absent: build it with .ci/setup-monailabel")
@unittest.skipUnless(orthanc.AVAILABLE or orthanc.REQUIRED, orthanc.SKIP_REASON)
class TestMonaiLabelOnDicomWeb(_ServerCase):
    """MONAI Label with a real DICOM server as its datastore (Orthanc + DICOMweb on loopback,
    ``--studies http://127.0.0.1:PORT/dicom-web``) runs the bundle on a study from it, with the command line's
    findings on the same series."""

    @classmethod
    def setUpClass(cls) -> None:
        from dicomweb_client.api import DICOMwebClient

        work = cls._prepare_app()
        (work / "app" / "model" / SEG).mkdir(parents=True)
        for item in LINKED:
            (work / "app" / "model" / SEG / item).symlink_to(ROOT / item)
        cls.orthanc = orthanc.orthanc_server(work / "orthanc")
        cls.dicomweb = cls.orthanc.__enter__()
        try:
            # (x, y, z) with 1 x 1 x 2.5 mm voxels -> slices (z, rows = y, columns = x)
            hu, _ = _study_volume(centre_mm=BALL_OFF_CENTRE_MM)
            cls.series_dir = work / "series_root" / "ct"
            files = dicom_fixtures.write_series(
                cls.series_dir, np.ascontiguousarray(hu.transpose(2, 1, 0)), pixel_spacing=(1.0, 1.0), slice_step=2.5
            )
            DICOMwebClient(url=cls.dicomweb).store_instances(datasets=[pydicom.dcmread(f) for f in files])
            cls._start(work, SEG, studies=cls.dicomweb)
        except Exception:
            cls.orthanc.__exit__(None, None, None)
            raise

    @classmethod
    def tearDownClass(cls) -> None:
        cls.orthanc.__exit__(None, None, None)  # before the work folder that holds its storage goes
        super().tearDownClass()

    @unittest.skipUnless(VIEWER or VIEWER_REQUIRED, "Playwright or /usr/bin/chromium absent (docs/ecosystem.md)")
    def test_ohif_draws_the_lesion_on_its_images(self):
        """The PACS command stores the SEG; OHIF (served by MONAI Label) draws lesion 1 on exactly the images the SEG
        marks, at the SEG's place in the image (not mirrored, not reversed)."""
        import highdicom as hd

        from bundle.export.ohif import FIRST_SEGMENT_COLOUR, colour_mask, displayed_image_box, open_study
        from bundle.io.pacs import process_study

        study = dicom_fixtures.IDS["StudyInstanceUID"]
        result = process_study(self.dicomweb, study, Path(self.tmp.name) / "pacs")
        seg_file = next(r["file"] for r in result["stored"] if r["file"].endswith("seg.dcm"))
        ct = sorted((pydicom.dcmread(f, stop_before_pixels=True) for f in self.series_dir.iterdir()),
                    key=lambda ds: int(ds.InstanceNumber))  # fmt: skip
        uids = [str(ds.SOPInstanceUID) for ds in ct]  # OHIF numbers a stack's images in InstanceNumber order
        seg = hd.seg.segread(seg_file)
        self.assertEqual({uid for _, _, uid in seg.get_source_image_uids()}, set(uids))
        pixels = seg.get_pixels_by_source_instance(uids, segment_numbers=[1])[..., 0]  # (images, rows, columns)
        marked = {n: pixels[n - 1] for n in range(1, len(uids) + 1)}
        expected = {n for n, frame in marked.items() if frame.any()}
        self.assertGreater(len(expected), 1, "the SEG marks lesion 1 on fewer than two images")
        with open_study(self.url, study) as viewer:
            viewer.load_segmentation()
            self.assertEqual(viewer.image_number()[1], len(uids))
            shots = {}
            for n in range(1, len(uids) + 1):
                viewer.go_to_image(n)
                shots[n] = viewer.screenshot()
        drawn = {n for n, png in shots.items() if colour_mask(png, FIRST_SEGMENT_COLOUR, 90).sum() >= 20}
        self.assertEqual(drawn, expected, "images where OHIF draws lesion 1 vs images the SEG marks")
        best = max(expected, key=lambda n: int(marked[n].sum()))
        top, bottom, left, right = displayed_image_box(shots[best])
        rows, cols = marked[best].shape
        ys, xs = np.nonzero(colour_mask(shots[best], FIRST_SEGMENT_COLOUR, 90))
        shown = np.array([(ys.mean() + 0.5 - top) / (bottom - top) * rows,
                          (xs.mean() + 0.5 - left) / (right - left) * cols])  # fmt: skip
        np.testing.assert_allclose(shown, np.argwhere(marked[best]).mean(0) + 0.5, atol=2.0)  # (row, column) in pixels

    def test_same_findings_as_the_command_line(self):
        arr, affine = _nifti(self._infer(SEG, "image", dicom_fixtures.IDS["SeriesInstanceUID"]))
        expected, expected_affine, lesions = _command_line(self.series_dir.parent, Path(self.tmp.name) / "cli", "ct")
        self.assertGreater(len(lesions), 0, "the command line found nothing on the ball")
        self.assertEqual(arr.shape, expected.shape)
        np.testing.assert_allclose(affine, expected_affine, atol=1e-3)  # the same grid: MONAI Label's NIfTI of the series
        sizes = {n: (int((arr == n).sum()), int((expected == n).sum()), np.argwhere(arr == n).mean(0).round(2).tolist(),
                     np.argwhere(expected == n).mean(0).round(2).tolist()) for n in range(1, len(lesions) + 1)}
        self.assertEqual(sorted(np.unique(arr).tolist()), list(range(len(lesions) + 1)), sizes)
        self.assertGreaterEqual((arr == expected).mean(), 0.999, f"voxels per lesion (MONAI Label, command line): {sizes}")


@unittest.skipIf(PYTHON is None and not REQUIRED, "MONAI Label environment absent: build it with .ci/setup-monailabel")
class TestMonaiLabelTraining(_ServerCase):
    """``POST /train/<model>`` trains a copy of the bundle for one epoch on three labelled studies, in the server
    process (``run_sync=true``) and in MONAI Label's background subprocess (``run_sync=false``)."""

    @classmethod
    def setUpClass(cls) -> None:
        cls.repo_md5 = _md5(ROOT / "models" / "model.pt")
        work = cls._prepare_app()
        cls.bundle = work / "app" / "model" / TRAIN_MODEL
        for item in LINKED:  # a copy: training writes models/model.pt under the bundle root
            src = ROOT / item
            if src.is_dir():
                shutil.copytree(src, cls.bundle / item, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy2(src, cls.bundle / item)
        labels = work / "studies" / "labels" / "final"
        labels.mkdir(parents=True)
        for i in range(3):  # 32 slices: train.json's patch_size is 64x64x32 and the crop must fit in the volume
            ball = _write_study(work / "studies" / f"case{i}.nii.gz", shape=(64, 64, 32), seed=i)
            affine = nib.load(str(work / "studies" / f"case{i}.nii.gz")).affine
            nib.save(nib.Nifti1Image(ball.astype(np.uint8), affine), str(labels / f"case{i}.nii.gz"))
        cls.copy_md5 = _md5(cls.bundle / "models" / "model.pt")
        cls._start(work, TRAIN_MODEL)

    def _post_train(self, run_sync: bool) -> dict:
        body = json.dumps({"max_epochs": 1, "val_split": 0.34, "device": "cpu", "multi_gpu": False}).encode()
        request = urllib.request.Request(
            f"{self.url}/train/{TRAIN_MODEL}?run_sync={str(run_sync).lower()}",
            data=body,
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S) as r:
                self.assertEqual(r.status, 200)
                return json.loads(r.read())
        except urllib.error.HTTPError as e:
            time.sleep(2.0)  # the server logs the traceback after it has answered
            self.fail(f"/train failed with HTTP {e.code}: {e.read()[:500]!r}; log:\n{self._log_tail(20000)}")

    def test_train_in_the_background(self):
        """``run_sync=false``: the server answers at once and trains in a subprocess whose status ``GET /train/``
        reports; the copy's weights change when it is done."""
        before = _md5(self.bundle / "models" / "model.pt")
        task = self._post_train(run_sync=False)
        self.assertIn(task.get("status"), ("SUBMITTED", "RUNNING"), task)
        deadline = time.monotonic() + REQUEST_TIMEOUT_S
        while time.monotonic() < deadline:
            with urllib.request.urlopen(f"{self.url}/train/", timeout=30) as r:
                status = json.loads(r.read())
            if status.get("id") == task["id"] and status.get("status") not in ("SUBMITTED", "RUNNING"):
                break
            time.sleep(3.0)
        self.assertEqual(status.get("status"), "DONE", f"{status}; log:\n{self._log_tail(20000)}")
        self.assertNotEqual(_md5(self.bundle / "models" / "model.pt"), before, "background training wrote no weights")
        self.assertEqual(_md5(ROOT / "models" / "model.pt"), self.repo_md5, "the repo's models/model.pt changed")

    def test_train_one_epoch_updates_the_copy_only(self):
        self.assertIn(TRAIN_MODEL, self.info["trainers"])
        self.assertEqual(self.info["datastore"]["completed"], 3, self.info["datastore"])  # 3 labelled studies
        self.assertEqual(self._post_train(run_sync=True), {})  # BundleTrainTask returns {} once training finished
        self.log.flush()
        self.assertIn("Training Finished", (Path(self.tmp.name) / "server.log").read_text(errors="replace"))
        trained = self.bundle / "models" / "model.pt"
        self.assertNotEqual(_md5(trained), self.copy_md5, "the copy's models/model.pt was not rewritten")
        self.assertEqual(_md5(ROOT / "models" / "model.pt"), self.repo_md5, "the repo's models/model.pt changed")
        old = torch.load(ROOT / "models" / "model.pt", map_location="cpu", weights_only=True)
        new = torch.load(trained, map_location="cpu", weights_only=True)
        self.assertEqual(set(old), set(new))
        changed = [k for k in old if old[k].is_floating_point() and not torch.equal(old[k], new[k])]
        self.assertTrue(any(k.endswith("weight") for k in changed), changed)
        self.assertTrue(list((self.bundle / "runs" / "train").glob("last_checkpoint_epoch=1.pt")))
        # the server then infers with the new weights: a label map on the study's grid
        request = urllib.request.Request(f"{self.url}/infer/{TRAIN_MODEL}?image=case0&output=image", method="POST")
        try:
            with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S) as r:
                data = r.read()
        except urllib.error.HTTPError as e:
            self.fail(f"/infer after training failed with HTTP {e.code}: {e.read()[:500]!r}; log:\n{self._log_tail()}")
        with tempfile.NamedTemporaryFile(suffix=".nii.gz") as f:
            f.write(data)
            f.flush()
            self.assertEqual(nib.load(f.name).shape, (64, 64, 32))


if __name__ == "__main__":
    unittest.main()
