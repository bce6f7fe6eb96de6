"""Diagnose the training pipeline (issue #22): lesion contrast through the MRI clip, and a one-case overfit.

Usage (from the bundle root)::

    python -m scripts.training_diagnosis contrast --dataset_dir data/synth_mri
    python -m scripts.training_diagnosis overfit --modality mri --steps 300
    python -m scripts.training_diagnosis overfit --modality mri --steps 300 --headroom 0.5
    python -m scripts.training_diagnosis overfit --modality mri --steps 2000 --upper 100
    python -m scripts.training_diagnosis overfit --modality mri --steps 300 --overrides '{"learning_rate": 0.01}'
    python -m scripts.training_diagnosis overfit --modality ct --steps 300

Each prints one JSON line. See :py:mod:`bundle.experiments.training_diagnosis`.
"""

from __future__ import annotations

import json

import fire

from bundle.experiments.training_diagnosis import dataset_contrasts, overfit_case

CONFIGS = {"ct": ["configs/train.json"], "mri": ["configs/train.json", "configs/variants/mri_train.json"]}


def contrast(dataset_dir: str = "data/synth_mri", split: str = "training", lower: float = 0.5,
             upper: float = 99.5, per_lesion: bool = False) -> None:  # fmt: skip
    """
    Args:
        dataset_dir: a data set with ``datalist.json``. Defaults to ``data/synth_mri``.
        split: ``training`` or ``validation``. Defaults to ``training``.
        lower: lower clip percentile. Defaults to 0.5 (``mri_preprocessing``'s).
        upper: upper clip percentile. Defaults to 99.5 (``mri_preprocessing``'s).
        per_lesion: also print every lesion's row. Defaults to False.
    """
    result = dataset_contrasts(dataset_dir, split, lower, upper)
    if not per_lesion:
        result.pop("per_lesion")
    print(json.dumps(result))


def overfit(modality: str = "mri", steps: int = 300, case_index: int = 0, headroom: float | None = None,
            upper: float | None = None, seed: int = 0, threads: int = 2, overrides: dict | None = None) -> None:  # fmt: skip
    """
    Args:
        modality: ``mri`` (configs/train.json + configs/variants/mri_train.json) or ``ct`` (configs/train.json).
        steps: optimiser steps. Defaults to 300.
        case_index: the training case. Defaults to 0.
        headroom: MRI only: ``mri_preprocessing``'s ``headroom`` (room above the upper percentile instead of a
            clip); None keeps the config's. Defaults to None.
        upper: MRI only: ``mri_preprocessing``'s upper clip percentile (100: plain min-max); None keeps the
            config's (99.5). Defaults to None.
        seed: determinism seed. Defaults to 0.
        threads: torch threads. Defaults to 2.
        overrides: more config ids to set, e.g. ``'{"learning_rate": 0.01}'`` or ``'{"train#augmentation#prob": 0.0}'``.
    """
    if modality not in CONFIGS:
        raise ValueError(f"modality must be one of {sorted(CONFIGS)}, got modality={modality!r}.")
    settings = dict(overrides or {})
    if headroom is not None:
        settings["preprocessing#headroom"] = float(headroom)
    if upper is not None:
        settings["preprocessing#upper"] = float(upper)
    result = overfit_case(CONFIGS[modality], steps, case_index, settings, seed, threads)
    print(json.dumps({"modality": modality, "overrides": settings, **result}))


if __name__ == "__main__":
    fire.Fire({"contrast": contrast, "overfit": overfit})
