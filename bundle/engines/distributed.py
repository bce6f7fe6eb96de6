"""Batch inference spread over processes (``torchrun``; gloo on CPU, nccl on GPU): one shard of cases per process.

``configs/multi_gpu_inference.json`` (on top of ``configs/inference.json``) gives each process the cases of MONAI's
``DistributedSampler`` (``shuffle=False``, ``even_divisible=False``: every case once, no padding) and has each
evaluator write its per-case records to ``records_rank<r>.json`` instead of ``summary.json``. After a barrier, rank
0 calls :func:`merge_shards`, which writes the one ``summary.json`` and ``summary.csv`` a single process would
write (cases in name order; the run's seconds are the slowest shard's) and removes the shard files.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from monai.config import PathLike

from bundle.io.writers import write_summary

__all__ = ["RECORDS_FILE", "records_file", "merge_shards"]

RECORDS_FILE = "records_rank{rank}.json"


def records_file(rank: int) -> str:
    """The shard file name of ``rank``."""
    if rank < 0:
        raise ValueError(f"rank must be >= 0, got rank={rank}.")
    return RECORDS_FILE.format(rank=rank)


def merge_shards(output_dir: PathLike, world_size: int, protected: Sequence[PathLike] = ()) -> Path:
    """
    Merge the shard files of a distributed run into ``summary.json`` and ``summary.csv``, then remove them.

    Args:
        output_dir: the run's output folder.
        world_size: the number of processes (one shard file each).
        protected: input paths never to be written over.

    Returns:
        the path of ``summary.json``.

    Raises:
        ValueError: when ``world_size < 1`` or a shard file is missing or unreadable (naming it).
    """
    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got world_size={world_size}.")
    out = Path(output_dir)
    parts = []
    for rank in range(world_size):
        path = out / records_file(rank)
        try:
            parts.append(json.loads(path.read_text()))
        except (OSError, ValueError) as e:
            raise ValueError(f"shard file {path} of rank {rank} is missing or unreadable: {e}") from e
    records = sorted((r for part in parts for r in part["records"]), key=lambda r: str(r.get("case")))
    ignored = [entry for part in parts for entry in part.get("ignored", [])]
    seconds = max(float(part["seconds"]) for part in parts)
    summary = write_summary(out, records, seconds, protected, ignored=ignored)
    for rank in range(world_size):
        (out / records_file(rank)).unlink()
    return summary
