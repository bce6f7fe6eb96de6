from __future__ import annotations

import json
import tempfile
import unittest
from pathlib import Path

import nibabel as nib
import numpy as np
from parameterized import parameterized
from scipy import ndimage
from sklearn.metrics import cohen_kappa_score

from bundle.data.converters.lidc import convert_lidc, find_lidc_cases
from bundle.data.datalist import load_datalist
from tests.data.converters.lidc_fixtures import (
    N_SLICES,
    NODULE,
    NODULE_B,
    ORIGIN,
    PIXEL_MM,
    SIZE,
    SLICE_MM,
    circle,
    kept,
    lidc_xml,
    nodule_xml,
    ras_mm,
    roi_xml,
    write_case,
)


class TestConvertLidc(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.root = Path(cls.tmp.name) / "LIDC-IDRI"
        cls.case_dir = cls.root / "LIDC-T-0001" / "1.2.3" / "1.2.3.4"
        write_case(cls.case_dir, "LIDC-T-0001")
        cls.out = Path(cls.tmp.name) / "k2"
        cls.report = convert_lidc(cls.root, cls.out, consensus=2)
        cls.entry = load_datalist(cls.out / "datalist.json", "training")[0]

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def test_consensus_two_one_lesion(self):
        self.assertTrue(self.report.ok, self.report.summary())
        lesions = kept(self.entry)
        self.assertEqual(len(lesions), 1)
        lesion = lesions[0]
        # readers' centres (12, 16), (13, 16), (12, 17) on slices 2-5 (reader 2: 3-5)
        np.testing.assert_allclose(lesion["center_voxel"], [12.3, 16.3, 3.5], atol=0.5)
        np.testing.assert_allclose(lesion["center_mm"], ras_mm(*lesion["center_voxel"]), atol=0.01)
        # inside >= 2 readers' outlines (contour pixels excluded): a disc of radius ~4.5 px over 4 slices
        expected = (6 * np.pi * (4.5 * PIXEL_MM) ** 2 * 4 * SLICE_MM / np.pi) ** (1 / 3)
        self.assertAlmostEqual(lesion["diameter_mm"], expected, delta=0.12 * expected)
        self.assertEqual((lesion["readers"], lesion["n_reading_sessions"], lesion["agreement"]), (3, 4, 0.75))
        self.assertEqual(lesion["reader_ids"], ["reader0", "reader1", "reader2"])
        self.assertEqual((lesion["size_band"], lesion["box_voxel"][0][2], lesion["box_voxel"][1][2]), ("6-10", 2, 6))

    def test_reader_agreement(self):
        # lesion A: readers 0-2; the < 3 mm nodule: reader 0; nodule B: reader 3 (hand-made 4-reader case)
        self.assertEqual(sorted(les["reader_sessions"] for les in self.entry["lesions"]), [[0], [0, 1, 2], [3]])
        marks = np.zeros((3, 4), dtype=int)
        for i, les in enumerate(self.entry["lesions"]):
            marks[i, les["reader_sessions"]] = 1
        # by hand (see tests/metrics/test_agreement.py): Fleiss -1/35; Cohen r0|r1 0.4, r1|r2 1, r0|r3 -0.8, ...
        hand = {"r0|r1": 0.4, "r0|r2": 0.4, "r0|r3": -0.8, "r1|r2": 1.0, "r1|r3": -0.5, "r2|r3": -0.5}
        agreement = self.entry["reader_agreement"]
        self.assertEqual(agreement["cohen_kappa"], hand)
        for pair, kappa in hand.items():
            i, j = (int(r[1]) for r in pair.split("|"))
            self.assertAlmostEqual(cohen_kappa_score(marks[:, i], marks[:, j]), kappa)
        self.assertEqual((agreement["fleiss_kappa"], agreement["n_lesions"]), (round(-1 / 35, 4), 3))
        header = json.loads((self.out / "datalist.json").read_text())["reader_agreement"]
        self.assertEqual((header["n_cases"], header["fleiss_kappa"]), (1, round(-1 / 35, 4)))
        self.assertEqual(self.report.agreement, header)
        self.assertRegex(self.report.summary(), r"3 lesion\(s\) of 1 case\(s\), 4 readers.*Fleiss' kappa -0\.029, mean "
                         r"Cohen's kappa -?0\.000 \(r0\|r1 0\.400")

    def test_ignored_records(self):
        ignored = {les["nodule_ids"][0]: les for les in self.entry["lesions"] if les["ignore"]}
        self.assertEqual(sorted(ignored), ["reader0:small", "reader3:B3"])
        self.assertIn("marked by 1 of 4 readers, fewer than consensus=2", ignored["reader3:B3"]["ignore_reason"])
        np.testing.assert_allclose(ignored["reader3:B3"]["center_voxel"][:2], NODULE_B, atol=0.5)
        self.assertEqual(ignored["reader0:small"]["center_voxel"], [5.0, 27.0, 1.0])

    def test_image_and_label_files(self):
        image = nib.load(self.entry["image"])
        label = np.asarray(nib.load(self.entry["label"]).dataobj)
        self.assertEqual(label.shape, (SIZE, SIZE, N_SLICES))
        np.testing.assert_allclose(image.affine, nib.load(self.entry["label"]).affine)
        hu = np.asarray(image.dataobj)
        self.assertEqual(hu.dtype, np.int16)
        # the XML's (x, y) and the DICOM pixels land on the same voxel: HU 0 inside the nodule, -800 elsewhere
        self.assertEqual((hu[NODULE[0], NODULE[1], 3], label[NODULE[0], NODULE[1], 3]), (0, 1))
        self.assertEqual((hu[NODULE_B[0], NODULE_B[1], 4], label[NODULE_B[0], NODULE_B[1], 4]), (0, 0))
        self.assertEqual((hu[NODULE[1], NODULE[0], 3], hu[0, 0, 0]), (-800, -800))
        self.assertEqual(ndimage.label(label)[1], 1)
        self.assertEqual(label.sum(), np.sum(label[:, :, 2:6]))  # only on the nodule's slices
        np.testing.assert_allclose(image.affine @ [12, 16, 3, 1], ras_mm(12, 16, 3) + [1], atol=1e-4)

    @parameterized.expand([
        [{"consensus": 1}, 2, {"reader0:small": "consensus diameter"}],
        [{"consensus": 4}, 0, {"reader0:A0": "marked by 3 of 4 readers"}],
        [{"consensus": 2, "max_diameter_mm": 5.0}, 0, {"reader0:A0": "> max_diameter_mm=5.0"}],
    ])
    def test_rules(self, kwargs, n_kept, reasons):
        with tempfile.TemporaryDirectory() as out:
            report = convert_lidc(self.case_dir, out, **kwargs)  # the series folder itself as root
            entry = load_datalist(Path(out) / "datalist.json", "training")[0]
        self.assertTrue(report.ok, report.summary())
        self.assertEqual(len(kept(entry)), n_kept)
        self.assertEqual(report.n_lesions, n_kept)
        by_id = {les["nodule_ids"][0]: les for les in entry["lesions"]}
        for nodule_id, reason in reasons.items():
            self.assertIn(reason, by_id[nodule_id]["ignore_reason"])

    def test_batch_split_and_errors(self):
        root = Path(self.tmp.name) / "batch"
        write_case(root / "LIDC-T-0001" / "s1" / "series_a", "LIDC-T-0001", seed=1)
        write_case(root / "LIDC-T-0001" / "s2" / "series_b", "LIDC-T-0001", seed=2)
        write_case(root / "LIDC-T-0002" / "s" / "s", "LIDC-T-0002", sessions=lambda u: [[], [], [], []])
        write_case(root / "LIDC-T-0003" / "s" / "s", "LIDC-T-0003")
        bad_xml = write_case(root / "LIDC-T-0004" / "s" / "s", "LIDC-T-0004")
        bad_xml.write_text(bad_xml.read_text()[:-30])  # truncated
        other = write_case(root / "LIDC-T-0005" / "s" / "s", "LIDC-T-0005", series_uid="9.9.9")
        off_grid = write_case(root / "LIDC-T-0006" / "s" / "s", "LIDC-T-0006", sessions=lambda u: [
            [nodule_xml("Z", [roi_xml(1, u, circle(10, 10, 3), use_uid=False).replace(
                f"{ORIGIN[2] + 1.5:.6f}", "55.0")])]])
        outside = write_case(root / "LIDC-T-0007" / "s" / "s", "LIDC-T-0007", sessions=lambda u: [
            [nodule_xml("Q", [roi_xml(2, u, circle(30, 10, 4))])]])
        no_dicom = root / "LIDC-T-0008" / "s"
        no_dicom.mkdir(parents=True)
        (no_dicom / "001.xml").write_text(lidc_xml("1.2", [[]]))
        twice = write_case(root / "LIDC-T-0010" / "s" / "s", "LIDC-T-0010")
        (twice.parent / "070.xml").write_text(twice.read_text())
        (root / "LIDC-T-0009" / "cxr").mkdir(parents=True)  # radiograph reads: not a CT case, skipped
        (root / "LIDC-T-0009" / "cxr" / "1.xml").write_text("<IdriReadMessage/>")
        cases = find_lidc_cases(root)
        names = [c["case"] for c in cases]
        self.assertEqual(names[:3], ["LIDC-T-0001_series_a", "LIDC-T-0001_series_b", "LIDC-T-0002"])
        self.assertEqual(len(cases), 10)
        out = Path(self.tmp.name) / "batch_out"
        report = convert_lidc(root, out, val_fraction=0.4, seed=0)
        self.assertEqual(
            report.converted, ["LIDC-T-0001_series_a", "LIDC-T-0001_series_b", "LIDC-T-0002", "LIDC-T-0003"]
        )
        errors = {f["case"]: f["error"] for f in report.failed}
        self.assertEqual(sorted(errors), [f"LIDC-T-{i:04d}" for i in (4, 5, 6, 7, 8, 10)])
        self.assertTrue(errors["LIDC-T-0004"].startswith(f"{bad_xml}: cannot parse the LIDC XML"))
        self.assertTrue(errors["LIDC-T-0005"].startswith(f"{other}: LIDC XML is for series 9.9.9"))
        self.assertIn(f"{off_grid}: reader reader0, nodule 'Z', roi 0: no slice of the series", errors["LIDC-T-0006"])
        self.assertIn(f"{outside}: nodule 'Q' of reader reader0: contour points must lie inside", errors["LIDC-T-0007"])
        self.assertTrue(errors["LIDC-T-0008"].startswith(f"{no_dicom}: cannot read the DICOM series"))
        self.assertTrue(errors["LIDC-T-0010"].startswith(f"{twice.parent}: several LIDC XML files for series"))
        # 3 patients: bands 6-10 (two series), none, 6-10; round(3 * 0.4) = 1 to validation, by patient
        data = json.loads((out / "datalist.json").read_text())
        train = {e["patient"] for e in data["training"]}
        val = {e["patient"] for e in data["validation"]}
        self.assertEqual((len(train), len(val)), (2, 1))
        self.assertFalse(train & val)
        bands = {"6-10": {"training": 1, "validation": 1}, "none": {"training": 1, "validation": 0}}
        self.assertEqual(data["split"]["bands"], bands)
        entries = data["training"] + data["validation"]
        self.assertEqual({e["size_band"] for e in entries if e["patient"] == "LIDC-T-0002"}, {"none"})
        self.assertEqual(len(data["failed"]), 6)

    @parameterized.expand([
        [{"consensus": 0}, "consensus must be an integer >= 1"],
        [{"min_diameter_mm": 30.0, "max_diameter_mm": 3.0}, "min_diameter_mm < max_diameter_mm"],
        [{"val_fraction": 1.0}, "val_fraction"],
        [{"stratify_by": "mean"}, "stratify_by"],
        [{"cluster_distance_mm": -1.0}, "cluster_distance_mm"],
    ])
    def test_ill_arg(self, kwargs, message):
        with self.assertRaisesRegex(ValueError, message):
            convert_lidc(self.root, self.out, **kwargs)

    def test_no_lidc_folder(self):
        with tempfile.TemporaryDirectory() as empty:
            with self.assertRaisesRegex(ValueError, "root must hold LIDC series folders"):
                convert_lidc(empty, self.out)
        with self.assertRaisesRegex(ValueError, "root must be an existing folder"):
            convert_lidc(Path(self.tmp.name) / "nope", self.out)


if __name__ == "__main__":
    unittest.main()
