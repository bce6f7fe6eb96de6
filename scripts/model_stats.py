"""Print (and optionally write) the parameter / GFLOP table of GhostCAUNet and MONAI reference networks.

Usage (from the bundle root)::

    python -m scripts.model_stats --output docs/model_stats.md

FLOPs are counted with ``torch.utils.flop_counter.FlopCounterMode`` (2 * MAC convention); no timings.
"""

from __future__ import annotations

import logging

import fire
import torch

from bundle.experiments.model_stats import model_stats_markdown, model_stats_rows, write_model_stats


def main(output: str | None = None, threads: int = 2) -> None:
    """
    Args:
        output: optional markdown file to write the table to, e.g. ``docs/model_stats.md``.
        threads: torch CPU threads. Defaults to 2.
    """
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(threads)
    table = model_stats_markdown(model_stats_rows())
    print(table)
    if output is not None:
        write_model_stats(output, table)


if __name__ == "__main__":
    fire.Fire(main)
