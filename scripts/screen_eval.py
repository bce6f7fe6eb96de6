"""Window-level quality of the router's screen on the held-out half: ROC AUC, tier shares, lesions lost.

Usage (from the bundle root, after ``python -m scripts.make_dataset`` as in docs/README.md)::

    python -m scripts.screen_eval --ckpt models/model.pt --output runs/screen_eval/current.json
    # weights of another layout: the config files they were trained with, e.g. the light experiment's
    python -m scripts.screen_eval --ckpt runs/train_light/model.pt --output runs/screen_eval/light.json \\
        --config_file "['configs/train.json','configs/evaluate.json','bundle/experiments/configs/light_network.json']"

Any other ``--key value`` is a config override, as ``monai.bundle run`` takes it. Prints the result as JSON.
"""

from __future__ import annotations

import json
import logging

import fire

from bundle.experiments.reevaluate import config_file_list
from bundle.experiments.screen_eval import evaluate_screen


def main(
    ckpt: str = "models/model.pt",
    output: str | None = None,
    config_file: str | list[str] = "configs/train.json,configs/evaluate.json",
    **overrides,
) -> None:
    """
    Args:
        ckpt: the weights to screen with.
        output: JSON file for the result (optional).
        config_file: the evaluation's config files: a list, or one string separated by commas.
        overrides: config overrides, e.g. ``--network_def#stem_stride 1``.
    """
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    result = evaluate_screen(config_file_list(config_file, must_exist=True), ckpt, overrides, output)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    fire.Fire(main)
