"""Scan-level triage from the lesion detector: the highest lesion score of a scan ranks scans with lesions above
lesion-free ones; ROC AUC with a bootstrap interval.

The synthetic-lesion CT set has no lesion-free scan: every held-out case is the left half of one real chest CT,
which holds a real tumour. :func:`build_triage_set` makes a set that has both, from the same host and recipe:

- one z-slab per scan: the longest run of axial slices that stays ``margin_slices`` away from every real lesion
  (the datalist's non-synthetic lesion boxes and the host's known-lesion region), the same slab for every scan;
- positives: the held-out (``validation``) cases cut to that slab, when the slab holds synthetic lesion voxels
  (a case whose slab holds none is a negative);
- negatives: the same host cut to the same slab *without* inserted lesions, with the synthesis module's
  per-case texture variation (:func:`bundle.data.synthetic.noise.vary_host`, one seed per scan), as the held-out
  cases had.

Run the detector on ``<set>/images`` (``configs/inference.json``), then :func:`max_lesion_scores` reads each
scan's ``lesions.json`` (no lesion reported -> score 0) and :func:`triage_auc` scores the ranking
(:func:`score_triage` does both and writes the result).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from monai.config import PathLike

from bundle.classification.metrics import bootstrap_auc_ci, roc_auc
from bundle.data.synthetic.hosts import crop_volume, load_host
from bundle.data.synthetic.noise import vary_host
from bundle.io.atomic import atomic_save_nifti, atomic_write_text
from bundle.io.writers import safe_case_name

__all__ = [
    "lesion_free_slab",
    "build_triage_set",
    "max_lesion_scores",
    "triage_auc",
    "triage_markdown",
    "score_triage",
]

logger = logging.getLogger(__name__)

MANIFEST = "triage.json"


def lesion_free_slab(depth: int, excluded: Sequence[tuple[int, int]], margin_slices: int = 2) -> tuple[int, int]:
    """
    Longest run of slices ``[lo, hi)`` of a ``depth``-slice volume that stays ``margin_slices`` away from every
    excluded inclusive range ``(first, last)`` (the first such run when several are equally long).

    Raises:
        ValueError: when ``depth`` < 1, ``margin_slices`` < 0, or no slice is left.
    """
    if depth < 1 or margin_slices < 0:
        raise ValueError(f"depth must be >= 1 and margin_slices >= 0, got depth={depth}, margin={margin_slices}.")
    free = np.ones(depth, dtype=bool)
    for first, last in excluded:
        free[max(int(first) - margin_slices, 0) : max(int(last) + margin_slices + 1, 0)] = False
    best, start = (0, 0), None
    for k, ok in enumerate(np.append(free, False)):
        if ok and start is None:
            start = k
        elif not ok and start is not None:
            if k - start > best[1] - best[0]:
                best = (start, k)
            start = None
    if best[1] == best[0]:
        raise ValueError(f"no slice of {depth} is {margin_slices} slices away from the excluded ranges {excluded}.")
    return best


def _real_lesion_ranges(entries: Sequence[dict], host_roi: dict | None, affine: np.ndarray) -> list[tuple[int, int]]:
    """Slice ranges of the datalist's real lesion boxes and of the host's known-lesion region."""
    ranges = [
        (int(l["box_voxel"][0][2]), int(l["box_voxel"][1][2]))
        for e in entries for l in e.get("lesions", []) if l.get("synthetic", True) is False and "box_voxel" in l
    ]
    if host_roi is not None:
        center = np.linalg.solve(affine, np.append(host_roi["center_mm"], 1.0))[2]
        half = abs(host_roi["radii_mm"][2] / np.linalg.norm(affine[:3, 2]))
        ranges.append((int(np.floor(center - half)), int(np.ceil(center + half))))
    return ranges


def build_triage_set(
    datalist_json: PathLike, output_dir: PathLike, n_negatives: int = 8, margin_slices: int = 2, seed: int = 0
) -> dict[str, Any]:
    """
    Write the triage set described in the module docstring: ``images/<case>.nii.gz`` and ``triage.json``.

    Args:
        datalist_json: the synthesis ``datalist.json``; its ``validation`` cases must share one host.
        output_dir: destination folder.
        n_negatives: lesion-free host scans to make. Defaults to 8.
        margin_slices: slices kept clear on each side of a real lesion. Defaults to 2.
        seed: seed of the negatives' texture variation. Defaults to 0.

    Returns:
        the manifest: ``{"settings" (host, slab, ...), "scans": [{"case", "label", "source", "lesion_voxels",
        "lesion_diameters_mm"}, ...]}``.

    Raises:
        ValueError: when the datalist is unreadable, its validation cases span several hosts, or a case's
            grid differs from the host's.
    """
    datalist_json, out = Path(datalist_json), Path(output_dir)
    try:
        entries = json.loads(datalist_json.read_text())["validation"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as err:
        raise ValueError(f"{datalist_json}: cannot read its 'validation' cases ({err}).") from err
    hosts = sorted({str(e.get("host")) for e in entries})
    if len(hosts) != 1 or not entries:
        raise ValueError(f"{datalist_json}: validation cases must share one host, got {hosts}.")
    host, affine, meta = load_host(hosts[0])
    lo, hi = lesion_free_slab(host.shape[2], _real_lesion_ranges(entries, meta.get("known_lesion_roi"), affine),
                              margin_slices)
    box_lo, box_hi = (0, 0, lo), (host.shape[0], host.shape[1], hi)
    scans: list[dict[str, Any]] = []
    for e in entries:
        image_path, label_path = datalist_json.parent / e["image"], datalist_json.parent / e["label"]
        image, label = nib.load(str(image_path)), np.asarray(nib.load(str(label_path)).dataobj)
        if image.shape != host.shape or label.shape != host.shape:
            raise ValueError(f"{image_path}: shape {image.shape} differs from the host {hosts[0]}'s {host.shape}.")
        slab, slab_affine = crop_volume(np.asarray(image.dataobj), image.affine, box_lo, box_hi)
        voxels = int((label[:, :, lo:hi] > 0).sum())
        case = safe_case_name(str(e.get("case", Path(e["image"]).name.split(".")[0])))
        atomic_save_nifti(out / "images" / f"{case}.nii.gz", slab, slab_affine, dtype=np.int16)
        diameters = [l["diameter_mm"] for l in e.get("lesions", [])
                     if l.get("synthetic", True) and lo <= l["center_voxel"][2] < hi]
        scans.append({"case": case, "label": int(voxels > 0), "source": "held-out case", "lesion_voxels": voxels,
                      "lesion_diameters_mm": diameters})
    for i in range(n_negatives):
        varied, params = vary_host(host, "CT", np.random.default_rng([seed, 1000 + i]))
        slab, slab_affine = crop_volume(np.rint(varied), affine, box_lo, box_hi)
        case = safe_case_name(f"{hosts[0].replace(':', '_')}_clean_{i:03d}")
        atomic_save_nifti(out / "images" / f"{case}.nii.gz", slab, slab_affine, dtype=np.int16)
        scans.append({"case": case, "label": 0, "source": "host without inserted lesions", "lesion_voxels": 0,
                      "lesion_diameters_mm": [], "variation": params})
    manifest = {
        "settings": {"datalist": str(datalist_json), "host": hosts[0], "slab_slices": [lo, hi],
                     "margin_slices": margin_slices, "n_negatives": n_negatives, "seed": seed},
        "scans": scans,
    }
    atomic_write_text(out / MANIFEST, json.dumps(manifest, indent=1))
    logger.info("triage set in %s: %d scans (%d with lesions), slices %d..%d", out, len(scans),
                sum(s["label"] for s in scans), lo, hi - 1)
    return manifest


def max_lesion_scores(detector_dir: PathLike, cases: Sequence[str]) -> list[float]:
    """
    Highest ``score`` in ``<detector_dir>/<case>/lesions.json`` per case; 0.0 when the detector reported none.

    Raises:
        ValueError: when a case's ``lesions.json`` is missing or malformed (the message names the file).
    """
    scores = []
    for case in cases:
        path = Path(detector_dir) / safe_case_name(case) / "lesions.json"
        if not path.is_file():
            raise ValueError(f"{path}: missing; run the detector on the triage images first.")
        try:
            lesions = json.loads(path.read_text())["lesions"]
            scores.append(max((float(l["score"]) for l in lesions), default=0.0))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{path}: not a lesions.json with a 'lesions' list of scored lesions ({err}).") from err
    return scores


def triage_auc(
    labels: Sequence[int], scores: Sequence[float], n_bootstrap: int = 1000, seed: int = 0, confidence: float = 0.95
) -> dict[str, Any]:
    """
    ROC AUC of ranking scans by their highest lesion score (ties count half), with a percentile bootstrap
    interval over scans, and the operating point "any lesion reported" (score > 0).

    Args:
        labels: 1 for a scan with lesions, 0 without.
        scores: the scan's highest lesion score (0 when none).
        n_bootstrap: resamples. Defaults to 1000.
        seed: bootstrap seed. Defaults to 0.
        confidence: interval mass. Defaults to 0.95.

    Returns:
        ``{"n", "n_positive", "n_negative", "auc", "auc_ci", "sensitivity_any", "specificity_any"}``.

    Raises:
        ValueError: when the lengths differ, a label is not 0/1, or a score is not finite.
    """
    y, s = np.asarray(labels), np.asarray(scores, dtype=np.float64)
    if y.shape != s.shape or y.ndim != 1:
        raise ValueError(f"labels and scores must be 1-D of equal length, got {y.shape} and {s.shape}.")
    if not set(np.unique(y).tolist()) <= {0, 1} or not np.isfinite(s).all():
        raise ValueError(f"labels must be 0/1 and scores finite, got labels {sorted(set(y.tolist()))}.")
    probs = np.stack([-s, s], axis=1)  # only the ranking of column 1 matters for the AUC
    low, high, _ = bootstrap_auc_ci(y, probs, n_bootstrap=n_bootstrap, seed=seed, confidence=confidence)
    flagged = s > 0
    return {
        "n": int(y.size), "n_positive": int((y == 1).sum()), "n_negative": int((y == 0).sum()),
        "auc": roc_auc(y, probs), "auc_ci": [low, high],
        "sensitivity_any": float(flagged[y == 1].mean()) if (y == 1).any() else float("nan"),
        "specificity_any": float((~flagged[y == 0]).mean()) if (y == 0).any() else float("nan"),
    }


def triage_markdown(manifest: dict[str, Any], scores: Sequence[float], result: dict[str, Any]) -> str:
    """Summary line, result table and per-scan table of a triage run."""
    (lo, hi) = manifest["settings"]["slab_slices"]
    lines = [
        f"{result['n']} scans ({result['n_positive']} with lesions, {result['n_negative']} without), host "
        f"{manifest['settings']['host']}, axial slices {lo}..{hi - 1}.\n",
        "| scans (with / without lesions) | ROC AUC [95 % CI] | sensitivity / specificity, any lesion reported |",
        "|---|---|---|",
        f"| {result['n_positive']} / {result['n_negative']} | {result['auc']:.2f} [{result['auc_ci'][0]:.2f}, "
        f"{result['auc_ci'][1]:.2f}] | {result['sensitivity_any']:.2f} / {result['specificity_any']:.2f} |\n",
        "| scan | source | lesions (mm) | highest lesion score |",
        "|---|---|---|---|",
    ]
    for scan, score in zip(manifest["scans"], scores):
        sizes = ", ".join(f"{d:.0f}" for d in scan["lesion_diameters_mm"]) or "none"
        lines.append(f"| {scan['case']} | {scan['source']} | {sizes} | {score:.3f} |")
    return "\n".join(lines) + "\n"


def score_triage(
    triage_dir: PathLike,
    detector_dir: PathLike | None = None,
    n_bootstrap: int = 1000,
    seed: int = 0,
) -> str:
    """
    Score a triage set (:func:`build_triage_set`) from the detector's outputs: :func:`max_lesion_scores`, then
    :func:`triage_auc`; writes ``<triage_dir>/triage_result.json`` (the result and every scan's score) and returns
    :func:`triage_markdown`.

    Args:
        triage_dir: the folder written by :func:`build_triage_set`.
        detector_dir: the detector's output folder. Defaults to ``<triage_dir>/detector``.
        n_bootstrap: bootstrap resamples. Defaults to 1000.
        seed: bootstrap seed. Defaults to 0.

    Raises:
        FileNotFoundError: when ``triage_dir`` holds no manifest.
        ValueError: when a scan's ``lesions.json`` is missing or malformed, or the labels or scores are invalid.
    """
    manifest_path = Path(triage_dir) / MANIFEST
    if not manifest_path.is_file():
        raise FileNotFoundError(f"{manifest_path}: not found; run `python -m scripts.triage build` first.")
    manifest = json.loads(manifest_path.read_text())
    cases, labels = [s["case"] for s in manifest["scans"]], [s["label"] for s in manifest["scans"]]
    scores = max_lesion_scores(detector_dir or Path(triage_dir) / "detector", cases)
    result = triage_auc(labels, scores, n_bootstrap=n_bootstrap, seed=seed)
    table = triage_markdown(manifest, scores, result)
    atomic_write_text(Path(triage_dir) / "triage_result.json",
                      json.dumps({**result, "scores": dict(zip(cases, scores))}, indent=4))
    return table
