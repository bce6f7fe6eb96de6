from __future__ import annotations

import logging
import tempfile
import unittest
from pathlib import Path

import nibabel as nib
import numpy as np
from monai.data import DataLoader, MetaTensor
from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged
from parameterized import parameterized

from bundle.data.dataset import SafeDataset, describe_exception, error_record

# the shape of MONAI LoadImage's message when every reader failed: headline, then each reader's traceback
READER_TRACEBACKS = """LoadImage cannot find a suitable reader.
    Please install the reader libraries.
Traceback (most recent call last):
  File "x.py", line 1, in read
ValueError: a

The above exception was the direct cause of the following exception:

Traceback (most recent call last):
  File "y.py", line 2, in read
OSError: b
Traceback (most recent call last):
  File "z.py", line 3, in read
KeyError: 'c'
"""


def chained_error() -> Exception:
    """A MONAI-like chain: RuntimeError("applying transform <...>") raised from the real cause."""
    try:
        try:
            raise OSError("unexpected end of data\n  in gzip stream")
        except OSError as cause:
            raise RuntimeError(
                "applying transform <monai.transforms.io.dictionary.LoadImaged object at 0x7f>"
            ) from cause
    except RuntimeError as exc:
        return exc


class TestDescribeException(unittest.TestCase):
    @parameterized.expand(
        [
            [ValueError("bad value"), "ValueError: bad value"],
            [KeyError("image"), "KeyError: 'image'"],
            [RuntimeError(""), "RuntimeError: (no message)"],
            [chained_error(), "LoadImaged: OSError: unexpected end of data in gzip stream"],
            [
                RuntimeError(READER_TRACEBACKS),
                "RuntimeError: LoadImage cannot find a suitable reader. (OSError: b; KeyError: 'c')",
            ],
        ]
    )
    def test_one_line(self, exc, expected):
        self.assertEqual(describe_exception(exc), expected)

    def test_truncated(self):
        line = describe_exception(ValueError("x" * 1000), max_chars=50)
        self.assertEqual(len(line), 50)
        self.assertTrue(line.endswith("..."))

    def test_record_from_path(self):
        record = error_record("/data/ct_01.nii.gz", ValueError("boom"))
        self.assertEqual(
            record, {"case": "ct_01", "image": "/data/ct_01.nii.gz", "error": "/data/ct_01.nii.gz: ValueError: boom"}
        )


class TestSafeDataset(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        root = Path(self.tmp.name)
        self.good = root / "good.nii.gz"
        nib.save(nib.Nifti1Image(np.arange(60, dtype=np.float32).reshape(3, 4, 5), np.eye(4)), str(self.good))
        self.bad = root / "bad.nii.gz"
        self.bad.write_bytes(self.good.read_bytes()[:40])  # truncated gzip
        self.data = [{"image": str(self.good), "case": "good"}, {"image": str(self.bad), "case": "bad"}]
        self.transform = Compose([LoadImaged(keys="image", image_only=False), EnsureChannelFirstd(keys="image")])

    def tearDown(self):
        self.tmp.cleanup()

    def test_corrupt_file_gives_error_record(self):
        ds = SafeDataset(self.data, self.transform)
        good = ds[0]
        self.assertIsInstance(good["image"], MetaTensor)
        self.assertEqual(tuple(good["image"].shape), (1, 3, 4, 5))
        with self.assertLogs("bundle.data.dataset", level=logging.DEBUG) as logs:
            bad = ds[1]
        self.assertEqual(set(bad), {"case", "image", "error"})
        self.assertEqual((bad["case"], bad["image"]), ("bad", str(self.bad)))
        self.assertTrue(bad["error"].startswith(f"{self.bad}: "), bad["error"])
        self.assertNotIn("\n", bad["error"])
        self.assertNotIn("Traceback", bad["error"])
        self.assertIn("Traceback", "\n".join(logs.output))  # the traceback goes to the DEBUG log

    def test_iteration_and_loader(self):
        ds = SafeDataset(self.data, self.transform)
        self.assertEqual(len(list(ds)), 2)  # IndexError still ends iteration
        with self.assertRaises(IndexError):
            ds[2]
        batches = list(DataLoader(ds, batch_size=1, num_workers=0))
        self.assertEqual(batches[1]["case"], ["bad"])
        self.assertIn("error", batches[1])
        self.assertNotIn("error", batches[0])

    def test_custom_keys(self):
        ds = SafeDataset([{"img": str(self.bad)}], LoadImaged(keys="img"), image_key="img", case_key="name")
        self.assertEqual(ds[0]["case"], "bad")


if __name__ == "__main__":
    unittest.main()
