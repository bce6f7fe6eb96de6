"""Scan-level triage from the detector: highest lesion score per scan -> ROC AUC with a bootstrap interval.

Usage (from the bundle root)::

    # 1. held-out cases and lesion-free host scans, cut to a slab clear of the real tumour
    python -m scripts.triage build --datalist data/synth_ct/datalist.json --output_dir data/triage_ct
    # 2. the detector on every scan (about 15 s per scan on 2 CPU cores)
    python -m monai.bundle run --config_file configs/inference.json --dataset_dir data/triage_ct/images \
        --output_dir data/triage_ct/detector
    # 3. AUC; writes data/triage_ct/triage_result.json and the ``triage`` block of docs/classification.md
    python -m scripts.triage score --triage_dir data/triage_ct
"""

from __future__ import annotations

import logging
import shlex
import sys
from pathlib import Path

import fire

from bundle.classification.compare import write_markdown_block
from bundle.classification.triage import build_triage_set, score_triage


def build(
    datalist: str = "data/synth_ct/datalist.json",
    output_dir: str = "data/triage_ct",
    n_negatives: int = 8,
    margin_slices: int = 2,
    seed: int = 0,
) -> str:
    """
    Args:
        datalist: the synthetic-lesion datalist; its validation cases are the positives.
        output_dir: where images/ and triage.json go.
        n_negatives: lesion-free host scans. Defaults to 8.
        margin_slices: slices kept clear of the real tumour on each side. Defaults to 2.
        seed: seed of the negatives' texture variation. Defaults to 0.
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    build_triage_set(datalist, output_dir, n_negatives=n_negatives, margin_slices=margin_slices, seed=seed)
    return str(Path(output_dir) / "images")


def score(
    triage_dir: str = "data/triage_ct",
    detector_dir: str | None = None,
    n_bootstrap: int = 1000,
    seed: int = 0,
    markdown: str | None = "docs/classification.md",
) -> str:
    """
    Args:
        triage_dir: the folder written by ``build``.
        detector_dir: the detector's output folder. Defaults to <triage_dir>/detector.
        n_bootstrap: bootstrap resamples. Defaults to 1000.
        seed: bootstrap seed. Defaults to 0.
        markdown: file whose ``triage`` block receives the table; None skips it.
    """
    try:
        table = score_triage(triage_dir, detector_dir, n_bootstrap=n_bootstrap, seed=seed)
    except (FileNotFoundError, ValueError) as err:
        sys.exit(str(err))
    if markdown is not None:
        command = shlex.join(["python", "-m", "scripts.triage", *sys.argv[1:]])
        write_markdown_block(markdown, f"Command: `{command}`\n\n{table}", name="triage")
    return table


if __name__ == "__main__":
    fire.Fire({"build": build, "score": score})
