"""Workflows (ignite engines) of the bundle: robust case-by-case lesion inference."""

from __future__ import annotations

from .evaluator import LesionInferenceEvaluator

__all__ = ["LesionInferenceEvaluator"]
