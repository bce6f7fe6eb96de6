"""Train or evaluate one of MONAI's RetinaNet detectors (the source paper's detector baselines) on the bundle's data.

Usage (from the bundle root; ``scripts/ablation.py --variants retinanet_resnet10,...`` runs both steps for the
ablation table)::

    python -m scripts.detector_baseline train --name retinanet_resnet10 --output_dir runs/det10 --epochs 50 \
        --time_limit_s 900 --overrides_file my_overrides.json
    python -m scripts.detector_baseline evaluate --name retinanet_resnet10 --weights runs/det10/model.pt \
        --eval_dir runs/det10/eval --overrides_file my_overrides.json

``--overrides_file`` is a JSON object of config overrides (``dataset_dir``, ``seed``, ``train_all``,
``heldout_datalist`` ...) applied on top of ``configs/train.json`` (training) or ``configs/train.json`` +
``configs/evaluate.json`` (evaluation). Exits 1 with a one-line message on bad input.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import fire

if __package__ in (None, ""):  # run as a file: make the bundle root (parent of scripts/) importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bundle.experiments.comparison import evaluate_detector, train_detector  # noqa: E402

_ROOT = Path(__file__).resolve().parents[1]


def _overrides(path: str | None) -> dict[str, Any]:
    if not path:
        return {}
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError) as err:
        sys.exit(f"{path}: cannot read the overrides file ({err}).")
    if not isinstance(data, dict):
        sys.exit(f"{path}: the overrides file must hold a JSON object, got {type(data).__name__}.")
    return data


def train(name: str, output_dir: str, epochs: int = 50, time_limit_s: float = 0,
          overrides_file: str | None = None) -> None:
    """Train detector ``name`` on the training patches of configs/train.json; writes model.pt and train_time.json."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    try:
        path = train_detector(name, output_dir, [str(_ROOT / "configs" / "train.json")], _overrides(overrides_file),
                              epochs=epochs, time_limit_s=time_limit_s)
    except ValueError as err:
        sys.exit(f"detector_baseline train: {err}")
    print(f"weights: {path}")


def evaluate(name: str, weights: str, eval_dir: str, overrides_file: str | None = None) -> None:
    """Score detector ``name`` with ``weights`` on the held-out scans; writes metrics.json, froc.png, per_scan.json."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if not Path(weights).is_file():
        sys.exit(f"{weights}: no such weights file.")
    configs = [str(_ROOT / "configs" / "train.json"), str(_ROOT / "configs" / "evaluate.json")]
    try:
        evaluate_detector(name, weights, eval_dir, configs, _overrides(overrides_file))
    except ValueError as err:
        sys.exit(f"detector_baseline evaluate: {err}")


if __name__ == "__main__":
    fire.Fire({"train": train, "evaluate": evaluate})
