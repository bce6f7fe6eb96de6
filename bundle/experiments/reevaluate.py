"""Score a finished evaluation again against reference lesions rebuilt from its label maps, without inference.

An evaluation (``configs/evaluate.json``) writes every candidate it found to ``per_scan.json``. When the way the
reference lesions are read from the label maps changes (:py:func:`bundle.lesions.reference.label_lesions`, e.g. its
``merge_gap_mm``), the candidates do not: they depend only on the network and the image. So the new numbers follow
from the stored candidates and the label maps, preprocessed exactly as the evaluation did, in seconds per case
instead of a network pass per case.

Before it rescores, it rebuilds the old reference (every component a lesion) and requires it, or the merged one, to
equal the stored one, lesion by lesion: that shows the label maps, their order and the preprocessing grid are the
evaluation's (only cases with identical lesion lists, e.g. two cases without lesions, could be swapped unnoticed).
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
from scipy import ndimage

from bundle.data.datalist import load_datalist
from bundle.engines.report import write_detection_report
from bundle.lesions.reference import MERGE_GAP_MM, check_merge_gap, label_lesions

__all__ = [
    "config_file_list",
    "reference_lesions",
    "rescore_evaluation",
    "component_gaps",
    "reference_gaps",
    "format_reference_gaps",
]

logger = logging.getLogger(__name__)


def config_file_list(config_file: str | Sequence[str], must_exist: bool = False) -> list[str]:
    """The config files of a command line: a list, or one string separated by commas (as ``monai.bundle`` reads it).

    Args:
        config_file: e.g. ``"configs/train.json,configs/evaluate.json"`` or ``["configs/train.json", ...]``.
        must_exist: check that every file exists.

    Raises:
        FileNotFoundError: with ``must_exist``, for the first file that does not exist (``"<path>: no such config
            file."``).
    """
    files = config_file.split(",") if isinstance(config_file, str) else list(config_file)
    for path in files if must_exist else ():
        if not Path(path).is_file():
            raise FileNotFoundError(f"{path}: no such config file.")
    return files


def _parser(config_files: Sequence[str], overrides: dict[str, Any] | None) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config(list(config_files))
    parser.update(dict(overrides or {}))
    return parser


def reference_lesions(
    config_files: Sequence[str], overrides: dict[str, Any] | None = None, merge_gap_mm: float | None = None
) -> tuple[list[list[dict[str, Any]]], list[list[dict[str, Any]]], float]:
    """The reference lesions of every held-out case of an evaluation config, with and without merging.

    Args:
        config_files: the evaluation's config files (e.g. ``configs/train.json`` and ``configs/evaluate.json``).
        overrides: the evaluation's command-line overrides (e.g. ``{"datalist_file": ...}``).
        merge_gap_mm: see :py:func:`bundle.lesions.reference.label_lesions`; None: the config's ``merge_gap_mm``
            (:py:data:`bundle.lesions.reference.MERGE_GAP_MM` when it has none).

    Returns:
        ``(components, merged, merge_gap_mm)``: per case, the lesions with ``merge_gap_mm=0`` and with the merge
        gap used, and that gap.
    """
    parser = _parser(config_files, overrides)
    if merge_gap_mm is None:
        merge_gap_mm = float(parser.get_parsed_content("merge_gap_mm")) if "merge_gap_mm" in parser else MERGE_GAP_MM
    merge_gap_mm = check_merge_gap(merge_gap_mm)
    transform = parser.get_parsed_content("validate#preprocessing")
    components, merged = [], []
    for item in parser.get_parsed_content("heldout_datalist"):
        label = transform(dict(item))["label"]
        affine = np.asarray(torch.as_tensor(label.affine), dtype=np.float64)
        mask = np.asarray(torch.as_tensor(label))[0] > 0
        components.append(label_lesions(mask, affine, 0.0))
        merged.append(label_lesions(mask, affine, merge_gap_mm))
    return components, merged, merge_gap_mm


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
    merge_gap_mm: float | None = None,
) -> dict[str, Any]:
    """Score the candidates of ``eval_dir/per_scan.json`` against the merged reference lesions.

    The stored reference must be the label maps' components (an evaluation before the merge rule) or already the
    merged lesions (then the scores do not change). ``merge_gap_mm`` None takes the config's ``merge_gap_mm``.

    Writes ``metrics.json``, ``per_scan.json`` and ``froc.png`` to ``output_dir`` (parameters, seconds per volume
    and threshold are those of ``eval_dir/metrics.json``) and returns the metrics dict.

    Raises:
        FileNotFoundError: when ``eval_dir`` lacks ``per_scan.json`` or ``metrics.json``.
        ValueError: when the stored reference is neither of the two the config rebuilds (another data set, split,
            order, preprocessing or merge gap), or ``output_dir`` is ``eval_dir``, or ``merge_gap_mm`` is not a
            number >= 0.
    """
    eval_dir, output_dir = Path(eval_dir), Path(output_dir)
    if eval_dir.resolve() == output_dir.resolve():
        raise ValueError(f"{output_dir}: the rescored report must not overwrite the evaluation it comes from.")
    for name in ("per_scan.json", "metrics.json"):
        if not (eval_dir / name).is_file():
            raise FileNotFoundError(f"{eval_dir / name}: no such file (run the evaluation first).")
    if merge_gap_mm is not None:
        check_merge_gap(merge_gap_mm)  # before any case is read
    stored = json.loads((eval_dir / "per_scan.json").read_text())
    metrics = json.loads((eval_dir / "metrics.json").read_text())
    components, merged, merge_gap_mm = reference_lesions(config_files, overrides, merge_gap_mm)
    scans = stored["scans"]
    if len(scans) != len(components):
        raise ValueError(f"{eval_dir / 'per_scan.json'}: {len(scans)} scans, but the config lists {len(components)} cases.")
    for scan, old, new in zip(scans, components, merged):
        if not (_same_lesions(scan["lesions"], old) or _same_lesions(scan["lesions"], new)):
            raise ValueError(
                f"{eval_dir / 'per_scan.json'}: scan {scan['scan']}'s lesions are neither the label map's components "
                f"nor its lesions merged at {merge_gap_mm:g} mm: another data set, split, order, preprocessing or "
                "merge gap."
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


def component_gaps(
    mask: np.ndarray, affine: np.ndarray, lesions: Sequence[dict[str, Any]], search_mm: float = 20.0
) -> list[dict[str, Any]]:
    """How far each label component lies from the others, and whether it is a listed lesion or a piece of one.

    This is what a merge gap is chosen from: pieces must lie closer to their lesion than separate lesions to each
    other. Each lesion of ``lesions`` (the synthesis datalist's records: ``center_mm``, ``diameter_mm``) is the largest
    component whose centre lies within its radius (at least 1.5 mm) and nearer to it than to any other listed lesion;
    every other component is a piece.

    Args:
        mask: boolean label mask (H, W, D).
        affine: its voxel-to-world matrix.
        lesions: the lesions the datalist lists for this case.
        search_mm: gaps are measured up to this distance (None beyond).

    Returns:
        per component ``{"diameter_mm", "piece": bool, "to_lesion_centre_mm" (distance to the nearest listed
        lesion's centre), "gap_mm" (to the nearest other component), "lesion_gap_mm" (to the nearest other
        component that is a listed lesion)}``; a gap is None when there is none within ``search_mm``.
    """
    nd = mask.ndim
    aff = np.asarray(affine, dtype=np.float64)
    spacing = np.linalg.norm(aff[:nd, :nd], axis=0)
    components, count = ndimage.label(mask, structure=np.ones((3,) * nd))
    boxes = ndimage.find_objects(components)
    ids = np.arange(1, count + 1)
    sizes = ndimage.sum_labels(mask, components, ids) if count else []
    centres = ndimage.center_of_mass(mask, components, ids) if count else []
    voxel_volume = abs(float(np.linalg.det(aff[:nd, :nd])))
    rows = []
    for size, centre in zip(sizes, centres):
        centre_mm = (aff @ np.append(centre, 1.0))[:nd]
        volume = float(size) * voxel_volume
        dist = [float(np.linalg.norm(centre_mm - np.asarray(t["center_mm"]))) for t in lesions]
        j = int(np.argmin(dist)) if dist else -1
        rows.append({
            "diameter_mm": (6.0 * volume / np.pi) ** (1.0 / 3.0) if nd == 3 else 2.0 * np.sqrt(volume / np.pi),
            "piece": j < 0 or dist[j] > max(lesions[j]["diameter_mm"] / 2, 1.5),
            "to_lesion_centre_mm": dist[j] if j >= 0 else None,
            "_lesion": j,
        })
    # one component per listed lesion: the largest of those centred on it; the others are its pieces
    largest: dict[int, int] = {}
    for i, row in enumerate(rows):
        j = row["_lesion"]
        if not row["piece"] and (j not in largest or sizes[i] > sizes[largest[j]]):
            largest[j] = i
    for i, row in enumerate(rows):
        row["piece"] = largest.get(row.pop("_lesion")) != i
    listed = np.array([False] + [not r["piece"] for r in rows])  # indexed by component id
    reach = np.ceil(search_mm / spacing).astype(int)
    for k, (box, row) in enumerate(zip(boxes, rows), start=1):
        lo = [max(b.start - r, 0) for b, r in zip(box, reach)]
        hi = [min(b.stop + r, n) for b, r, n in zip(box, reach, mask.shape)]
        crop = components[tuple(slice(a, b) for a, b in zip(lo, hi))]
        own = crop == k
        for key, others in (("gap_mm", (crop > 0) & ~own), ("lesion_gap_mm", listed[crop] & ~own)):
            gap = float(ndimage.distance_transform_edt(~others, sampling=spacing)[own].min()) if others.any() else None
            row[key] = None if gap is None or gap > search_mm else gap
    return rows


def reference_gaps(
    config_files: Sequence[str], overrides: dict[str, Any] | None = None, split: str = "training"
) -> dict[str, Any]:
    """:py:func:`component_gaps` over one list of a synthesis datalist, on the grid the evaluation reads.

    Args:
        config_files: the evaluation's config files (their ``validate#preprocessing`` and ``datalist_file``).
        overrides: config overrides, e.g. ``{"datalist_file": ...}``.
        split: the datalist list to measure. Defaults to ``"training"`` (choose a merge gap away from the held-out
            cases).

    Returns:
        ``{"cases", "components", "pieces": [...], "piece_gaps_mm": sorted gaps of the pieces, "lesion_gaps_mm":
        sorted gaps between listed lesions}``; a merge gap between the largest piece gap and the smallest lesion
        gap keeps lesions apart and joins every piece.
    """
    parser = _parser(config_files, overrides)
    transform = parser.get_parsed_content("validate#preprocessing")
    items = load_datalist(parser.get_parsed_content("datalist_file"), split)
    pieces, piece_gaps, lesion_gaps, n_components = [], [], [], 0
    for item in items:
        label = transform({"image": item["image"], "label": item["label"]})["label"]
        affine = np.asarray(torch.as_tensor(label.affine), dtype=np.float64)
        rows = component_gaps(np.asarray(torch.as_tensor(label))[0] > 0, affine, item.get("lesions", []))
        n_components += len(rows)
        for row in rows:
            if row["piece"]:
                pieces.append({"case": item.get("case", item["label"]), **row})
                piece_gaps.append(row["gap_mm"])
            elif row["lesion_gap_mm"] is not None:
                lesion_gaps.append(row["lesion_gap_mm"])
    return {"cases": len(items), "components": n_components, "pieces": pieces,
            "piece_gaps_mm": sorted(g for g in piece_gaps if g is not None), "lesion_gaps_mm": sorted(lesion_gaps)}


def format_reference_gaps(result: dict[str, Any]) -> str:
    """The printout of :py:func:`reference_gaps`: one JSON line per piece (floats to 0.1), the counts, the piece
    gaps and the 10 smallest gaps between lesions (mm)."""
    lines = [json.dumps({k: (round(v, 1) if isinstance(v, float) else v) for k, v in piece.items()})
             for piece in result["pieces"]]
    lines.append(f"{result['cases']} cases, {result['components']} label components, {len(result['pieces'])} pieces")
    lines.append(f"piece gaps (mm): {[round(g, 1) for g in result['piece_gaps_mm']]}")
    lines.append(f"gaps between lesions (mm, smallest 10): {[round(g, 1) for g in result['lesion_gaps_mm'][:10]]}")
    return "\n".join(lines)
