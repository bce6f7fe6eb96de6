"""Score a finished evaluation again against reference lesions rebuilt from its label maps, without inference.

An evaluation (``configs/evaluate.json``) writes every candidate it found to ``per_scan.json``. When the way the
reference lesions are read from the label maps changes (:py:func:`bundle.metrics.outputs.label_lesions`, e.g. its
``merge_gap_mm``), the candidates do not: they depend only on the network and the image. So the new numbers follow
from the stored candidates and the label maps, preprocessed exactly as the evaluation did, in seconds per case
instead of a network pass per case.

Before it rescores, it rebuilds the old reference (every component a lesion) and requires it to equal the stored
one, lesion by lesion: that proves the label maps, their order and the preprocessing grid are the evaluation's.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.bundle import ConfigParser

from bundle.engines.report import write_detection_report
from bundle.metrics.outputs import MERGE_GAP_MM, label_lesions

__all__ = ["reference_lesions", "rescore_evaluation"]

logger = logging.getLogger(__name__)


def reference_lesions(
    config_files: Sequence[str], overrides: dict[str, Any] | None = None, merge_gap_mm: float = MERGE_GAP_MM
) -> tuple[list[list[dict[str, Any]]], list[list[dict[str, Any]]]]:
    """The reference lesions of every held-out case of an evaluation config, with and without merging.

    Args:
        config_files: the evaluation's config files (e.g. ``configs/train.json`` and ``configs/evaluate.json``).
        overrides: the evaluation's command-line overrides (e.g. ``{"datalist_file": ...}``).
        merge_gap_mm: see :py:func:`bundle.metrics.outputs.label_lesions`.

    Returns:
        ``(components, merged)``: per case, the lesions with ``merge_gap_mm=0`` and with ``merge_gap_mm``.
    """
    parser = ConfigParser()
    parser.read_config(list(config_files))
    for key, value in (overrides or {}).items():
        parser[key] = value
    transform = parser.get_parsed_content("validate#preprocessing")
    components, merged = [], []
    for item in parser.get_parsed_content("heldout_datalist"):
        label = transform(dict(item))["label"]
        affine = np.asarray(torch.as_tensor(label.affine), dtype=np.float64)
        mask = np.asarray(torch.as_tensor(label))[0] > 0
        components.append(label_lesions(mask, affine, 0.0))
        merged.append(label_lesions(mask, affine, merge_gap_mm))
    return components, merged


def _same_lesions(stored: Sequence[dict[str, Any]], rebuilt: Sequence[dict[str, Any]], tol_mm: float = 1e-3) -> bool:
    if len(stored) != len(rebuilt):
        return False
    key = lambda les: tuple(np.round(les["center_mm"], 2))  # noqa: E731
    for a, b in zip(sorted(stored, key=key), sorted(rebuilt, key=key)):
        if np.abs(np.subtract(a["center_mm"], b["center_mm"])).max() > tol_mm:
            return False
        if abs(a["diameter_mm"] - b["diameter_mm"]) > tol_mm:
            return False
    return True


def rescore_evaluation(
    eval_dir: str | Path,
    config_files: Sequence[str],
    output_dir: str | Path,
    overrides: dict[str, Any] | None = None,
    merge_gap_mm: float = MERGE_GAP_MM,
) -> dict[str, Any]:
    """Score the candidates of ``eval_dir/per_scan.json`` against the merged reference lesions.

    Writes ``metrics.json``, ``per_scan.json`` and ``froc.png`` to ``output_dir`` (parameters, seconds per volume
    and threshold are those of ``eval_dir/metrics.json``) and returns the metrics dict.

    Raises:
        FileNotFoundError: when ``eval_dir`` lacks ``per_scan.json`` or ``metrics.json``.
        ValueError: when the stored reference is not the one the config rebuilds (another data set, split, order or
            preprocessing), or ``output_dir`` is ``eval_dir``.
    """
    eval_dir, output_dir = Path(eval_dir), Path(output_dir)
    if eval_dir.resolve() == output_dir.resolve():
        raise ValueError(f"{output_dir}: the rescored report must not overwrite the evaluation it comes from.")
    for name in ("per_scan.json", "metrics.json"):
        if not (eval_dir / name).is_file():
            raise FileNotFoundError(f"{eval_dir / name}: no such file (run the evaluation first).")
    stored = json.loads((eval_dir / "per_scan.json").read_text())
    metrics = json.loads((eval_dir / "metrics.json").read_text())
    components, merged = reference_lesions(config_files, overrides, merge_gap_mm)
    scans = stored["scans"]
    if len(scans) != len(components):
        raise ValueError(f"{eval_dir / 'per_scan.json'}: {len(scans)} scans, but the config lists {len(components)} cases.")
    for scan, rebuilt in zip(scans, components):
        if not _same_lesions(scan["lesions"], rebuilt):
            raise ValueError(
                f"{eval_dir / 'per_scan.json'}: scan {scan['scan']}'s lesions differ from the label map the config "
                "reads: another data set, split, order or preprocessing."
            )
    per_scan = [
        ([{"center_mm": c["center_mm"], "score": c["score"]} for c in scan["candidates"]], lesions)
        for scan, lesions in zip(scans, merged)
    ]
    logger.info(
        "%s: %d reference lesions -> %d with merge_gap_mm=%g",
        eval_dir, sum(map(len, components)), sum(map(len, merged)), merge_gap_mm,
    )
    return write_detection_report(
        per_scan,
        output_dir,
        n_params=metrics.get("n_params"),
        seconds_per_volume=metrics.get("seconds_per_volume"),
        threshold=metrics.get("threshold", 0.5),
        hit_radius=stored.get("hit_radius", "radius"),
        min_radius_mm=stored.get("min_radius_mm", 1.5),
    )
