from __future__ import annotations

import unittest

from monai.bundle import ConfigParser
from parameterized import parameterized

from bundle.lesions.reference import MERGE_GAP_MM

EVALUATIONS = [
    ("validation", ["configs/train.json"], "validate#key_metric#val_cpm#output_transform"),
    ("heldout", ["configs/train.json", "configs/evaluate.json"], "validate#key_metric#heldout_cpm#output_transform"),
    ("mri", ["configs/train.json", "configs/evaluate.json", "configs/variants/mri_train.json",
             "configs/variants/mri_evaluate.json"],
     "validate#key_metric#heldout_cpm#output_transform"),
]


class TestMergeGapKey(unittest.TestCase):
    @parameterized.expand(EVALUATIONS)
    def test_every_evaluation_reads_the_one_merge_gap_key(self, _, files, key):
        parser = ConfigParser()
        parser.read_config(files)
        self.assertIn(key, parser)
        self.assertEqual(parser.get_parsed_content(key).merge_gap_mm, MERGE_GAP_MM)
        parser["merge_gap_mm"] = 0.0
        parser.parse()
        self.assertEqual(parser.get_parsed_content(key).merge_gap_mm, 0.0)


if __name__ == "__main__":
    unittest.main()
