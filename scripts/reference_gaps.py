"""How far the pieces of a lesion lie from it, and separate lesions from each other, in a synthesis data set.

Usage (from the bundle root; the grid is the evaluation's)::

    python -m scripts.reference_gaps --dataset_dir data/synth_ct_v2 --split training
    python -m scripts.reference_gaps --config_file "['configs/train.json','configs/evaluate.json',
        'configs/variants/mri_train.json','configs/variants/mri_evaluate.json']" --split training

A merge gap (``bundle.lesions.reference.MERGE_GAP_MM``) between the largest piece gap and the smallest gap between
lesions scores every lesion once. Prints the pieces and both lists of gaps.
"""

from __future__ import annotations

import logging
import sys

import fire

from bundle.experiments.reevaluate import config_file_list, format_reference_gaps, reference_gaps
from bundle.io.errors import describe_exception


def main(
    config_file: str | list[str] = "configs/train.json,configs/evaluate.json",
    split: str = "training",
    **overrides,
) -> None:
    """
    Args:
        config_file: the evaluation's config files: a list, or one string separated by commas.
        split: the datalist list to measure (default ``training``: choose the gap away from the held-out cases).
        overrides: config overrides, e.g. ``--dataset_dir data/synth_ct_v2``.
    """
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    try:  # fire turns "['a.json','b.json']" into a list
        result = reference_gaps(config_file_list(config_file), overrides, split)
    except (OSError, RuntimeError, ValueError, KeyError) as e:  # RuntimeError: MONAI's loader on a missing image
        sys.exit(f"reference_gaps: {describe_exception(e)}")
    print(format_reference_gaps(result))


if __name__ == "__main__":
    fire.Fire(main)
