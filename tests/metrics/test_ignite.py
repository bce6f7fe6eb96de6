from __future__ import annotations

import unittest

import torch
from ignite.engine import Engine
from monai.handlers import IgniteMetricHandler
from parameterized import parameterized

from bundle.metrics.ignite import LesionDetectionMetric
from bundle.metrics.lesion import froc
from bundle.metrics.matching import detection_counts
from bundle.metrics.report import evaluate_detection


def cand(x: float, score: float) -> dict:
    return {"center_mm": [x, 0.25, -1.0 / 3.0], "score": score}


def les(x: float, d: float, ignore: bool = False) -> dict:
    return {"center_mm": [x, 0.25, -1.0 / 3.0], "diameter_mm": d, "ignore": ignore}


BATCH_1 = (
    [[cand(0, 0.9), cand(50, 0.8), cand(20.0 + 4.0 - 1e-9, 0.3)], []],  # y_pred: 2 scans
    [[les(0, 5), les(20, 8), les(90, 12, ignore=True)], []],  # y: 2 scans (the second is empty)
)
BATCH_2 = (
    [[cand(0, 0.6), cand(40, 0.55), cand(90.5, 0.99)]],
    [[les(0, 3.5), les(99, 20), les(90, 4, ignore=True)]],
)
ALL_SCANS = list(zip(BATCH_1[0] + BATCH_2[0], BATCH_1[1] + BATCH_2[1]))

ILL_CALLS = [
    ("length_mismatch", ([[cand(0, 0.5)]], [[], []]), ValueError, "same number of scans"),
    ("not_batched", ([cand(0, 0.5)], [[]]), TypeError, "y_pred must be a batch"),
    ("not_list", ("abc", [[]]), TypeError, "y_pred must be a list"),
    ("wrong_dims", ([[{"center_mm": [0, 0], "score": 0.5}]], [[]]), ValueError, "spatial_dims=3"),
    ("missing_score", ([[{"center_mm": [0, 0, 0]}]], [[]]), ValueError, "score"),
]

ILL_INIT = [
    ("metric_name", {"metric_name": "auc"}, ValueError, "auc"),
    ("spatial_dims", {"spatial_dims": 0}, ValueError, "spatial_dims=0"),
    ("threshold", {"threshold": 1.5}, ValueError, "threshold=1.5"),
    ("fp_rates", {"fp_rates": (-1.0,)}, ValueError, "fp_rates"),
    ("bands", {"bands": ((5, 3),)}, ValueError, "band"),
]


class TestLesionDetectionMetric(unittest.TestCase):
    def _filled(self, **kwargs) -> LesionDetectionMetric:
        metric = LesionDetectionMetric(**kwargs)
        metric(*BATCH_1)
        metric(*BATCH_2)
        return metric

    @parameterized.expand([("cpm",), ("f1",), ("recall",), ("precision",), ("fp_per_scan",), ("tp",)])
    def test_equals_direct(self, name):
        metric = self._filled(metric_name=name)
        value = metric.aggregate()
        self.assertIsInstance(value, torch.Tensor)
        self.assertEqual(value.ndim, 0)
        self.assertEqual(float(value), float(evaluate_detection(ALL_SCANS)[name]))

    def test_all_dict_and_roundtrip(self):
        metric = self._filled(metric_name="all")
        self.assertEqual(metric.aggregate(), evaluate_detection(ALL_SCANS))
        self.assertEqual(metric.aggregate("cpm").item(), froc(ALL_SCANS)["cpm"])
        decoded = metric.get_per_scan()
        self.assertEqual(len(decoded), 3)
        self.assertEqual(decoded[0][0][2]["center_mm"], BATCH_1[0][0][2]["center_mm"])  # float64, exact
        self.assertEqual(decoded[2][1][2]["ignore"], True)

    def test_call_returns_counts(self):
        metric = LesionDetectionMetric(threshold=0.25)
        counts = metric(*BATCH_1)
        self.assertEqual(counts.shape, (2, 3))
        c = detection_counts(list(zip(*BATCH_1)), threshold=0.25)
        self.assertEqual(counts.sum(0).tolist(), [c["tp"], c["fp"], c["fn"]])

    def test_reset_and_aggregate_semantics(self):
        metric = self._filled()
        first = metric.aggregate()
        self.assertEqual(metric.aggregate(), first)  # aggregate does not clear the buffer
        metric.reset()
        with self.assertRaises(ValueError):
            metric.aggregate()
        metric(*BATCH_2)
        self.assertEqual(metric.aggregate().item(), froc(list(zip(*BATCH_2)))["cpm"])

    def test_ignite_handler(self):
        batches = [{"pred": BATCH_1[0], "label": BATCH_1[1]}, {"pred": BATCH_2[0], "label": BATCH_2[1]}]
        engine = Engine(lambda engine, batch: batch)
        handler = IgniteMetricHandler(
            metric_fn=LesionDetectionMetric(metric_name="cpm"), output_transform=lambda o: (o["pred"], o["label"])
        )
        handler.attach(engine, "val_cpm")
        engine.run(batches, max_epochs=2)  # two epochs: the handler resets between them
        self.assertEqual(engine.state.metrics["val_cpm"], froc(ALL_SCANS)["cpm"])
        self.assertEqual(engine.state.metric_details["val_cpm"].shape[1], 6)

    @parameterized.expand(ILL_CALLS)
    def test_ill_call(self, _, args, error, fragment):
        with self.assertRaises(error) as ctx:
            LesionDetectionMetric()(*args)
        self.assertIn(fragment, str(ctx.exception))

    @parameterized.expand(ILL_INIT)
    def test_ill_init(self, _, kwargs, error, fragment):
        with self.assertRaises(error) as ctx:
            LesionDetectionMetric(**kwargs)
        self.assertIn(fragment, str(ctx.exception))


if __name__ == "__main__":
    unittest.main()
