from __future__ import annotations

import json
import tempfile
import unittest
from pathlib import Path

import nibabel as nib
import numpy as np
from parameterized import parameterized

from bundle.data.converters.isles import convert_isles, find_isles_cases
from bundle.data.datalist import load_datalist

AFFINE = np.array([[-2.0, 0, 0, 90.0], [0, 2.0, 0, -120.0], [0, 0, 2.0, -70.0], [0, 0, 0, 1]])
SHAPE = (14, 13, 8)


def save(path: Path, array: np.ndarray, affine: np.ndarray = AFFINE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(array), affine), str(path))
    return path


def mask_with_lesions(value: int = 1) -> np.ndarray:
    """Two lesions: a 3x3x3 cube at (3, 3, 2) and two voxels touching by a corner at (9, 9, 5)-(10, 10, 6)."""
    mask = np.zeros(SHAPE, dtype=np.uint8)
    mask[2:5, 2:5, 1:4] = value
    mask[9, 9, 5] = mask[10, 10, 6] = value
    return mask


def write_case(root: Path, n: int, mask: np.ndarray | None = None, mask_affine: np.ndarray = AFFINE,
               image: np.ndarray | None = None) -> tuple[Path, Path]:
    sub, ses = f"sub-strokecase{n:04d}", "ses-0001"
    image_path = root / "rawdata" / sub / ses / "dwi" / f"{sub}_{ses}_dwi.nii.gz"
    save(image_path, np.ones(SHAPE, np.float32) if image is None else image)
    save(root / "rawdata" / sub / ses / "dwi" / f"{sub}_{ses}_adc.nii.gz", np.ones(SHAPE, np.float32))
    save(root / "rawdata" / sub / ses / "anat" / f"{sub}_{ses}_FLAIR.nii.gz", np.ones((20, 20, 10), np.float32))
    mask_path = root / "derivatives" / sub / ses / f"{sub}_{ses}_msk.nii.gz"
    if mask is not None:
        save(mask_path, mask, mask_affine)
    return image_path, mask_path


class TestConvertIsles(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.root = Path(self.tmp.name) / "ISLES-2022"
        self.out = Path(self.tmp.name) / "out"

    def tearDown(self):
        self.tmp.cleanup()

    def test_good_and_mismatch(self):
        good_image, good_mask = write_case(self.root, 1, mask_with_lesions())
        _, bad_mask = write_case(self.root, 2, mask_with_lesions()[:, :, :7])  # one slice short
        report = convert_isles(self.root, self.out, val_fraction=0.0)
        self.assertEqual(report.converted, ["sub-strokecase0001_ses-0001"])
        self.assertEqual(len(report.failed), 1)
        failure = report.failed[0]
        self.assertEqual((failure["case"], failure["file"]), ("sub-strokecase0002_ses-0001", str(bad_mask)))
        self.assertTrue(failure["error"].startswith(f"{bad_mask}: geometry mismatch: label shape (14, 13, 7)"))
        self.assertNotIn("\n", failure["error"])
        entries = load_datalist(self.out / "datalist.json", "training")
        self.assertEqual(len(entries), 1)
        entry = entries[0]
        self.assertEqual((Path(entry["image"]), Path(entry["label"])), (good_image, good_mask))  # in place
        self.assertEqual(entry["patient"], "sub-strokecase0001")
        lesions = entry["lesions"]
        self.assertEqual(len(lesions), 2)  # the corner-touching pair is one lesion (26-connectivity)
        self.assertEqual(lesions[0]["center_voxel"], [3.0, 3.0, 2.0])
        self.assertEqual(lesions[0]["center_mm"], [84.0, -114.0, -66.0])
        self.assertAlmostEqual(lesions[0]["volume_mm3"], 27 * 8.0)
        self.assertEqual(lesions[1]["box_voxel"], [[9, 9, 5], [11, 11, 7]])
        self.assertEqual(lesions[0]["size_band"], "6-10")  # (6 * 216 / pi) ** (1 / 3) = 7.4 mm
        data = json.loads((self.out / "datalist.json").read_text())
        self.assertEqual(data["failed"], report.failed)
        self.assertEqual(data["modality"], {"0": "DWI"})

    def test_other_errors(self):
        write_case(self.root, 1, mask_with_lesions())
        shifted = AFFINE.copy()
        shifted[:3, 3] += 1.0
        _, shifted_mask = write_case(self.root, 2, mask_with_lesions(), mask_affine=shifted)
        write_case(self.root, 3, mask=None)
        image_4, _ = write_case(self.root, 4, mask_with_lesions())
        image_4.write_bytes(b"\x1f\x8b garbage")
        image_5, _ = write_case(self.root, 5, mask_with_lesions(), image=np.ones(SHAPE + (2,), np.float32))
        write_case(self.root, 6, mask_with_lesions(value=2), mask_affine=AFFINE + 1e-5)  # within tolerance
        no_image = self.root / "rawdata" / "sub-strokecase0007" / "ses-0001" / "dwi"
        no_image.mkdir(parents=True)
        report = convert_isles(self.root, self.out, modality="dwi")
        self.assertEqual(report.converted, ["sub-strokecase0001_ses-0001", "sub-strokecase0006_ses-0001"])
        errors = {f["case"][:18]: f["error"] for f in report.failed}
        self.assertRegex(errors["sub-strokecase0002"], rf"^{shifted_mask}: geometry mismatch: label affine differs")
        missing = self.root / "derivatives" / "sub-strokecase0003" / "ses-0001"
        self.assertEqual(errors["sub-strokecase0003"], f"{missing}: expected exactly one *_msk.nii.gz lesion mask "
                         "here, found 0.")
        self.assertRegex(errors["sub-strokecase0004"], rf"^{image_4}: cannot read the image as NIfTI")
        self.assertEqual(errors["sub-strokecase0005"], f"{image_5}: image must be 3-D, got shape (14, 13, 8, 2).")
        self.assertEqual(errors["sub-strokecase0007"], f"{no_image}: expected exactly one *_dwi.nii.gz image in this "
                         "folder, found 0.")
        # a 0/2 mask is not used as it is: a 0/1 copy is written and referenced
        data = json.loads((self.out / "datalist.json").read_text())
        case_6 = next(e for e in data["training"] + data["validation"] if e["case"].startswith("sub-strokecase0006"))
        self.assertEqual(case_6["label"], "labels/sub-strokecase0006_ses-0001_msk.nii.gz")
        copy = np.asarray(nib.load(str(self.out / case_6["label"])).dataobj)
        np.testing.assert_array_equal(copy, mask_with_lesions(value=1))
        self.assertEqual((report.n_training, report.n_validation), (1, 1))  # round(2 * 0.3) = 1 subject

    def test_adc_modality(self):
        write_case(self.root, 1, mask_with_lesions())
        cases = find_isles_cases(self.root, "adc")
        self.assertTrue(cases[0]["image"].endswith("_adc.nii.gz"))
        self.assertEqual(convert_isles(self.root, self.out, modality="adc").converted, ["sub-strokecase0001_ses-0001"])

    @parameterized.expand([
        [{"modality": "flair"}, "modality must be one of"],
        [{"val_fraction": 1.0}, "val_fraction"],
        [{"stratify_by": "median"}, "stratify_by"],
    ])
    def test_ill_arg(self, kwargs, message):
        write_case(self.root, 1, mask_with_lesions())
        with self.assertRaisesRegex(ValueError, message):
            convert_isles(self.root, self.out, **kwargs)

    def test_not_an_isles_folder(self):
        with self.assertRaisesRegex(ValueError, "rawdata/sub-"):
            convert_isles(self.tmp.name, self.out)


if __name__ == "__main__":
    unittest.main()
