from __future__ import annotations

import math
import unittest

import numpy as np
import torch
import torch.nn as nn
from parameterized import parameterized

from bundle.classification.metrics import (
    bootstrap_auc_ci,
    classification_metrics,
    confusion_matrix,
    count_parameters,
    latency_ms_per_image,
    model_size_mb,
    roc_auc,
)


def binary_probs(p1):
    p1 = np.asarray(p1, dtype=float)
    return np.stack([1 - p1, p1], 1)


# (y_true, probability of class 1, expected AUC); the third: 3 of the 4 (pos, neg) pairs are ordered right
AUC_CASES = [
    [[0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9], 1.0],
    [[0, 0, 1, 1], [0.9, 0.8, 0.2, 0.1], 0.0],
    [[0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8], 0.75],
    [[0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5], 0.5],
]


class TestAUC(unittest.TestCase):
    @parameterized.expand(AUC_CASES)
    def test_binary_auc(self, y, p1, expected):
        self.assertAlmostEqual(roc_auc(y, binary_probs(p1)), expected)

    def test_multiclass_auc(self):
        y = [0, 1, 2, 0, 1, 2]
        perfect = np.eye(3)[y] * 0.8 + 0.2 / 3
        self.assertAlmostEqual(roc_auc(y, perfect), 1.0)
        # class 3 absent from y_true: averaged over the present classes only
        probs = np.concatenate([perfect, np.zeros((6, 1))], 1)
        self.assertAlmostEqual(roc_auc(y, probs), 1.0)
        self.assertTrue(math.isnan(roc_auc([1, 1], binary_probs([0.2, 0.9]))))

    def test_bootstrap_known_cases(self):
        low, high, n = bootstrap_auc_ci([0, 0, 1, 1, 0, 1], binary_probs([0.1, 0.2, 0.8, 0.9, 0.3, 0.7]),
                                        n_bootstrap=200, seed=0)
        self.assertEqual((low, high), (1.0, 1.0))  # perfect separation survives every resample
        self.assertGreater(n, 150)
        self.assertLessEqual(n, 200)
        y = [0] * 10 + [1] * 10
        rng = np.random.default_rng(1)
        p1 = np.clip(np.asarray(y) * 0.3 + rng.random(20) * 0.7, 0, 1)
        auc = roc_auc(y, binary_probs(p1))
        low, high, _ = bootstrap_auc_ci(y, binary_probs(p1), n_bootstrap=300, seed=0)
        self.assertLess(low, auc)
        self.assertGreater(high, auc)
        self.assertEqual((low, high), bootstrap_auc_ci(y, binary_probs(p1), n_bootstrap=300, seed=0)[:2])
        self.assertNotEqual((low, high), bootstrap_auc_ci(y, binary_probs(p1), n_bootstrap=300, seed=1)[:2])
        narrow = bootstrap_auc_ci(y, binary_probs(p1), n_bootstrap=300, confidence=0.5, seed=0)
        self.assertGreaterEqual(narrow[0], low)
        self.assertLessEqual(narrow[1], high)

    def test_bootstrap_groups(self):
        y, p1 = [0, 1, 0, 1, 0, 1], [0.1, 0.6, 0.7, 0.9, 0.2, 0.3]
        auc = roc_auc(y, binary_probs(p1))
        # one group: every resample is the whole set, so the interval collapses onto the AUC
        low, high, n = bootstrap_auc_ci(y, binary_probs(p1), n_bootstrap=20, groups=["a"] * 6)
        self.assertEqual((low, high, n), (auc, auc, 20))
        # groups of 2 move together: the resamples differ from the per-image bootstrap
        grouped = bootstrap_auc_ci(y, binary_probs(p1), n_bootstrap=200, seed=0, groups=[0, 0, 1, 1, 2, 2])
        self.assertNotEqual(grouped, bootstrap_auc_ci(y, binary_probs(p1), n_bootstrap=200, seed=0))
        self.assertLessEqual(grouped[0], grouped[1])
        with self.assertRaisesRegex(ValueError, "groups"):
            bootstrap_auc_ci(y, binary_probs(p1), groups=[0, 1])

    def test_bootstrap_single_class(self):
        low, high, n = bootstrap_auc_ci([1, 1, 1], binary_probs([0.2, 0.5, 0.9]), n_bootstrap=10)
        self.assertTrue(math.isnan(low) and math.isnan(high))
        self.assertEqual(n, 0)

    def test_ill_arg(self):
        with self.assertRaisesRegex(ValueError, "probs"):
            roc_auc([0, 1], np.array([0.2, 0.8]))
        with self.assertRaisesRegex(ValueError, "y_true"):
            roc_auc([0, 1, 1], binary_probs([0.2, 0.8]))
        with self.assertRaisesRegex(ValueError, "class indices"):
            roc_auc([0, 2], binary_probs([0.2, 0.8]))
        with self.assertRaisesRegex(ValueError, "n_bootstrap"):
            bootstrap_auc_ci([0, 1], binary_probs([0.2, 0.8]), n_bootstrap=0)
        with self.assertRaisesRegex(ValueError, "confidence"):
            bootstrap_auc_ci([0, 1], binary_probs([0.2, 0.8]), confidence=1.0)


class TestSummary(unittest.TestCase):
    def test_confusion_matrix(self):
        m = confusion_matrix([0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 0, 2], 3)
        np.testing.assert_array_equal(m, [[1, 1, 0], [0, 1, 0], [1, 0, 2]])
        with self.assertRaisesRegex(ValueError, "equal length"):
            confusion_matrix([0, 1], [0], 2)
        with self.assertRaisesRegex(ValueError, "labels must be in"):
            confusion_matrix([0, 3], [0, 1], 2)

    def test_classification_metrics(self):
        y = [0, 0, 1, 1]
        m = classification_metrics(y, binary_probs([0.1, 0.6, 0.35, 0.8]), ["normal", "pneumonia"], n_bootstrap=50)
        self.assertEqual(m["n"], 4)
        self.assertAlmostEqual(m["accuracy"], 0.5)
        self.assertAlmostEqual(m["auc"], 0.75)
        self.assertEqual(m["confusion_matrix"], [[1, 1], [1, 1]])
        self.assertEqual(m["class_names"], ["normal", "pneumonia"])
        self.assertLessEqual(m["auc_ci"][0], m["auc_ci"][1])
        with self.assertRaisesRegex(ValueError, "class_names"):
            classification_metrics(y, binary_probs([0.1, 0.6, 0.35, 0.8]), ["a", "b", "c"])

    def test_size_params_latency(self):
        net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.LazyLinear(2))
        net(torch.rand(1, 1, 8, 8))
        n = count_parameters(net)
        self.assertEqual(n, 4 * 9 + 4 + 144 * 2 + 2)
        self.assertGreater(model_size_mb(net), n * 4 / 1e6)  # float32 tensors plus pickle overhead
        self.assertLess(model_size_mb(net), n * 4 / 1e6 + 0.01)
        threads = torch.get_num_threads()
        net.train()
        self.assertGreater(latency_ms_per_image(net, (2, 1, 8, 8), threads=1, repeats=2, warmup=1), 0.0)
        self.assertEqual(torch.get_num_threads(), threads)  # restored
        self.assertTrue(net.training)  # mode restored
        with self.assertRaisesRegex(ValueError, "threads"):
            latency_ms_per_image(net, (1, 1, 8, 8), threads=0)


if __name__ == "__main__":
    unittest.main()
