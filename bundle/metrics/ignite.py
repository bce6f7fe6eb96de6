"""MONAI ``Cumulative`` wrapper of the lesion-detection metrics, usable through ``monai.handlers.IgniteMetricHandler``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.metrics import Cumulative, Metric
from monai.utils import look_up_option

from bundle.metrics.lesion import LUNA16_FP_RATES, SIZE_BANDS_MM
from bundle.metrics.matching import match_candidates
from bundle.metrics.report import evaluate_detection

__all__ = ["LesionDetectionMetric"]

_HEADER, _CANDIDATE, _LESION = 0.0, 1.0, 2.0
SCALAR_METRICS = ("cpm", "recall", "precision", "f1", "fp_per_scan", "tp", "fp", "fn")


class LesionDetectionMetric(Cumulative, Metric):
    """Accumulate per-scan ``(candidates, lesions)`` lists and aggregate LUNA16-style detection metrics.

    Each call adds a batch of scans; :py:meth:`aggregate` evaluates all scans added since the last :py:meth:`reset`
    with :py:func:`bundle.metrics.report.evaluate_detection` and returns the chosen scalar (a 0-dim tensor) or the
    whole dict. As with MONAI's metrics, ``aggregate`` does not clear the buffer; call ``reset`` for a new round.

    The lists are stored in the Cumulative buffer as one float64 table, so MONAI's distributed all-gather works
    unchanged: shape (R, 3 + spatial_dims), columns ``[kind, value, flag, *center_mm]``; ``kind`` 0 starts a scan,
    1 is a candidate (``value`` = score), 2 a lesion (``value`` = diameter_mm, ``flag`` = ignore). Rows of one
    scan stay contiguous through the gather, so the table decodes back into the same scans.

    Example (validation key metric; the lead's ``output_transform`` yields the per-scan lists)::

        metric = LesionDetectionMetric(metric_name="cpm")
        handler = IgniteMetricHandler(metric_fn=metric, output_transform=from_engine(["pred_lesions", "lesions"]))
        handler.attach(evaluator, "val_cpm")

    Args:
        metric_name: value returned by ``aggregate()``: one of ``"cpm", "recall", "precision", "f1",
            "fp_per_scan", "tp", "fp", "fn"``, or ``"all"`` for the whole dict. Defaults to ``"cpm"``.
        threshold: score threshold in [0, 1] for recall / precision / F1. Defaults to 0.5.
        spatial_dims: number of coordinates in every ``center_mm``. Defaults to 3.
        fp_rates, max_candidates_per_scan, bands, hit_radius, min_radius_mm: see
            :py:func:`bundle.metrics.report.evaluate_detection`.

    Raises:
        ValueError: when ``metric_name`` is not a known option or ``spatial_dims < 1``.
    """

    def __init__(
        self,
        metric_name: str = "cpm",
        threshold: float = 0.5,
        spatial_dims: int = 3,
        fp_rates: Sequence[float] = LUNA16_FP_RATES,
        max_candidates_per_scan: int | None = 100,
        bands: Sequence[Sequence[float]] = SIZE_BANDS_MM,
        hit_radius: str | float = "radius",
        min_radius_mm: float = 1.5,
    ) -> None:
        super().__init__()
        self.metric_name = look_up_option(metric_name, SCALAR_METRICS + ("all",))
        if isinstance(spatial_dims, bool) or not isinstance(spatial_dims, int) or spatial_dims < 1:
            raise ValueError(f"spatial_dims must be an int >= 1, got spatial_dims={spatial_dims!r}.")
        self.spatial_dims = spatial_dims
        self.threshold = threshold
        self.eval_kwargs: dict[str, Any] = {
            "fp_rates": tuple(fp_rates),
            "max_candidates_per_scan": max_candidates_per_scan,
            "bands": tuple(tuple(b) for b in bands),
            "hit_radius": hit_radius,
            "min_radius_mm": min_radius_mm,
        }
        # dry run on one scan holding one lesion: bad settings fail here, not at the first aggregate
        dummy_lesion = {"center_mm": [0.0] * spatial_dims, "diameter_mm": 10.0}
        evaluate_detection([([], [dummy_lesion])], threshold=threshold, **self.eval_kwargs)

    def _encode(self, candidates: Sequence[Mapping[str, Any]], lesions: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """One scan as rows of shape (1 + N + M, 3 + spatial_dims)."""
        rows = [[_HEADER, 0.0, 0.0] + [0.0] * self.spatial_dims]
        rows += [[_CANDIDATE, float(c["score"]), 0.0, *np.asarray(c["center_mm"], float)] for c in candidates]
        rows += [
            [_LESION, float(les["diameter_mm"]), float(bool(les.get("ignore", False))), *np.asarray(les["center_mm"], float)]
            for les in lesions
        ]
        return np.asarray(rows, dtype=np.float64)

    def __call__(self, y_pred: Sequence[Sequence[Mapping[str, Any]]], y: Sequence[Sequence[Mapping[str, Any]]]) -> torch.Tensor:
        """Add a batch of scans.

        Args:
            y_pred: per scan, the list of candidates ``{"center_mm", "score"}``; length B.
            y: per scan, the list of lesions ``{"center_mm", "diameter_mm", "ignore"}``; length B.

        Returns:
            per-scan ``[tp, fp, fn]`` at ``threshold``, shape (B, 3), int64.

        Raises:
            ValueError: when ``y_pred`` and ``y`` differ in length, a centre does not have ``spatial_dims``
                coordinates, or a candidate / lesion dict is malformed.
            TypeError: when ``y_pred`` or ``y`` is not a list of per-scan lists.
        """
        for name, batch in (("y_pred", y_pred), ("y", y)):
            if not isinstance(batch, Sequence) or isinstance(batch, (str, bytes)):
                raise TypeError(f"{name} must be a list with one list per scan, got {type(batch).__name__}.")
            if batch and isinstance(batch[0], Mapping):
                raise TypeError(f"{name} must be a batch (a list of per-scan lists), got a list of dicts.")
        if len(y_pred) != len(y):
            raise ValueError(f"y_pred and y must hold the same number of scans, got {len(y_pred)} and {len(y)}.")
        counts, tables = [], []
        for b, (candidates, lesions) in enumerate(zip(y_pred, y)):
            try:
                match = match_candidates(candidates, lesions, self.eval_kwargs["hit_radius"], self.eval_kwargs["min_radius_mm"])
            except (ValueError, TypeError) as e:
                raise type(e)(f"scan {b} of the batch: {e}") from e
            for kind, items in (("y_pred", candidates), ("y", lesions)):
                for i, item in enumerate(items):
                    if len(item["center_mm"]) != self.spatial_dims:
                        raise ValueError(
                            f"{kind}[{b}][{i}]['center_mm'] must have spatial_dims={self.spatial_dims} coordinates, "
                            f"got {list(item['center_mm'])}."
                        )
            counts.append(match.counts(self.threshold))
            tables.append(self._encode(candidates, lesions))
        if tables:
            self.extend(torch.from_numpy(np.concatenate(tables, axis=0)))  # (R, 3 + spatial_dims)
        return torch.as_tensor(counts, dtype=torch.int64).reshape(-1, 3)

    def get_per_scan(self) -> list[tuple[list[dict[str, Any]], list[dict[str, Any]]]]:
        """Decode the (synced) buffer into ``[(candidates, lesions), ...]``, one pair per scan added."""
        table = self.get_buffer()
        if table is None:
            return []
        per_scan: list[tuple[list[dict[str, Any]], list[dict[str, Any]]]] = []
        for row in table.numpy():
            kind, value, flag, center = row[0], float(row[1]), row[2], row[3:].tolist()
            if kind == _HEADER:
                per_scan.append(([], []))
            elif kind == _CANDIDATE:
                per_scan[-1][0].append({"center_mm": center, "score": value})
            else:
                per_scan[-1][1].append({"center_mm": center, "diameter_mm": value, "ignore": bool(flag)})
        return per_scan

    def aggregate(self, metric_name: str | None = None) -> torch.Tensor | dict[str, Any]:
        """Evaluate every scan added since the last ``reset``.

        Args:
            metric_name: overrides the constructor's ``metric_name`` for this call.

        Returns:
            a 0-dim float64 tensor for a scalar metric, or the :py:func:`evaluate_detection` dict for ``"all"``.

        Raises:
            ValueError: when no scan was added since the last ``reset`` or ``metric_name`` is unknown.
        """
        name = self.metric_name if metric_name is None else look_up_option(metric_name, SCALAR_METRICS + ("all",))
        per_scan = self.get_per_scan()
        if not per_scan:
            raise ValueError("no scan to aggregate: call the metric with (y_pred, y) after reset() first.")
        results = evaluate_detection(per_scan, threshold=self.threshold, **self.eval_kwargs)
        if name == "all":
            return results
        return torch.tensor(float(results[name]), dtype=torch.float64)
