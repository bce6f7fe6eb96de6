"""DICOM identifiers and the DICOM-SEG output: a round trip read back by pydicom and highdicom."""

from __future__ import annotations

import json
import unittest
from pathlib import Path
from tempfile import TemporaryDirectory

import numpy as np
import pydicom
import torch
from monai.transforms import Compose, EnsureChannelFirstd, LoadImage, LoadImaged
from monai.utils import optional_import

from bundle.io.readers import LargestSeriesITKReader
from bundle.io.dicom import dicom_case_outputs, dicom_series_files, label_map_to_frames, read_identifiers, write_dicom_seg
from tests.io import dicom_fixtures as fx

hd, has_hd = optional_import("highdicom")

BOX_MIN, BOX_MAX = np.array([-2.0, -6.0, 13.0]), np.array([2.5, -1.0, 19.0])  # RAS mm, covers slices 2..3


def _in_box(ras: np.ndarray) -> np.ndarray:
    return np.all((ras >= BOX_MIN) & (ras <= BOX_MAX), axis=-1)


class TestDicomIdentifiers(unittest.TestCase):
    def test_series_and_identifiers(self):
        with TemporaryDirectory() as tmp:
            fx.write_series(Path(tmp) / "s")
            files = dicom_series_files(Path(tmp) / "s")
            self.assertEqual(len(files), fx.SLICES)
            z = [float(pydicom.dcmread(f, stop_before_pixels=True).ImagePositionPatient[2]) for f in files]
            self.assertEqual(z, sorted(z))  # sorted by position, not by name
            ids = read_identifiers(files)
            for key, value in fx.IDS.items():
                self.assertEqual(ids[key], value)

    def test_not_dicom(self):
        with TemporaryDirectory() as tmp:
            p = Path(tmp) / "x.nii.gz"
            p.write_bytes(b"not dicom")
            self.assertIsNone(dicom_series_files(p))
            self.assertIsNone(dicom_case_outputs(p, tmp, np.zeros((2, 2, 2)), np.eye(4)))
            with self.assertRaisesRegex(ValueError, "no readable DICOM"):
                dicom_series_files(tmp)
            with self.assertRaisesRegex(ValueError, "empty"):
                read_identifiers([])
            with self.assertRaisesRegex(ValueError, "x.nii.gz"):
                read_identifiers([p])


@unittest.skipUnless(has_hd, "highdicom not installed (requirements-ecosystem.txt)")
class TestDicomSeg(unittest.TestCase):
    def setUp(self):
        self.tmp = TemporaryDirectory()
        self.series = Path(self.tmp.name) / "series"
        fx.write_series(self.series)
        image = LoadImage(reader=LargestSeriesITKReader(), image_only=True)(str(self.series))
        self.affine = np.asarray(image.affine, dtype=float)
        # lesion = voxels whose world centre lies in the box, computed from the loaded volume's own affine
        grid = np.stack(np.meshgrid(*[np.arange(s) for s in image.shape], indexing="ij"), -1).astype(float)
        self.labels = _in_box(grid @ self.affine[:3, :3].T + self.affine[:3, 3]).astype(np.uint8)
        self.assertGreater(self.labels.sum(), 0)

    def tearDown(self):
        self.tmp.cleanup()

    def test_round_trip(self):
        files = dicom_series_files(self.series)
        path = write_dicom_seg(Path(self.tmp.name) / "out" / "seg.dcm", self.labels, self.affine, files)
        seg_ds = pydicom.dcmread(path)
        self.assertEqual(seg_ds.Modality, "SEG")
        for key in ("PatientID", "StudyInstanceUID", "FrameOfReferenceUID", "AccessionNumber"):
            self.assertEqual(str(seg_ds.get(key)), fx.IDS[key], key)
        self.assertNotEqual(seg_ds.SeriesInstanceUID, fx.IDS["SeriesInstanceUID"])
        self.assertEqual(int(seg_ds.NumberOfFrames), fx.SLICES)
        self.assertEqual(seg_ds.SegmentSequence[0].SegmentLabel, "lesion")
        shared = seg_ds.SharedFunctionalGroupsSequence[0]
        np.testing.assert_allclose(shared.PixelMeasuresSequence[0].PixelSpacing, fx.PIXEL_SPACING)
        np.testing.assert_allclose(shared.PlaneOrientationSequence[0].ImageOrientationPatient, [1, 0, 0, 0, 1, 0])
        sources = {pydicom.dcmread(f).SOPInstanceUID: pydicom.dcmread(f) for f in files}
        for frame in seg_ds.PerFrameFunctionalGroupsSequence:  # each frame sits where its source slice is
            uid = frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
            np.testing.assert_allclose(
                frame.PlanePositionSequence[0].ImagePositionPatient, sources[uid].ImagePositionPatient
            )
        seg = hd.seg.segread(path)
        for k, f in enumerate(files):
            uid = pydicom.dcmread(f).SOPInstanceUID
            got = seg.get_pixels_by_source_instance([uid], segment_numbers=[1])[0, ..., 0]
            expected = _in_box(fx.pixel_centres_ras(round((float(sources[uid].ImagePositionPatient[2]) - fx.ORIGIN[2]) / fx.SLICE_STEP)))
            np.testing.assert_array_equal(got.astype(bool), expected, err_msg=f"slice {k}")
        self.assertGreater(int(sum(_in_box(fx.pixel_centres_ras(k)).sum() for k in range(fx.SLICES))), 0)

    def test_frames_ill_arg(self):
        files = dicom_series_files(self.series)
        with self.assertRaisesRegex(ValueError, "3D"):
            label_map_to_frames(np.zeros((4, 4)), self.affine, [pydicom.dcmread(files[0])])

    def test_evaluator_writes_identifiers_and_seg(self):
        from bundle.engines import LesionInferenceEvaluator

        hu = np.full((fx.SLICES, fx.ROWS, fx.COLS), -800.0)
        for k in range(fx.SLICES):
            hu[k][_in_box(fx.pixel_centres_ras(k))] = 100.0  # a bright "lesion" where the box is
        series = Path(self.tmp.name) / "bright"
        fx.write_series(series, hu)

        class Threshold(torch.nn.Module):
            def forward(self, x: torch.Tensor) -> torch.Tensor:  # lesion logit where HU > -300
                return torch.cat([-(x + 300.0) / 10.0, (x + 300.0) / 10.0], dim=1)

        pre = Compose([LoadImaged("image", reader=LargestSeriesITKReader(), image_only=True), EnsureChannelFirstd("image")])
        data = [pre({"image": str(series), "case": "dcm_case"})]
        out = Path(self.tmp.name) / "out"
        evaluator = LesionInferenceEvaluator(
            "cpu", data, Threshold(), out, preprocessing=pre, progress=False, dicom_seg=True, dicom_sr=True,
            lesion_kwargs={"min_diameter_mm": 0.0},
        )  # fmt: skip
        evaluator.run()
        self.assertEqual(evaluator.failed_cases, [])
        meta = json.loads((out / "dcm_case" / "meta.json").read_text())
        self.assertEqual(meta["dicom"]["identifiers"]["PatientID"], fx.IDS["PatientID"])
        self.assertEqual(meta["dicom"]["identifiers"]["StudyInstanceUID"], fx.IDS["StudyInstanceUID"])
        seg = hd.seg.segread(out / "dcm_case" / "seg.dcm")
        self.assertGreater(int(np.asarray(seg.get_volume().array).sum()), 0)
        lesions = json.loads((out / "dcm_case" / "lesions.json").read_text())["lesions"]
        self.assertEqual([s.SegmentLabel for s in seg.SegmentSequence], [f"lesion {n + 1}" for n in range(len(lesions))])
        report = hd.sr.srread(out / "dcm_case" / "sr.dcm").content
        self.assertEqual(len(report.get_volumetric_roi_measurement_groups()), len(lesions))
        self.assertEqual(meta["dicom"]["sr"], str((out / "dcm_case" / "sr.dcm").resolve()))
        with self.assertRaisesRegex(ValueError, "dicom_sr=True needs dicom_seg=True"):
            LesionInferenceEvaluator("cpu", data, Threshold(), out, preprocessing=pre, progress=False, dicom_sr=True)


if __name__ == "__main__":
    unittest.main()
