"""The lesion list as DICOM: one SEG segment per lesion, the TID 1500 Structured Report, both checked against the
source series' geometry and read back by highdicom (and by dicom3tools' dciodvfy where it is installed)."""

from __future__ import annotations

import os
import shutil
import subprocess
import unittest
from pathlib import Path
from tempfile import TemporaryDirectory

import numpy as np
import pydicom
from pydicom.sr.codedict import codes
from monai.transforms import LoadImage
from monai.utils import optional_import

from bundle.io.dicom import dicom_case_outputs, dicom_series_files, write_dicom_seg
from bundle.io.readers import LargestSeriesITKReader
from tests.io import dicom_fixtures as fx

hd, has_hd = optional_import("highdicom")
from bundle.io.dicom_sr import LOCAL_SCHEME, slice_point, write_measurement_report  # noqa: E402  (imports highdicom lazily)

# two lesions as RAS boxes (mm): lesion 1 on slices 1..2, lesion 2 on slices 3..4, far apart in-plane
BOXES = [(np.array([1.0, 0.0, 12.0]), np.array([3.5, 2.5, 15.5])), (np.array([-3.0, -7.0, 17.0]), np.array([-1.0, -5.0, 20.5]))]


def _grid_ras(shape: tuple[int, ...], affine: np.ndarray) -> np.ndarray:
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), -1).astype(float)
    return grid @ affine[:3, :3].T + affine[:3, 3]


def _lesion_records(labels: np.ndarray, affine: np.ndarray) -> list[dict]:
    """lesions.json-like records of a label map: centre (RAS mm), sizes, a score and a tier per label."""
    records = []
    for n in range(1, int(labels.max()) + 1):
        centre = affine[:3, :3] @ np.argwhere(labels == n).mean(0) + affine[:3, 3]
        records.append({"center_mm": centre.tolist(), "diameter_mm": 2.5 + n, "volume_mm3": 10.0 * n,
                        "score": 0.95 - 0.2 * n, "tier": ("high", "medium")[n - 1]})  # fmt: skip
    return records


@unittest.skipUnless(has_hd, "highdicom not installed (requirements-ecosystem.txt)")
class TestLesionSegAndReport(unittest.TestCase):
    def setUp(self):
        self.tmp = TemporaryDirectory()
        self.root = Path(self.tmp.name)
        for path in fx.write_series(self.root / "series"):  # as de-identified archives leave it: no SOP class
            ds = pydicom.dcmread(path)
            ds.ReferencedStudySequence = pydicom.Sequence([pydicom.Dataset()])
            ds.ReferencedStudySequence[0].ReferencedSOPInstanceUID = "1.2.826.0.1.3680043.8.498.1004"
            ds.save_as(path, enforce_file_format=True)
        self.files = dicom_series_files(self.root / "series")
        image = LoadImage(reader=LargestSeriesITKReader(), image_only=True)(str(self.root / "series"))
        self.affine = np.asarray(image.affine, dtype=float)
        ras = _grid_ras(tuple(image.shape), self.affine)
        self.labels = np.zeros(image.shape, np.uint8)
        for n, (lo, hi) in enumerate(BOXES, start=1):
            self.labels[np.all((ras >= lo) & (ras <= hi), axis=-1)] = n
        self.assertEqual(sorted(np.unique(self.labels)), [0, 1, 2])
        self.lesions = _lesion_records(self.labels, self.affine)
        self.sources = {pydicom.dcmread(f).SOPInstanceUID: pydicom.dcmread(f) for f in self.files}

    def tearDown(self):
        self.tmp.cleanup()

    def _write(self, out: str = "out", labels: np.ndarray | None = None) -> tuple[Path, Path]:
        labels = self.labels if labels is None else labels
        seg = write_dicom_seg(self.root / out / "seg.dcm", labels, self.affine, self.files, lesions=self.lesions)
        sr = write_measurement_report(self.root / out / "sr.dcm", self.lesions, seg, self.files, software_version="9.9")
        return seg, sr

    def test_one_segment_per_lesion_on_its_slices(self):
        seg_path, _ = self._write()
        seg = hd.seg.segread(seg_path)
        self.assertEqual([s.SegmentLabel for s in seg.SegmentSequence], ["lesion 1", "lesion 2"])
        self.assertEqual([s.TrackingID for s in seg.SegmentSequence], ["lesion 1", "lesion 2"])
        for n, (lo, hi) in enumerate(BOXES, start=1):
            for uid, ds in self.sources.items():
                k = round((float(ds.ImagePositionPatient[2]) - fx.ORIGIN[2]) / fx.SLICE_STEP)
                ras = fx.pixel_centres_ras(k)
                expected = np.all((ras >= lo) & (ras <= hi), axis=-1)
                got = seg.get_pixels_by_source_instance([uid], segment_numbers=[n])[0, ..., 0].astype(bool)
                np.testing.assert_array_equal(got, expected, err_msg=f"segment {n}, slice {k}")

    def test_report_references_segments_and_centres(self):
        seg_path, sr_path = self._write()
        seg = pydicom.dcmread(seg_path)
        sr = hd.sr.srread(sr_path)
        self.assertEqual(sr.StudyInstanceUID, fx.IDS["StudyInstanceUID"])
        self.assertEqual(sr.PatientID, fx.IDS["PatientID"])
        report = sr.content
        volumetric = report.get_volumetric_roi_measurement_groups()
        planar = report.get_planar_roi_measurement_groups()
        self.assertEqual((len(volumetric), len(planar)), (2, 2))
        self.assertEqual(report.get_image_measurement_groups()[0].get_measurements()[0].value, 2)
        for n, (group, point, lesion) in enumerate(zip(volumetric, planar, self.lesions), start=1):
            segment = seg.SegmentSequence[n - 1]
            self.assertEqual(group.tracking_uid, segment.TrackingUID)
            self.assertEqual(point.tracking_uid, segment.TrackingUID)
            (ref,) = hd.sr.utils.find_content_items(group[0], name=codes.DCM.ReferencedSegment)
            self.assertEqual(ref.ReferencedSOPSequence[0].ReferencedSOPInstanceUID, seg.SOPInstanceUID)
            self.assertEqual(int(ref.ReferencedSOPSequence[0].ReferencedSegmentNumber), n)
            values = {m.name.meaning: m.value for m in group.get_measurements()}
            self.assertAlmostEqual(values["Diameter"], lesion["diameter_mm"], places=5)
            self.assertAlmostEqual(values["Volume"], lesion["volume_mm3"], places=5)
            self.assertAlmostEqual(values["Detection score"], lesion["score"], places=5)
            (tier,) = group.get_qualitative_evaluations(name=hd.sr.CodedConcept("routing-tier", LOCAL_SCHEME, "Routing tier"))
            tier = tier.value.meaning
            self.assertEqual(tier, f"{lesion['tier'].title()} tier")
            # the centre point, mapped back through its slice's geometry, is the lesion's centre
            region = point.roi
            source = self.sources[region.ContentSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID]
            column, row = np.asarray(region.value, dtype=float).ravel()
            lps = np.asarray(source.ImagePositionPatient, float) + (column - 0.5) * fx.PIXEL_SPACING[1] * np.array([1, 0, 0]) + (row - 0.5) * fx.PIXEL_SPACING[0] * np.array([0, 1, 0])
            centre_lps = np.asarray(lesion["center_mm"]) * np.array([-1, -1, 1])
            np.testing.assert_allclose(lps[:2], centre_lps[:2], atol=1e-4)
            self.assertLessEqual(abs(lps[2] - centre_lps[2]), fx.SLICE_STEP / 2 + 1e-6)

    def test_incomplete_study_reference_dropped(self):
        for path in self._write():
            self.assertNotIn("ReferencedStudySequence", pydicom.dcmread(path), path.name)

    def test_uids_follow_content(self):
        seg1, sr1 = self._write("a")
        seg2, sr2 = self._write("b")
        first, again = pydicom.dcmread(seg1), pydicom.dcmread(seg2)
        self.assertEqual(first.SOPInstanceUID, again.SOPInstanceUID)  # a rerun stores nothing new in a PACS
        self.assertEqual(pydicom.dcmread(sr1).SOPInstanceUID, pydicom.dcmread(sr2).SOPInstanceUID)
        changed = self.labels.copy()
        changed[changed == 2] = 0
        other = write_dicom_seg(self.root / "c" / "seg.dcm", changed, self.affine, self.files, lesions=self.lesions)
        other = pydicom.dcmread(other)
        self.assertNotEqual(other.SOPInstanceUID, first.SOPInstanceUID)  # another result, another instance
        self.assertEqual(other.SeriesInstanceUID, first.SeriesInstanceUID)
        self.assertNotEqual(first.SeriesInstanceUID, fx.IDS["SeriesInstanceUID"])

    def test_no_lesions(self):
        empty = np.zeros_like(self.labels)
        seg = write_dicom_seg(self.root / "e" / "seg.dcm", empty, self.affine, self.files, lesions=[])
        sr = write_measurement_report(self.root / "e" / "sr.dcm", [], seg, self.files)
        self.assertEqual([s.SegmentLabel for s in pydicom.dcmread(seg).SegmentSequence], ["lesion"])
        report = hd.sr.srread(sr).content
        self.assertEqual(report.get_volumetric_roi_measurement_groups(), [])
        (count,) = report.get_image_measurement_groups()[0].get_measurements()
        self.assertEqual((count.name.meaning, count.value), ("Number of lesions", 0))

    def test_bad_input(self):
        with self.assertRaisesRegex(ValueError, "values 0..1"):
            write_dicom_seg(self.root / "x" / "seg.dcm", self.labels, self.affine, self.files, lesions=self.lesions[:1])
        seg, _ = self._write()
        with self.assertRaisesRegex(ValueError, r"seg\.dcm.*2 segments for 1 lesions"):
            write_measurement_report(self.root / "x" / "sr.dcm", self.lesions[:1], seg, self.files)
        with self.assertRaisesRegex(ValueError, "nothing.dcm"):
            write_measurement_report(self.root / "x" / "sr.dcm", self.lesions, self.root / "nothing.dcm", self.files)
        with self.assertRaisesRegex(ValueError, "write_sr=True needs write_seg=True"):
            dicom_case_outputs(self.root / "series", self.root / "x", self.labels, self.affine, write_sr=True)
        with self.assertRaisesRegex(ValueError, "refusing to write over an input"):
            write_measurement_report(self.files[0], self.lesions, seg, self.files, protected=[self.root / "series"])

    def test_case_outputs(self):
        out = dicom_case_outputs(
            self.root / "series", self.root / "case", self.labels, self.affine, write_seg=True, lesions=self.lesions,
            write_sr=True,
        )  # fmt: skip
        self.assertEqual(Path(out["sr"]).name, "sr.dcm")
        self.assertEqual(pydicom.dcmread(out["sr"]).Modality, "SR")

    @unittest.skipUnless(
        shutil.which("dciodvfy") or os.environ.get("BUNDLE_REQUIRE_DICOM3TOOLS"), "dicom3tools' dciodvfy not installed"
    )
    def test_dciodvfy_finds_no_error(self):
        source = subprocess.run(["dciodvfy", str(self.files[0])], capture_output=True, text=True, check=False)
        self.assertIn("ReferencedSOPClassUID", source.stdout + source.stderr)  # the source's error is not inherited
        for path in self._write():
            result = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, check=False)
            report = result.stdout + result.stderr
            self.assertNotIn("Error", report, f"{path.name}:\n{report}")
            self.assertIn(("Segmentation" if path.name == "seg.dcm" else "Comprehensive3DSR"), report)


class TestSlicePoint(unittest.TestCase):
    def test_nearest_slice_and_pixel_centre(self):
        slices = []
        for k in range(3):
            ds = pydicom.Dataset()
            ds.ImagePositionPatient = [10.0, 20.0, 5.0 * k]
            ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
            ds.PixelSpacing = [0.5, 2.0]  # rows 0.5 mm apart, columns 2 mm apart
            slices.append(ds)
        # the centre of pixel (row 4, column 3) of slice 2, 1 mm above it, in RAS
        index, column, row, distance = slice_point(slices, [-(10.0 + 3 * 2.0), -(20.0 + 4 * 0.5), 11.0])
        self.assertEqual(index, 2)
        self.assertAlmostEqual(column, 3.5)
        self.assertAlmostEqual(row, 4.5)
        self.assertAlmostEqual(distance, 1.0)
        with self.assertRaisesRegex(ValueError, "at least one slice"):
            slice_point([], [0, 0, 0])
        with self.assertRaisesRegex(ValueError, "lacks plane geometry"):
            slice_point([pydicom.Dataset()], [0, 0, 0])


if __name__ == "__main__":
    unittest.main()
