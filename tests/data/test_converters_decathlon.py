from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

import nibabel as nib
import numpy as np
from parameterized import parameterized

from bundle.data.converters.decathlon import (
    ConversionError,
    ConversionReport,
    check_geometry,
    convert_decathlon,
    lesion_records_from_mask,
    patient_band,
    read_nifti,
    size_band,
    stratified_split,
)
from bundle.data.datalist import load_datalist

REPO = Path(__file__).resolve().parents[2]
AFFINE = np.array([[-0.8, 0, 0, 10.0], [0, -0.8, 0, 20.0], [0, 0, 2.0, -30.0], [0, 0, 0, 1]])
SHAPE = (16, 15, 9)


def save(path: Path, array: np.ndarray, affine: np.ndarray = AFFINE) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(array), affine), str(path))
    return str(path)


def blob_label(centers: list[tuple[int, int, int]], radius: int = 2, value: int = 1) -> np.ndarray:
    """Label (16, 15, 9) with one cube of side ``2 * radius + 1`` per center."""
    label = np.zeros(SHAPE, dtype=np.uint8)
    for c in centers:
        label[tuple(slice(max(x - radius, 0), x + radius + 1) for x in c)] = value
    return label


TEST_BANDS = [
    [2.9, "<3"], [3.0, "3-4"], [3.99, "3-4"], [4.0, "4-6"], [7.0, "6-10"], [10.0, "10-30"], [30.0, "10-30"],
    [30.5, ">30"],
]


class TestHelpers(unittest.TestCase):
    @parameterized.expand(TEST_BANDS)
    def test_size_band(self, diameter, expected):
        self.assertEqual(size_band(diameter), expected)

    def test_patient_band(self):
        lesions = [{"diameter_mm": 3.5}, {"diameter_mm": 12.0}, {"diameter_mm": 40.0, "ignore": True}]
        self.assertEqual(patient_band(lesions, "largest"), "10-30")
        self.assertEqual(patient_band(lesions, "smallest"), "3-4")
        self.assertEqual(patient_band([{"diameter_mm": 5.0, "ignore": True}]), "none")
        with self.assertRaisesRegex(ValueError, "stratify_by"):
            patient_band(lesions, "median")

    def test_stratified_split(self):
        bands = ["3-4"] * 7 + ["4-6"] * 10 + ["10-30"] * 13 + ["none"] * 3
        groups = {f"p{i:02d}": b for i, b in enumerate(bands)}
        train, val = stratified_split(groups, 0.3, seed=0)
        self.assertEqual(len(val), round(len(groups) * 0.3))  # 9.9 -> 10
        self.assertEqual(sorted(train + val), sorted(groups))
        self.assertFalse(set(train) & set(val))
        for band in set(bands):
            n = bands.count(band)
            n_val = sum(groups[p] == band for p in val)
            self.assertIn(n_val, (int(np.floor(n * 0.3)), int(np.ceil(n * 0.3))), band)
        self.assertEqual(stratified_split(groups, 0.3, seed=0), (train, val))  # deterministic
        self.assertNotEqual(stratified_split(groups, 0.3, seed=1)[1], val)  # the seed matters
        self.assertEqual(stratified_split(groups, 0.0, seed=0), (sorted(groups), []))

    @parameterized.expand([[1.0], [-0.1]])
    def test_stratified_split_ill_fraction(self, fraction):
        with self.assertRaisesRegex(ValueError, "val_fraction"):
            stratified_split({"a": "3-4"}, fraction)

    def test_lesion_records_from_mask(self):
        label = blob_label([(3, 3, 2), (11, 10, 6)], radius=1)
        label[6, 6, 4] = label[7, 7, 5] = 1  # touching by a corner: one lesion with 26-connectivity
        records = lesion_records_from_mask(label, AFFINE, note="x")
        self.assertEqual(len(records), 3)
        self.assertEqual(records[0]["center_voxel"], [3.0, 3.0, 2.0])
        self.assertEqual(records[0]["box_voxel"], [[2, 2, 1], [5, 5, 4]])
        self.assertAlmostEqual(records[0]["volume_mm3"], 27 * 0.8 * 0.8 * 2.0, places=1)
        self.assertEqual(records[0]["note"], "x")
        self.assertIn("size_band", records[0])
        self.assertEqual(len(lesion_records_from_mask(label, AFFINE, connectivity=1)), 4)
        with self.assertRaisesRegex(ValueError, "connectivity"):
            lesion_records_from_mask(label, AFFINE, connectivity=4)
        with self.assertRaisesRegex(ValueError, "3-D"):
            lesion_records_from_mask(label[..., 0], AFFINE)

    def test_check_geometry(self):
        check_geometry(SHAPE + (4,), AFFINE, SHAPE, AFFINE + 1e-5, "lab.nii.gz", "img.nii.gz")  # channels, tolerance
        with self.assertRaisesRegex(ConversionError, r"^lab.nii.gz: geometry mismatch: label shape \(16, 15, 8\)"):
            check_geometry(SHAPE, AFFINE, (16, 15, 8), AFFINE, "lab.nii.gz", "img.nii.gz")
        shifted = AFFINE.copy()
        shifted[0, 3] += 0.5
        with self.assertRaisesRegex(ConversionError, "label affine differs .* img.nii.gz by up to 0.5"):
            check_geometry(SHAPE, AFFINE, SHAPE, shifted, "lab.nii.gz", "img.nii.gz")

    def test_read_nifti(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = save(Path(tmp) / "x.nii.gz", np.arange(8, dtype=np.int16).reshape(2, 2, 2))
            data, affine = read_nifti(path)
            np.testing.assert_array_equal(data, np.arange(8).reshape(2, 2, 2))
            np.testing.assert_allclose(affine, AFFINE)
            with self.assertRaisesRegex(ConversionError, rf"^{tmp}/y.nii.gz: mask file does not exist"):
                read_nifti(Path(tmp) / "y.nii.gz", "mask")

    def test_report_summary(self):
        report = ConversionReport(dataset="d", converted=["a"])
        self.assertTrue(report.ok)
        report.add_failure("b", OSError("disk"), "/x/b.nii.gz")
        self.assertFalse(report.ok)
        self.assertEqual(report.failed[0]["error"], "/x/b.nii.gz: OSError: disk")
        self.assertIn("FAILED b: /x/b.nii.gz: OSError: disk", report.summary())


class TestConvertDecathlon(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.root = Path(self.tmp.name) / "Task99_Test"
        image = np.random.default_rng(0).normal(size=SHAPE).astype(np.float32)
        for i, centers in enumerate([[(4, 4, 3)], [(4, 4, 3), (11, 10, 6)], [(8, 8, 4)], [(5, 9, 4)]]):
            save(self.root / "imagesTr" / f"case_{i}.nii.gz", image)
            save(self.root / "labelsTr" / f"case_{i}.nii.gz", blob_label(centers))
        save(self.root / "imagesTr" / "case_bad.nii.gz", image)
        save(self.root / "labelsTr" / "case_bad.nii.gz", blob_label([(4, 4, 3)])[:, :, :8])
        self.training = [
            {"image": f"./imagesTr/case_{i}.nii.gz", "label": f"./labelsTr/case_{i}.nii.gz"} for i in range(4)
        ]

    def tearDown(self):
        self.tmp.cleanup()

    def write_json(self, **extra) -> Path:
        path = self.root / "dataset.json"
        meta = {"name": "Test", "description": "d", "modality": {"0": "CT"}, "labels": {"0": "bg", "1": "x"}}
        path.write_text(json.dumps({**meta, **extra}))
        return path

    def test_missing_file_reported_rest_converted(self):
        training = self.training + [
            {"image": "./imagesTr/case_0.nii.gz", "label": "./labelsTr/missing.nii.gz"},
            {"image": "./imagesTr/case_1.nii.gz"},
            {"image": "./imagesTr/case_bad.nii.gz", "label": "./labelsTr/case_bad.nii.gz"},
            "not a dict",
            {"image": "./imagesTr/case_2.nii.gz", "label": 7},
        ]
        path = self.write_json(numTraining=10, training=training)
        out = Path(self.tmp.name) / "out"
        report = convert_decathlon(path, out, val_fraction=0.25, seed=0)
        self.assertEqual(report.converted, ["case_0", "case_1", "case_2", "case_3"])
        self.assertEqual(len(report.failed), 5)
        errors = [f["error"] for f in report.failed]
        self.assertIn(str(self.root / "labelsTr" / "missing.nii.gz"), errors[0])
        self.assertIn("label file does not exist", errors[0])
        self.assertEqual(report.failed[0]["file"], str(self.root / "labelsTr" / "missing.nii.gz"))
        self.assertRegex(errors[1], rf"^{path}: training entry 5 \(case_1\) has no 'label' key")
        self.assertRegex(errors[2], r"case_bad.nii.gz: geometry mismatch: label shape \(16, 15, 8\)")
        self.assertRegex(errors[3], "training entry 7 must be a dict")
        self.assertEqual(errors[4], f"{path}: entry 8: 'label' must be a non-empty path string, got 7.")
        self.assertEqual(report.warnings, [f"{path}: numTraining is 10 but the training list has 9."])
        self.assertEqual((report.n_training, report.n_validation), (3, 1))
        self.assertEqual(report.n_lesions, 5)
        training = load_datalist(out / "datalist.json", "training")  # the bundle's own reader accepts it
        validation = load_datalist(out / "datalist.json", "validation")
        self.assertEqual(sorted(e["case"] for e in training + validation), report.converted)
        case_1 = next(e for e in training + validation if e["case"] == "case_1")
        self.assertEqual(len(case_1["lesions"]), 2)
        self.assertEqual(case_1["lesions"][1]["center_voxel"], [11.0, 10.0, 6.0])
        self.assertEqual(Path(case_1["image"]), self.root / "imagesTr" / "case_1.nii.gz")  # referenced in place
        self.assertEqual(Path(case_1["label"]), self.root / "labelsTr" / "case_1.nii.gz")  # binary: in place
        self.assertEqual(len(json.loads((out / "datalist.json").read_text())["failed"]), 5)

    def test_given_validation_and_label_values(self):
        multi = blob_label([(4, 4, 3)], value=1) + blob_label([(11, 10, 6)], value=2)
        save(self.root / "labelsTr" / "case_multi.nii.gz", multi)
        training = self.training[:2] + [{"image": "./imagesTr/case_2.nii.gz", "label": "./labelsTr/case_multi.nii.gz"}]
        path = self.write_json(training=training, validation=self.training[3:])
        report = convert_decathlon(self.root, label_values=[2])  # a folder; output next to dataset.json
        self.assertTrue(report.ok, report.summary())
        self.assertEqual(report.datalist, (self.root / "datalist.json").resolve())
        data = json.loads(path.with_name("datalist.json").read_text())
        self.assertEqual([e["case"] for e in data["validation"]], ["case_3"])
        self.assertEqual(data["split"]["rule"], "validation list given by the source")
        multi_entry = data["training"][2]
        self.assertEqual(multi_entry["label"], "labels/case_multi.nii.gz")  # a binary copy, relative path
        copy = np.asarray(nib.load(str(self.root / "labels" / "case_multi.nii.gz")).dataobj)
        np.testing.assert_array_equal(copy, (multi == 2).astype(np.uint8))
        self.assertEqual([les["center_voxel"] for les in multi_entry["lesions"]], [[11.0, 10.0, 6.0]])
        # value 1 is not a lesion here: case_0's label is copied (empty), not used as it is
        self.assertEqual((data["training"][0]["label"], data["training"][0]["lesions"]), ("labels/case_0.nii.gz", []))

    def test_unreadable_image(self):
        (self.root / "imagesTr" / "case_0.nii.gz").write_bytes(b"not a nifti file")
        report = convert_decathlon(self.write_json(training=self.training), Path(self.tmp.name) / "o")
        self.assertEqual(len(report.converted), 3)
        self.assertRegex(report.failed[0]["error"], r"imagesTr/case_0.nii.gz: cannot read the image as NIfTI")

    def test_nothing_converted(self):
        path = self.write_json(training=[{"image": "./nope.nii.gz", "label": "./nope.nii.gz"}])
        report = convert_decathlon(path, Path(self.tmp.name) / "o")
        self.assertIsNone(report.datalist)
        self.assertFalse(report.ok)
        self.assertFalse((Path(self.tmp.name) / "o" / "datalist.json").exists())

    def test_ill_args(self):
        path = self.write_json(training=self.training)
        with self.assertRaisesRegex(ValueError, "dataset_json must be an existing"):
            convert_decathlon(self.root / "nope.json")
        with self.assertRaisesRegex(ValueError, "val_fraction"):
            convert_decathlon(path, val_fraction=1.5)
        with self.assertRaisesRegex(ValueError, "stratify_by"):
            convert_decathlon(path, stratify_by="mean")
        with self.assertRaisesRegex(ValueError, "label_values"):
            convert_decathlon(path, label_values=[0])
        path.write_text("{not json")
        with self.assertRaisesRegex(ValueError, "is not valid JSON"):
            convert_decathlon(path)
        path.write_text(json.dumps({"name": "x", "test": []}))
        with self.assertRaisesRegex(ValueError, "must hold a 'training' list"):
            convert_decathlon(path)


class TestScript(unittest.TestCase):
    def test_cli_exit_status(self):
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp) / "task"
            save(root / "imagesTr" / "a.nii.gz", np.zeros(SHAPE, np.float32))
            save(root / "labelsTr" / "a.nii.gz", blob_label([(5, 5, 4)]))
            entries = [{"image": "./imagesTr/a.nii.gz", "label": "./labelsTr/a.nii.gz"}]
            (root / "dataset.json").write_text(json.dumps({"name": "t", "training": entries}))
            cmd = [sys.executable, str(REPO / "scripts" / "convert_dataset.py"), "decathlon", "--root", str(root),
                   "--output_dir", str(Path(tmp) / "out")]
            ok = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp, timeout=120)
            self.assertEqual(ok.returncode, 0, ok.stderr)
            self.assertIn("1 case(s) converted, 0 failed", ok.stdout)
            entries.append({"image": "./imagesTr/a.nii.gz", "label": "./labelsTr/gone.nii.gz"})
            (root / "dataset.json").write_text(json.dumps({"name": "t", "training": entries}))
            bad = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp, timeout=120)
            self.assertEqual(bad.returncode, 1, bad.stderr)
            self.assertIn("1 case(s) converted, 1 failed", bad.stdout)
            self.assertIn("gone.nii.gz: label file does not exist", bad.stdout)


if __name__ == "__main__":
    unittest.main()
