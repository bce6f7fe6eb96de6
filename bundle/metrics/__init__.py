"""Lesion-level detection metrics (LUNA16 FROC / CPM, recall / precision / F1, size bands, Dice) and reports."""

from __future__ import annotations

from .ignite import LesionDetectionMetric
from .lesion import (
    LUNA16_FP_RATES,
    SIZE_BANDS_MM,
    balance_score,
    dice,
    f1,
    froc,
    froc_by_size,
    lesion_f1,
    precision,
    recall,
    sensitivity_by_size,
)
from .matching import MatchResult, detection_counts, match_candidates
from .report import evaluate_detection, format_table, plot_froc, save_json

__all__ = [
    "LUNA16_FP_RATES",
    "SIZE_BANDS_MM",
    "LesionDetectionMetric",
    "MatchResult",
    "balance_score",
    "detection_counts",
    "dice",
    "evaluate_detection",
    "f1",
    "format_table",
    "froc",
    "froc_by_size",
    "lesion_f1",
    "match_candidates",
    "plot_froc",
    "precision",
    "recall",
    "save_json",
    "sensitivity_by_size",
]
