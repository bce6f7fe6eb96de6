from __future__ import annotations

import unittest

import numpy as np

from bundle.data.synthetic.lesion_params import CT_KINDS, SHAPES, lesion_record, sample_lesion_params


class TestSampling(unittest.TestCase):
    def test_sample_lesion_params(self):
        rng = np.random.default_rng(0)
        draws = [sample_lesion_params(rng, "CT") for _ in range(500)]
        d = np.array([p["diameter_mm"] for p in draws])
        self.assertTrue(np.all((d >= 3.0) & (d <= 30.0)))
        self.assertTrue(0.2 < np.mean(d < 6.0) < 0.4)  # small nodules well represented
        self.assertTrue({p["kind"] for p in draws} == set(CT_KINDS))
        self.assertTrue({p["shape"] for p in draws} == set(SHAPES))
        self.assertFalse(any(p["shape"] == "spiculated" and p["diameter_mm"] < 8 for p in draws))
        mr = [sample_lesion_params(np.random.default_rng(5), "MR") for _ in range(2)]
        self.assertEqual(mr[0], mr[1])

    def test_lesion_record(self):
        mask = np.zeros((10, 10, 10), dtype=bool)
        mask[2:5, 3:6, 4:7] = True
        rec = lesion_record(mask, np.eye(4), offset=(10, 0, 0), kind="solid")
        self.assertEqual(rec["center_voxel"], [13.0, 4.0, 5.0])
        self.assertEqual(rec["box_voxel"], [[12, 3, 4], [15, 6, 7]])
        self.assertAlmostEqual(rec["volume_mm3"], 27.0)
        self.assertAlmostEqual(rec["diameter_mm"], round((6 * 27 / np.pi) ** (1 / 3), 2))
        self.assertEqual(rec["kind"], "solid")
        ring = np.zeros((9, 9, 1), dtype=bool)
        ring[1:8, 1:8] = True
        ring[2:7, 2:7] = False  # centroid in the hole: the nearest label voxel is used
        c = np.round(lesion_record(ring, np.eye(4))["center_voxel"]).astype(int)
        self.assertTrue(ring[tuple(c)])

    def test_ill_arg(self):
        with self.assertRaises(ValueError):
            sample_lesion_params(np.random.default_rng(0), "PET")
        with self.assertRaises(ValueError):
            sample_lesion_params(np.random.default_rng(0), "CT", (10.0, 5.0))
        with self.assertRaises(ValueError):
            lesion_record(np.zeros((3, 3, 3), dtype=bool), np.eye(4))


if __name__ == "__main__":
    unittest.main()
