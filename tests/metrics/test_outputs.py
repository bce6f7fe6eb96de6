from __future__ import annotations

import unittest

import torch
from monai.data import MetaTensor
from parameterized import parameterized

from bundle.metrics.outputs import LesionListsOutputTransform, case_lesion_lists
from tests.lesions.test_reference import AFFINE, spiculated_with_pieces

class TestLesionListsOutputTransform(unittest.TestCase):
    @parameterized.expand([("negative", -1.0), ("nan", float("nan")), ("inf", float("inf"))])
    def test_bad_gap_is_refused(self, _, gap):
        with self.assertRaisesRegex(ValueError, "merge_gap_mm"):
            LesionListsOutputTransform(merge_gap_mm=gap)

    def test_output_transform_scores_the_merged_lesions(self):
        label = torch.as_tensor(spiculated_with_pieces())[None].float()
        prob = torch.zeros((2, *label.shape[1:]))
        prob[1, 14, 14, 6] = 0.9  # a candidate at the body's centre
        prob[0] = 1 - prob[1]
        pred = MetaTensor(prob, affine=torch.as_tensor(AFFINE))
        candidates, lesions = case_lesion_lists(pred, label)
        self.assertEqual(len(candidates), 1)
        self.assertEqual(len(lesions), 2)  # the default gap merges the pieces
        y_pred, y = LesionListsOutputTransform(merge_gap_mm=0.0)({"pred": pred, "label": label})
        self.assertEqual(len(y[0]), 4)


if __name__ == "__main__":
    unittest.main()
