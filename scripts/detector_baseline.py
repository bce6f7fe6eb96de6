"""Train or evaluate one of MONAI's RetinaNet detectors (the source paper's detector baselines) on the bundle's data.

Usage (from the bundle root; ``python -m scripts.ablation --variants retinanet_resnet10,...`` runs both steps for
the ablation table)::

    python -m scripts.detector_baseline train --name retinanet_resnet10 --output_dir runs/det10 --epochs 50 \
        --time_limit_s 900 --overrides_file my_overrides.json
    python -m scripts.detector_baseline evaluate --name retinanet_resnet10 --weights runs/det10/model.pt \
        --eval_dir runs/det10/eval --overrides_file my_overrides.json

``--overrides_file`` is a JSON object of config overrides (``dataset_dir``, ``seed``, ``train_all``,
``heldout_datalist`` ...) applied on top of ``configs/train.json`` (training) or ``configs/train.json`` +
``configs/evaluate.json`` (evaluation). Exits 1 with a one-line message on bad input.
"""

from __future__ import annotations

import logging
import sys

import fire

from bundle.experiments.comparison import (
    EVALUATE_CONFIG_FILES,
    TRAIN_CONFIG_FILES,
    evaluate_detector,
    read_overrides_file,
    train_detector,
)


def train(name: str, output_dir: str, epochs: int = 50, time_limit_s: float = 0,
          overrides_file: str | None = None) -> None:
    """Train detector ``name`` on the training patches of configs/train.json; writes model.pt and train_time.json."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    try:
        overrides = read_overrides_file(overrides_file)
    except ValueError as err:
        sys.exit(str(err))
    try:
        path = train_detector(name, output_dir, TRAIN_CONFIG_FILES, overrides, epochs=epochs, time_limit_s=time_limit_s)
    except ValueError as err:
        sys.exit(f"detector_baseline train: {err}")
    print(f"weights: {path}")


def evaluate(name: str, weights: str, eval_dir: str, overrides_file: str | None = None) -> None:
    """Score detector ``name`` with ``weights`` on the held-out scans; writes metrics.json, froc.png, per_scan.json."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    try:
        overrides = read_overrides_file(overrides_file, weights=weights)
    except ValueError as err:
        sys.exit(str(err))
    try:
        evaluate_detector(name, weights, eval_dir, EVALUATE_CONFIG_FILES, overrides)
    except ValueError as err:
        sys.exit(f"detector_baseline evaluate: {err}")


if __name__ == "__main__":
    fire.Fire({"train": train, "evaluate": evaluate})
