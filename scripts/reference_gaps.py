"""How far the pieces of a lesion lie from it, and separate lesions from each other, in a synthesis data set.

Usage (from the bundle root; the grid is the evaluation's)::

    python -m scripts.reference_gaps --dataset_dir data/synth_ct_v2 --split training
    python -m scripts.reference_gaps --config_file "['configs/train.json','configs/evaluate.json','configs/mri.json',
        'configs/evaluate_mri.json']" --split training

A merge gap (``bundle.metrics.outputs.MERGE_GAP_MM``) between the largest piece gap and the smallest gap between
lesions scores every lesion once. Prints the pieces and both lists of gaps.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import fire

if __package__ in (None, ""):  # run as a file: make the bundle root (parent of scripts/) importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bundle.experiments.reevaluate import reference_gaps  # noqa: E402
from bundle.io.errors import describe_exception  # noqa: E402


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
    # fire turns "['a.json','b.json']" into a list; a string is comma-separated, as monai.bundle reads it
    files = config_file.split(",") if isinstance(config_file, str) else list(config_file)
    try:
        result = reference_gaps(files, overrides, split)
    except (OSError, RuntimeError, ValueError, KeyError) as e:  # RuntimeError: MONAI's loader on a missing image
        sys.exit(f"reference_gaps: {describe_exception(e)}")
    for piece in result["pieces"]:
        print(json.dumps({k: (round(v, 1) if isinstance(v, float) else v) for k, v in piece.items()}))
    print(f"{result['cases']} cases, {result['components']} label components, {len(result['pieces'])} pieces")
    print("piece gaps (mm):", [round(g, 1) for g in result["piece_gaps_mm"]])
    print("gaps between lesions (mm, smallest 10):", [round(g, 1) for g in result["lesion_gaps_mm"][:10]])


if __name__ == "__main__":
    fire.Fire(main)
