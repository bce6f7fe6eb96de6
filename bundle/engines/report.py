"""An ignite handler that turns a lesion-detection evaluation into the reports users read.

At the end of an evaluator run it evaluates every scan collected by a :py:class:`bundle.metrics.LesionDetectionMetric`
(recall, precision, F1, FROC/CPM, size bands, balance score with the network's parameters and the measured seconds
per volume), prints the markdown table, and writes ``metrics.json``, ``froc.png`` and ``per_scan.json`` (every
candidate and lesion with its match status, for error analysis) to ``output_dir``.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Engine, Events

from bundle.metrics import LesionDetectionMetric, evaluate_detection, format_table, match_candidates, plot_froc, save_json

logger = logging.getLogger(__name__)

__all__ = ["DetectionReportHandler", "per_scan_report", "write_detection_report"]


def per_scan_report(
    per_scan: list[tuple[list[dict[str, Any]], list[dict[str, Any]]]],
    hit_radius: str | float = "radius",
    min_radius_mm: float = 1.5,
) -> list[dict[str, Any]]:
    """Every scan's candidates and lesions with their match status (LUNA16 hit rule), in evaluation order.

    Args:
        per_scan: ``[(candidates, lesions), ...]`` as :py:meth:`bundle.metrics.LesionDetectionMetric.get_per_scan`.
        hit_radius, min_radius_mm: see :py:func:`bundle.metrics.match_candidates`.

    Returns:
        one dict per scan: ``{"scan": index, "candidates": [{"center_mm", "score", "status", "lesion"}, ...],
        "lesions": [{"center_mm", "diameter_mm", "ignore", "score"}, ...]}``; a candidate's ``status`` is ``"tp"``,
        ``"fp"``, ``"double"``, ``"ignored"`` or ``"dropped"``, ``lesion`` the index of the lesion it hit (-1: none);
        a lesion's ``score`` is its best hit's score (None: missed).
    """
    report = []
    for index, (candidates, lesions) in enumerate(per_scan):
        match = match_candidates(candidates, lesions, hit_radius, min_radius_mm)
        report.append(
            {
                "scan": index,
                "candidates": [
                    {"center_mm": list(c["center_mm"]), "score": s, "status": st, "lesion": k}
                    for c, s, st, k in zip(
                        candidates, match.candidate_score, match.candidate_status, match.candidate_lesion, strict=True
                    )
                ],
                "lesions": [
                    {"center_mm": list(les["center_mm"]), "diameter_mm": d, "ignore": ig, "score": s}
                    for les, d, ig, s in zip(
                        lesions, match.lesion_diameter_mm, match.lesion_ignored, match.lesion_score, strict=True
                    )
                ],
            }
        )
    return report


class DetectionReportHandler:
    """Write the detection report of an evaluator run.

    Args:
        metric: the metric object that collected the per-scan candidate and lesion lists (the same object given
            to ``IgniteMetricHandler``).
        output_dir: folder for ``metrics.json`` and ``froc.png``.
        network: optional network whose parameters are counted for the balance score.
        threshold: operating score threshold for recall / precision / F1. Defaults to 0.5.
        title: title of the FROC plot.

    Attributes:
        results: the dict of :py:func:`bundle.metrics.evaluate_detection` after the run.
    """

    def __init__(
        self,
        metric: LesionDetectionMetric,
        output_dir: str | Path,
        network: torch.nn.Module | None = None,
        threshold: float = 0.5,
        title: str | None = None,
    ) -> None:
        self.metric = metric
        self.output_dir = Path(output_dir)
        self.network = network
        self.threshold = threshold
        self.title = title
        self.results: dict[str, Any] = {}
        self._seconds: list[float] = []
        self._start = 0.0

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.ITERATION_STARTED, self._iteration_started)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._iteration_completed)
        engine.add_event_handler(Events.EPOCH_STARTED, lambda _: self._seconds.clear())
        engine.add_event_handler(Events.COMPLETED, self)

    def _iteration_started(self, _: Engine) -> None:
        self._start = time.perf_counter()

    def _iteration_completed(self, _: Engine) -> None:
        self._seconds.append(time.perf_counter() - self._start)

    def __call__(self, engine: Engine) -> None:
        n_params = None if self.network is None else sum(p.numel() for p in self.network.parameters())
        seconds = sum(self._seconds) / len(self._seconds) if self._seconds else None
        kwargs = {k: self.metric.eval_kwargs[k] for k in ("hit_radius", "min_radius_mm")}
        self.results = write_detection_report(
            self.metric.get_per_scan(), self.output_dir, n_params, seconds, self.threshold, self.title, **kwargs
        )


def write_detection_report(
    per_scan: list[tuple[list[dict[str, Any]], list[dict[str, Any]]]],
    output_dir: str | Path,
    n_params: int | None = None,
    seconds_per_volume: float | None = None,
    threshold: float = 0.5,
    title: str | None = None,
    hit_radius: str | float = "radius",
    min_radius_mm: float = 1.5,
) -> dict[str, Any]:
    """Evaluate ``per_scan`` (``[(candidates, lesions), ...]``), log the table, and write ``metrics.json``,
    ``per_scan.json`` and ``froc.png`` to ``output_dir``; returns the metrics dict of
    :py:func:`bundle.metrics.evaluate_detection`. Used by :py:class:`DetectionReportHandler` and by the detector
    baselines (:py:mod:`bundle.experiments.comparison`), so both write the same files."""
    results = evaluate_detection(
        per_scan, threshold=threshold, n_params=n_params, seconds_per_volume=seconds_per_volume,
        hit_radius=hit_radius, min_radius_mm=min_radius_mm,
    )
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_json(results, out / "metrics.json")
    kwargs = {"hit_radius": hit_radius, "min_radius_mm": min_radius_mm}
    save_json({**kwargs, "scans": per_scan_report(per_scan, **kwargs)}, out / "per_scan.json")
    plot_froc(results, out / "froc.png", title=title)
    logger.info("lesion detection on %d scans:\n%s", len(per_scan), format_table(results))
    return results

