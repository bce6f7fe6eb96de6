"""Hits of a finished evaluation by lesion kind, shape or source, and by size band.

Usage (from the bundle root)::

    python -m scripts.breakdown --eval_dir runs/evaluate --datalist data/synth_ct/datalist.json --field kind

Prints a markdown table ("hits / lesions" at the evaluation's threshold, 0.5 by default) and writes
``breakdown_<field>.json`` into ``--eval_dir``. See :py:mod:`bundle.experiments.breakdown`.
"""

from __future__ import annotations

import json
from pathlib import Path

import fire

from bundle.data.datalist import load_datalist
from bundle.experiments.breakdown import breakdown, format_breakdown
from bundle.io.atomic import atomic_write_text
from bundle.io.errors import install_excepthook


def main(eval_dir: str, datalist: str, field: str = "kind", split: str = "validation", threshold: float = 0.5) -> None:
    """
    Args:
        eval_dir: the evaluation's folder (its ``per_scan.json``).
        datalist: the data set it scored.
        field: the lesion-record field: ``kind``, ``shape``, ``location``. Defaults to kind.
        split: the datalist split it scored. Defaults to validation.
        threshold: the score of a hit. Defaults to 0.5.
    """
    install_excepthook()
    result = breakdown(Path(eval_dir) / "per_scan.json", load_datalist(datalist, split), field, threshold)
    atomic_write_text(Path(eval_dir) / f"breakdown_{field}.json", json.dumps(result, indent=1))
    print(format_breakdown(result), end="")


if __name__ == "__main__":
    fire.Fire(main)
