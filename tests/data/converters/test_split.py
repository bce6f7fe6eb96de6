from __future__ import annotations

import unittest

import numpy as np
from parameterized import parameterized

from bundle.data.converters.split import patient_band, stratified_split


class TestSplit(unittest.TestCase):
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


if __name__ == "__main__":
    unittest.main()
