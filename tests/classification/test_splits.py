from __future__ import annotations

import unittest
from collections import Counter

from parameterized import parameterized

from bundle.classification.splits import stratified_kfold, train_val_split

# (labels, n_splits) for the k-fold properties
KFOLD_CASES = [
    [[0] * 8 + [1] * 8, 4],
    [[0] * 6 + [1] * 5 + [2] * 3 + [3] * 3, 4],
    [[1, 0, 1, 0, 1, 0, 0], 3],
]


class TestSplits(unittest.TestCase):
    @parameterized.expand(KFOLD_CASES)
    def test_kfold_partition_stratified_deterministic(self, labels, n_splits):
        folds = stratified_kfold(labels, n_splits=n_splits, seed=3)
        self.assertEqual(folds, stratified_kfold(labels, n_splits=n_splits, seed=3))
        val = [i for _, v in folds for i in v]
        self.assertEqual(sorted(val), list(range(len(labels))))  # every item in exactly one validation fold
        for train, v in folds:
            self.assertEqual(sorted(train + v), list(range(len(labels))))
            self.assertLessEqual(abs(len(v) - len(labels) / n_splits), 1)
            for c, total in Counter(labels).items():
                n_c = sum(labels[i] == c for i in v)
                self.assertLessEqual(abs(n_c - total / n_splits), 1)  # each class spread evenly

    def test_kfold_seed_changes_folds(self):
        labels = [0] * 8 + [1] * 8
        self.assertNotEqual(stratified_kfold(labels, 4, seed=0), stratified_kfold(labels, 4, seed=1))

    def test_train_val_split(self):
        datalist = [{"label": c, "i": i} for i, c in enumerate([0] * 8 + [1] * 8 + [2])]
        train, val = train_val_split(datalist, val_fraction=0.2, seed=0)
        self.assertEqual(Counter(d["label"] for d in val), {0: 2, 1: 2})  # the single class-2 item trains
        self.assertEqual(len(train) + len(val), len(datalist))
        self.assertEqual((train, val), train_val_split(datalist, val_fraction=0.2, seed=0))
        self.assertEqual([d["i"] for d in train], sorted(d["i"] for d in train))

    def test_ill_arg(self):
        with self.assertRaisesRegex(ValueError, "n_splits"):
            stratified_kfold([0, 1, 0, 1], n_splits=1)
        with self.assertRaisesRegex(ValueError, "labels"):
            stratified_kfold([0, 1], n_splits=3)
        with self.assertRaisesRegex(ValueError, "val_fraction"):
            train_val_split([{"label": 0}], val_fraction=1.0)
        with self.assertRaisesRegex(ValueError, "label"):
            train_val_split([{"image": "x"}], val_fraction=0.5)

if __name__ == "__main__":
    unittest.main()
