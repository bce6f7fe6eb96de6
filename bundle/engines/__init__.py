"""Workflows (ignite engines) of the bundle: robust case-by-case lesion inference, and the random state that
makes a resumed training run continue the same random stream, and a wall-clock training budget."""

from __future__ import annotations

from .budget import TrainingTimeLimit
from .evaluator import LesionInferenceEvaluator
from .rng import GradientState, RandomState, find_random_states, resume_load_dict

__all__ = [
    "GradientState",
    "LesionInferenceEvaluator",
    "RandomState",
    "TrainingTimeLimit",
    "find_random_states",
    "resume_load_dict",
]
