"""Score a finished evaluation again against reference lesions rebuilt from its label maps (no inference).

Usage (from the bundle root; the same config files and overrides as the evaluation that wrote ``--eval_dir``)::

    python -m scripts.reevaluate --eval_dir runs/evaluate --output_dir runs/evaluate_merged \\
        --config_file "['configs/train.json','configs/evaluate.json']" [--datalist_file ...] [--merge_gap_mm 6]

Any other ``--key value`` is passed to the config as an override, as ``monai.bundle run`` does. Writes
``metrics.json``, ``per_scan.json`` and ``froc.png`` to ``--output_dir`` (see :py:mod:`bundle.experiments.reevaluate`).
"""

from __future__ import annotations

import logging
import sys

import fire

from bundle.experiments.reevaluate import config_file_list, rescore_evaluation
from bundle.io.errors import describe_exception
from bundle.metrics import format_table


def main(
    eval_dir: str,
    output_dir: str,
    config_file: str | list[str] = "configs/train.json,configs/evaluate.json",
    merge_gap_mm: float | None = None,
    **overrides,
) -> None:
    """
    Args:
        eval_dir: the evaluation's output folder (``per_scan.json`` and ``metrics.json``).
        output_dir: where the rescored report goes (not ``eval_dir``).
        config_file: the evaluation's config files: a list, or one string separated by commas.
        merge_gap_mm: label components this close are one lesion (0: every component is a lesion); default: the
            config's ``merge_gap_mm`` (``bundle.lesions.reference.MERGE_GAP_MM``, 6 mm).
        overrides: the evaluation's config overrides, e.g. ``--datalist_file data/synth_ct_v2/dev_datalist.json``.
    """
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:  # fire turns "['a.json','b.json']" into a list
        files = config_file_list(config_file, must_exist=True)
    except FileNotFoundError as e:
        sys.exit(f"rescore_eval: {e}")
    try:
        results = rescore_evaluation(eval_dir, files, output_dir, overrides, merge_gap_mm)
    except (OSError, RuntimeError, ValueError, KeyError) as e:  # RuntimeError: MONAI's loader on a missing image
        sys.exit(f"rescore_eval: {describe_exception(e)}")
    print(format_table(results))


if __name__ == "__main__":
    fire.Fire(main)
