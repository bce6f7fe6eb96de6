from __future__ import annotations

import logging
import tempfile
import unittest
from pathlib import Path

import nibabel as nib
import numpy as np
from monai.data import DataLoader, MetaTensor
from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged

from bundle.data.dataset import SafeDataset
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
