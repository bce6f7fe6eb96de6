"""The bad-input catalogue of docs/reliability.md, at the function level: every input goes through the inference
loading and preprocessing (``LoadVolumed`` + ``ct_preprocessing``) inside ``SafeDataset`` and must give an error
record whose one line names the file and the problem, or (for borderline inputs) a finite image in [0, 1]."""

from __future__ import annotations

import tempfile
import unittest
from pathlib import Path

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import Compose, EnsureChannelFirstd, LoadImage
from parameterized import parameterized

from bundle.io.cases import list_cases
from bundle.io.checks import CheckGeometryd
from bundle.data.dataset import SafeDataset
from bundle.data.datalist import load_datalist
from bundle.io.readers import LargestSeriesITKReader, LoadVolumed
from bundle.engines.pretrained import load_pretrained, read_checkpoint
from bundle.transforms import ct_preprocessing
from tests.reliability import inputs as I

# (name, writer, pattern the one-line error must contain); the error must also name the written path
ERROR_CASES = [
    ("non_image_named_nii", I.text_as_nifti, "unreadable header"),
    ("empty_file", I.empty_file, "unreadable header: Empty file"),
    ("truncated_gzip", I.truncated_gzip, "truncated"),
    ("truncated_nifti", I.truncated_nifti, "truncated: .* bytes of image data"),
    ("corrupt_gzip", I.corrupt_gzip, "unreadable header|corrupt \\(gzip error"),
    ("four_d", I.four_d, "2 channels or time points"),
    ("zero_size_dimension", I.zero_size, "zero-size dimension: shape \\(20, 0, 8\\)"),
    ("zero_spacing", I.pixdim((0.0, 2.0, 5.0), "sp0.nii"), "spacing \\(0.0, 2.0, 5.0\\) mm is outside"),
    ("negative_spacing", I.pixdim((-2.0, 2.0, 5.0), "spneg.nii"), "spacing \\(-2.0, 2.0, 5.0\\) mm is outside"),
    ("spacing_1e6", I.affine_spacing((2.0, 2.0, 1e6), "sp1e6.nii.gz"), "1000000.0\\) mm is outside"),
    ("spacing_1e-6", I.affine_spacing((1e-6, 2.0, 5.0), "sptiny.nii.gz"), "1e-06, 2.0, 5.0\\) mm is outside"),
    ("huge_extent", I.huge_extent, "extent \\(3600.0, 360.0, 360.0\\) mm exceeds 3000 mm"),
    ("all_nan", I.all_nan, "2880 NaN/Inf voxels of 2880"),
    ("some_nan", I.some_nan, "3 NaN/Inf voxels of 2880"),
    ("dicom_missing_slice", I.dicom_missing, "missing slices: a 7.500 mm gap between s002.dcm and s003.dcm"),
    ("dicom_duplicate_slice", I.dicom_duplicate, "duplicate slices: s001.dcm and s002.dcm share position 2.500"),
    ("dicom_mixed_sizes", I.dicom_mixed, "mixed sizes or geometry \\(3 of its 4 slices"),
    ("dicom_no_pixel_data", I.dicom_no_pixels, "no readable DICOM image slices"),
    ("dicom_garbage", I.dicom_garbage, "no readable DICOM image slices"),
    ("dicom_truncated_pixels", I.dicom_truncated_pixels, "is truncated: 20 bytes of pixel data, its header needs 60"),
    ("one_voxel", I.one_voxel, "too small to hold a lesion: size \\(1, 1, 1\\) has fewer than 3 voxels along axes"),
    ("one_slice", I.one_slice, "too small to hold a lesion: size \\(20, 18, 1\\) has fewer than 3 .* axis 3\\."),
]

# borderline inputs that are processed: a finite (1, X, Y, Z) image in [0, 1]
ACCEPTED_CASES = [
    ("constant", I.constant, (20, 18, 8)),
    ("extreme_intensities", I.extreme, (20, 18, 8)),
    ("dicom_regular_series", I.dicom_good, (3, 3, 2)),
]


def inference_loading() -> Compose:
    """The inference preprocessing (configs/inference.json), at the input's spacing to stay small."""
    steps = ct_preprocessing(pixdim=(2.0, 2.0, 5.0), normalize="window", load=False).transforms
    return Compose([LoadVolumed("image", image_only=False), EnsureChannelFirstd("image"), *steps])


class TestBadInputCatalogue(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.pipeline = inference_loading()

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.root = Path(self.tmp.name)

    def tearDown(self):
        self.tmp.cleanup()

    @parameterized.expand(ERROR_CASES)
    def test_error_names_file_and_problem(self, _, write, pattern):
        path = write(self.root)
        record = SafeDataset([{"image": str(path), "case": "c"}], self.pipeline)[0]
        self.assertIn("error", record, "the input was accepted")
        self.assertIn(str(path), record["error"])
        self.assertRegex(record["error"], pattern)
        self.assertNotIn("\n", record["error"])
        self.assertNotIn("Traceback", record["error"])

    @parameterized.expand(ACCEPTED_CASES)
    def test_borderline_input_is_processed(self, _, write, shape):
        path = write(self.root)
        out = SafeDataset([{"image": str(path), "case": "c"}], self.pipeline)[0]
        self.assertNotIn("error", out, out.get("error"))
        image = out["image"]
        self.assertEqual(tuple(image.shape), (1, *shape))
        self.assertTrue(torch.isfinite(image).all())
        self.assertGreaterEqual(float(image.min()), 0.0)
        self.assertLessEqual(float(image.max()), 1.0)

    def test_opt_ins_read_what_is_refused_by_default(self):
        nan_path, gap_path = I.some_nan(self.root), I.dicom_missing(self.root)
        with self.assertLogs("bundle.io.checks", "WARNING"):
            LargestSeriesITKReader(allow_nonfinite=True).read(nan_path)
        with self.assertLogs("bundle.io.readers", "WARNING"):
            LargestSeriesITKReader(allow_irregular_slices=True).read(gap_path)
        four_d = LargestSeriesITKReader(max_channels=None).read(I.four_d(self.root))  # 4-D: read by ITK
        self.assertEqual(tuple(four_d.GetLargestPossibleRegion().GetSize()), (20, 18, 8, 2))
        one_voxel = LoadImage(reader=LargestSeriesITKReader(min_size=None), image_only=True)(I.one_voxel(self.root))
        self.assertEqual(tuple(one_voxel.shape), (1, 1, 1))


class TestFolderAndDatalistErrors(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.root = Path(self.tmp.name)

    def tearDown(self):
        self.tmp.cleanup()

    def test_empty_and_missing_dataset_dir(self):
        (self.root / "empty").mkdir()
        with self.assertRaisesRegex(ValueError, "empty.*empty folder"):
            list_cases(self.root / "empty")
        with self.assertRaisesRegex(ValueError, "absent.*does not exist"):
            list_cases(self.root / "absent")

    def test_folder_without_cases(self):
        (self.root / "docs").mkdir()
        (self.root / "docs" / "notes.txt").write_text("text")
        with self.assertRaisesRegex(ValueError, "at least one case.*notes.txt: not a recognised image file"):
            list_cases(self.root / "docs")

    def test_datalist_missing_key_path_and_json(self):
        image = I.good_nifti(self.root)
        no_label = I.write_datalist(self.root, [{"image": str(image)}], "no_label.json")
        with self.assertRaisesRegex(ValueError, "no_label.json: training entry 0 .* has no 'label' key"):
            load_datalist(no_label)
        gone = I.write_datalist(self.root, [{"image": str(image), "label": "gone.nii.gz"}], "gone.json")
        with self.assertRaisesRegex(ValueError, "gone.json: training entry 0 .* label path does not exist: .*gone"):
            load_datalist(gone)
        (self.root / "broken.json").write_text("{not json")
        with self.assertRaisesRegex(ValueError, "broken.json is not valid JSON"):
            load_datalist(self.root / "broken.json")

    @parameterized.expand([
        ("shape", (20, 18, 7), np.diag([2.0, 2.0, 5.0, 1.0]), "spatial shape \\(20, 18, 7\\) vs \\(20, 18, 8\\)"),
        ("affine", (20, 18, 8), np.diag([2.0, 2.0, 2.5, 1.0]), "affines differ by up to 2.5 mm"),
    ])  # fmt: skip
    def test_label_geometry_mismatch(self, _, label_shape, label_affine, pattern):
        image = MetaTensor(torch.zeros(1, 20, 18, 8), affine=np.diag([2.0, 2.0, 5.0, 1.0]))
        image.meta["filename_or_obj"] = "/data/img.nii.gz"
        label = MetaTensor(torch.zeros(1, *label_shape), affine=label_affine)
        label.meta["filename_or_obj"] = "/data/lab.nii.gz"
        with self.assertRaisesRegex(ValueError, "label '/data/lab.nii.gz' does not match image '/data/img.nii.gz'"):
            CheckGeometryd(["image", "label"])({"image": image, "label": label})
        with self.assertRaisesRegex(ValueError, pattern):
            CheckGeometryd(["image", "label"])({"image": image, "label": label})
        same = MetaTensor(torch.zeros(1, 20, 18, 8), affine=np.diag([2.0, 2.0, 5.0, 1.0]))
        CheckGeometryd(["image", "label"])({"image": image, "label": same})  # matching geometry passes


class TestCheckpointErrors(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.root = Path(self.tmp.name)

    def tearDown(self):
        self.tmp.cleanup()

    def test_wrong_architecture(self):
        path = self.root / "other.pt"
        torch.save(torch.nn.Sequential(torch.nn.Linear(3, 2)).state_dict(), path)  # names 0.weight, 0.bias
        with self.assertRaisesRegex(ValueError, f"'{path}' does not fit the network.*another architecture"):
            load_pretrained(torch.nn.Conv3d(1, 2, 3), path)

    def test_corrupt_and_incomplete_checkpoint(self):
        full = self.root / "full.pt"
        torch.save({"model": torch.nn.Linear(3, 2).state_dict()}, full)
        cut = self.root / "cut.pt"
        cut.write_bytes(full.read_bytes()[:200])
        with self.assertRaisesRegex(ValueError, f"checkpoint '{cut}' is not a readable torch.save file") as ctx:
            read_checkpoint(cut)
        self.assertNotIn("\n", str(ctx.exception))
        with self.assertRaisesRegex(ValueError, f"checkpoint '{full}' lacks the entries \\['optimizer'\\]"):
            read_checkpoint(full, ["model", "optimizer"])
        self.assertIn("model", read_checkpoint(full, ["model"]))
