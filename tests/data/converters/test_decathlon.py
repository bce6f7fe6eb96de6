from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

import nibabel as nib
import numpy as np

from bundle.data.converters.decathlon import convert_decathlon
from bundle.data.datalist import load_datalist
from tests.data.converters.nifti_fixtures import SHAPE, blob_label, save

REPO = Path(__file__).resolve().parents[3]


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
            cmd = [sys.executable, "-m", "scripts.convert_dataset", "decathlon", "--root", str(root),
                   "--output_dir", str(Path(tmp) / "out")]
            ok = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=120)
            self.assertEqual(ok.returncode, 0, ok.stderr)
            self.assertIn("1 case(s) converted, 0 failed", ok.stdout)
            entries.append({"image": "./imagesTr/a.nii.gz", "label": "./labelsTr/gone.nii.gz"})
            (root / "dataset.json").write_text(json.dumps({"name": "t", "training": entries}))
            bad = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=120)
            self.assertEqual(bad.returncode, 1, bad.stderr)
            self.assertIn("1 case(s) converted, 1 failed", bad.stdout)
            self.assertIn("gone.nii.gz: label file does not exist", bad.stdout)


if __name__ == "__main__":
    unittest.main()
