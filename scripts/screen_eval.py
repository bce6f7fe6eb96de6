"""Window-level quality of the router's screen on the held-out half: ROC AUC, tier shares, lesions lost.

Usage (from the bundle root, after ``python -m scripts.make_dataset`` as in docs/README.md)::

    python -m scripts.screen_eval --ckpt models/model.pt --output runs/screen_eval/current.json
    # weights of another layout: the network_def overrides they were trained with, e.g. release 0.6.0's
    python -m scripts.screen_eval --ckpt ../baseline/models/model.pt --output runs/screen_eval/0.6.0.json \\
        --network_def#features "[8,24,48,96]" --network_def#stem_stride 1 --network_def#learned_screen False

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
