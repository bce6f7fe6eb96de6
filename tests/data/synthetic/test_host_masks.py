from __future__ import annotations

import unittest

import numpy as np

from bundle.data.synthetic.host_masks import READER_MARGIN_MM, known_lesion_mask
from bundle.transforms.lung_mask import lung_mask
from tests.data.synthetic.phantom_fixtures import AFFINE, SPACING, make_phantom


class TestKnownLesionMask(unittest.TestCase):
    def test_known_lesion_mask(self):
        hu, truth = make_phantom()
        blob = (np.indices(hu.shape)[0] - 53) ** 2 + (np.indices(hu.shape)[1] - 27) ** 2 <= 25
        blob &= truth["lung_left"] & (np.indices(hu.shape)[2] >= 8) & (np.indices(hu.shape)[2] < 12)
        hu[blob] = 30.0  # a tumour against the lateral wall of the left lung
        region = lung_mask(hu, SPACING, closing_mm=0.0)
        center_mm = (AFFINE[:3, :3] @ [54, 27, 10] + AFFINE[:3, 3]).tolist()
        meta = {"host_id": "phantom", "known_lesion_roi": {"center_mm": center_mm, "radii_mm": [10.0, 10.0, 10.0]}}
        tumour, roi = known_lesion_mask(hu, AFFINE, meta, region)
        self.assertGreater((tumour & blob).sum() / blob.sum(), 0.7)
        self.assertTrue(np.all(roi[tumour]))
        self.assertFalse(np.any(tumour & ~truth["body"]))
        empty, roi0 = known_lesion_mask(hu, AFFINE, {"host_id": "phantom"})
        self.assertFalse(empty.any() or roi0.any())

    def test_reader_outlined_lesion(self):
        hu, _ = make_phantom()
        outlined = np.zeros(hu.shape, dtype=bool)
        outlined[50:53, 25:28, 9:11] = True
        tumour, keep_free = known_lesion_mask(hu, AFFINE, {"host_id": "phantom", "known_lesion_mask": outlined})
        np.testing.assert_array_equal(tumour, outlined)  # taken as it is, no re-segmentation
        idx = np.indices(hu.shape).reshape(3, -1).T * np.asarray(SPACING)
        inside = idx[outlined.ravel()]
        nearest = np.min(np.linalg.norm(idx[:, None, :] - inside[None, :, :], axis=2), axis=1).reshape(hu.shape)
        np.testing.assert_array_equal(keep_free, nearest <= READER_MARGIN_MM)


if __name__ == "__main__":
    unittest.main()
