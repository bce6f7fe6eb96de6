"""Where a held-out evaluation's false positives lie and which lesions it misses.

Usage (from the bundle root; the evaluation writes ``per_scan.json`` next to ``metrics.json``)::

    python -m monai.bundle run --config_file "['configs/train.json','configs/evaluate.json']" --eval_dir runs/evaluate
    python -m scripts.error_analysis --datalist data/synth_ct/datalist.json --per_scan runs/evaluate/per_scan.json

Prints two markdown tables (false positives by region; recall by lesion kind, shape, location and size band) and
writes ``errors.json`` and ``errors.md`` next to ``per_scan.json`` (or to ``--output_dir``).
"""

from __future__ import annotations

import logging
import sys

import fire

from bundle.experiments.analysis.errors import write_error_analysis


def main(
    datalist: str = "data/synth_ct/datalist.json",
    per_scan: str = "runs/evaluate/per_scan.json",
    split: str = "validation",
    threshold: float = 0.5,
    output_dir: str | None = None,
) -> None:
    """
    Args:
        datalist: the synthesis datalist of the evaluated data.
        per_scan: the evaluation's ``per_scan.json``.
        split: the datalist list that was evaluated (default: the held-out ``validation`` list).
        threshold: operating score threshold (the evaluation's, 0.5).
        output_dir: where ``errors.json`` / ``errors.md`` go (default: the folder of ``per_scan``).
    """
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    try:
        table = write_error_analysis(datalist, per_scan, split, threshold, output_dir)
    except (ValueError, KeyError, OSError) as e:
        sys.exit(f"error_analysis: {e}")
    print(table)


if __name__ == "__main__":
    fire.Fire(main)
