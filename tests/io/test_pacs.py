"""From PACS to PACS through a real DICOM server: Orthanc with DICOMweb on loopback (tests/io/orthanc.py).

A small CT series is stored in Orthanc (STOW-RS); ``python -m scripts.pacs`` pulls it (QIDO-RS, WADO-RS), runs the
bundle's inference config on it and stores the DICOM-SEG and the Structured Report back; a rerun stores nothing
twice. Bad input (a study the server lacks, an address that is no URL, a server that is down) gives one line and
status 1.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

import numpy as np
import pydicom
import torch

from bundle.io.pacs import process_study
from bundle.networks import GhostCAUNet
from tests.io import dicom_fixtures as fx
from tests.io import orthanc
from tests.reliability import inputs as I

ROOT = Path(__file__).resolve().parents[2]


def run_pacs(url: str, study: str, work: Path, *extra: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "scripts.pacs", "--url", url, "--study_uid", study, "--work_dir", str(work), *extra]
    return subprocess.run(command, cwd=str(ROOT), env=env, capture_output=True, text=True, timeout=900)


@unittest.skipUnless(orthanc.AVAILABLE or orthanc.REQUIRED, orthanc.SKIP_REASON)
class TestPacsLoop(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        from dicomweb_client.api import DICOMwebClient

        cls.tmp = tempfile.TemporaryDirectory()
        cls.root = Path(cls.tmp.name)
        cls.server = orthanc.orthanc_server(cls.root / "orthanc")
        cls.url = cls.server.__enter__()
        hu = I.ct_like((36, 40, 12)).transpose(2, 1, 0)  # (slices, rows, cols)
        files = fx.write_series(cls.root / "scan", np.ascontiguousarray(hu))
        cls.client = DICOMwebClient(url=cls.url)
        cls.client.store_instances(datasets=[pydicom.dcmread(f) for f in files])
        cls.ckpt = cls.root / "model.pt"
        torch.manual_seed(0)
        torch.save(GhostCAUNet(features=(8, 24, 48, 96)).state_dict(), cls.ckpt)

    @classmethod
    def tearDownClass(cls):
        cls.server.__exit__(None, None, None)
        cls.tmp.cleanup()

    def _run(self, work: Path, study: str = fx.IDS["StudyInstanceUID"], url: str | None = None):
        return run_pacs(url or self.url, study, work, "--ckpt_path", str(self.ckpt), "--roi_size", "[32,32,16]")

    def test_pull_run_store_then_rerun_stores_nothing(self):
        self.assertEqual(orthanc.instance_count(self.url), 12)
        work = self.root / "work"
        proc = self._run(work)
        self.assertEqual(proc.returncode, 0, proc.stderr[-3000:])
        first = json.loads(proc.stdout.strip().splitlines()[-1])
        self.assertEqual(first["series"], [fx.IDS["SeriesInstanceUID"]])
        self.assertEqual((len(first["stored"]), first["already_stored"], first["cases_failed"]), (2, [], []))
        self.assertEqual(orthanc.instance_count(self.url), 14)
        case = work / "outputs" / fx.IDS["StudyInstanceUID"] / fx.IDS["SeriesInstanceUID"]
        lesions = json.loads((case / "lesions.json").read_text())["lesions"]
        # what the server now holds is what the bundle wrote: a SEG with one segment per lesion, an SR citing it
        by_modality = {}
        for row in self.client.search_for_series(study_instance_uid=fx.IDS["StudyInstanceUID"]):
            by_modality[row["00080060"]["Value"][0]] = row["0020000E"]["Value"][0]
        self.assertEqual(sorted(by_modality), ["CT", "SEG", "SR"])
        (seg,) = self.client.retrieve_series(fx.IDS["StudyInstanceUID"], by_modality["SEG"])
        (sr,) = self.client.retrieve_series(fx.IDS["StudyInstanceUID"], by_modality["SR"])
        self.assertEqual(sorted([seg.SOPInstanceUID, sr.SOPInstanceUID]), sorted(first["stored"]))
        self.assertEqual(seg.ReferencedSeriesSequence[0].SeriesInstanceUID, fx.IDS["SeriesInstanceUID"])
        expected = [f"lesion {n + 1}" for n in range(len(lesions))] or ["lesion"]
        self.assertEqual([s.SegmentLabel for s in seg.SegmentSequence], expected)
        evidence = [
            sop.ReferencedSOPInstanceUID
            for study in sr.CurrentRequestedProcedureEvidenceSequence
            for series in study.ReferencedSeriesSequence
            for sop in series.ReferencedSOPSequence
        ]
        self.assertIn(seg.SOPInstanceUID, evidence)

        proc = self._run(work)  # the same study again: same result, nothing new on the server
        self.assertEqual(proc.returncode, 0, proc.stderr[-3000:])
        again = json.loads(proc.stdout.strip().splitlines()[-1])
        self.assertEqual((again["stored"], sorted(again["already_stored"])), ([], sorted(first["stored"])))
        self.assertEqual(orthanc.instance_count(self.url), 14)
        self.assertTrue((work / f"pacs_{fx.IDS['StudyInstanceUID']}.json").is_file())

    def test_bad_input_one_line(self):
        proc = self._run(self.root / "bad", study="1.2.3.4.5")  # a study the server does not hold
        self.assertEqual(proc.returncode, 1, proc.stderr[-2000:])
        lines = proc.stderr.strip().splitlines()
        self.assertEqual(len(lines), 1, proc.stderr[-2000:])
        self.assertRegex(lines[0], r"^error: ValueError: study 1\.2\.3\.4\.5 has no CT or MR series on http://127")
        self.assertFalse((self.root / "bad" / "outputs").exists())
        with self.assertRaisesRegex(ValueError, "must be a DICOMweb base address"):
            process_study("ftp://127.0.0.1/dicom-web", fx.IDS["StudyInstanceUID"], self.root / "bad")
        down = f"http://127.0.0.1:{orthanc._free_port()}/dicom-web"
        with self.assertRaisesRegex(ConnectionError, f"DICOMweb server {down} did not answer"):
            process_study(down, fx.IDS["StudyInstanceUID"], self.root / "bad")


@unittest.skipUnless(orthanc.REQUIRED and not orthanc.AVAILABLE, "Orthanc is installed or not required")
class TestOrthancRequired(unittest.TestCase):
    def test_orthanc_installed(self):
        self.fail(f"BUNDLE_REQUIRE_ORTHANC=1 but {orthanc.SKIP_REASON}")


if __name__ == "__main__":
    unittest.main()
