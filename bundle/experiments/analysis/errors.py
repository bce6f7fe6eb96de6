"""Error analysis of a held-out detection run: where the false positives lie and which lesions are missed.

Reads the ``per_scan.json`` written by :py:class:`bundle.engines.report.DetectionReportHandler` (every candidate
and ground-truth lesion with its match status) and the synthesis datalist that describes each lesion (kind, shape,
location, diameter), then

- puts every false positive at the operating threshold in an anatomical class from the host image: inside the
  threshold lung mask (parenchyma: vessels, airways, fissures) or outside it (pleura, chest wall, mediastinum,
  hilum, diaphragm), with its HU and distance to the lung;
- tabulates recall by lesion kind, shape, location and size band.

That is what decides the next step: false positives inside the lungs call for better training negatives, those
outside for a better candidate mask.
"""

from __future__ import annotations

import json
import os
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from scipy import ndimage

from bundle.data.datalist import load_datalist
from bundle.io.atomic import atomic_write_text
from bundle.lesions.geometry import world_to_voxel
from bundle.transforms.lung_mask import lung_mask

__all__ = [
    "classify_false_positives",
    "recall_by_attribute",
    "error_analysis",
    "format_error_tables",
    "write_error_analysis",
]

_ATTRIBUTES = ("kind", "shape", "location", "size_band")
_BANDS = ((3.0, 6.0, "3-6 mm"), (6.0, 10.0, "6-10 mm"), (10.0, 30.0, "10-30 mm"), (30.0, np.inf, ">= 30 mm"))


def _size_band(diameter_mm: float) -> str:
    for low, high, name in _BANDS:
        if low <= diameter_mm < high:
            return name
    return "< 3 mm"


def classify_false_positives(
    hu: np.ndarray, affine: np.ndarray, centers_mm: Sequence[Sequence[float]], lungs: np.ndarray | None = None
) -> list[dict[str, Any]]:
    """Anatomical class of each candidate centre in a CT volume.

    Args:
        hu: CT volume (H, W, D) in HU, slice axis last (a host of the synthesis data).
        affine: its voxel-to-RAS-mm matrix (4, 4).
        centers_mm: candidate centres in RAS mm.
        lungs: optional precomputed :py:func:`bundle.transforms.lung_mask.lung_mask` of ``hu``.

    Returns:
        per centre ``{"region": "lung" | "outside lung" | "outside image", "hu": mean HU of the 3 x 3 x 1
        neighbourhood, "distance_to_lung_mm": 0 inside the lung}``.

    Raises:
        ValueError: when ``hu`` is not 3-D or ``affine`` is not 4 x 4.
    """
    hu = np.asarray(hu, dtype=np.float32)
    affine = np.asarray(affine, dtype=np.float64)
    if hu.ndim != 3 or affine.shape != (4, 4):
        raise ValueError(f"hu must be 3-D and affine 4 x 4, got {hu.shape} and {affine.shape}.")
    spacing = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    if lungs is None:
        lungs = lung_mask(hu, spacing)
    distance = ndimage.distance_transform_edt(~lungs, sampling=spacing) if lungs.any() else None
    out = []
    for center in centers_mm:
        ijk = np.round(world_to_voxel(center, affine)).astype(int)
        if np.any(ijk < 0) or np.any(ijk >= hu.shape):
            out.append({"region": "outside image", "hu": None, "distance_to_lung_mm": None})
            continue
        i, j, k = (int(v) for v in ijk)
        patch = hu[max(i - 1, 0) : i + 2, max(j - 1, 0) : j + 2, k]
        in_lung = bool(lungs[i, j, k])
        out.append(
            {
                "region": "lung" if in_lung else "outside lung",
                "hu": float(patch.mean()),
                "distance_to_lung_mm": None if distance is None else float(distance[i, j, k]),
            }
        )
    return out


def _nearest(center: Sequence[float], lesions: Sequence[Mapping[str, Any]], tolerance_mm: float) -> int:
    """Index of the per-scan lesion whose centre is nearest to ``center`` (within ``tolerance_mm``), else -1."""
    if not lesions:
        return -1
    d = np.linalg.norm(np.asarray([les["center_mm"] for les in lesions], float) - np.asarray(center, float), axis=1)
    k = int(np.argmin(d))
    return k if d[k] <= tolerance_mm else -1


def recall_by_attribute(
    records: Sequence[Mapping[str, Any]], attributes: Sequence[str] = _ATTRIBUTES
) -> dict[str, dict[str, dict[str, float]]]:
    """Hits / total / recall per value of each attribute of the lesion records (``{"hit": bool, attr: value}``)."""
    table: dict[str, dict[str, dict[str, float]]] = {}
    for attribute in attributes:
        counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for record in records:
            value = str(record.get(attribute, "n/a"))
            counts[value][0] += int(bool(record["hit"]))
            counts[value][1] += 1
        table[attribute] = {
            value: {"hits": hits, "total": total, "recall": hits / total} for value, (hits, total) in sorted(counts.items())
        }
    return table


def error_analysis(
    datalist_file: str | os.PathLike,
    per_scan_file: str | os.PathLike,
    split: str = "validation",
    threshold: float = 0.5,
) -> dict[str, Any]:
    """False-positive classes and recall by lesion attribute for one evaluation run.

    Args:
        datalist_file: the synthesis ``datalist.json`` of the evaluated data.
        per_scan_file: ``per_scan.json`` of the evaluation (scans in the order of the datalist's ``split``).
        split: the evaluated list of the datalist. Defaults to ``"validation"`` (the held-out hosts).
        threshold: operating score threshold. Defaults to 0.5 (the evaluation's).

    Returns:
        ``{"false_positives": [...], "fp_by_region": {...}, "recall": {attribute: {value: {...}}}, "n_scans": N}``.

    Raises:
        ValueError: when the number of scans differs between the two files.
    """
    cases = load_datalist(datalist_file, split)
    with open(per_scan_file) as f:
        scans = json.load(f)["scans"]
    if len(scans) != len(cases):
        raise ValueError(
            f"{per_scan_file}: {len(scans)} scans, but the datalist's '{split}' list {datalist_file} has {len(cases)}."
        )
    false_positives, records = [], []
    for case, scan in zip(cases, scans, strict=True):
        name = case.get("case", os.path.basename(str(case["image"])))
        fps = [c for c in scan["candidates"] if c["status"] == "fp" and c["score"] >= threshold]
        if fps:
            image = nib.load(case["image"])
            classes = classify_false_positives(np.asarray(image.dataobj, np.float32), image.affine,
                                               [c["center_mm"] for c in fps])
            false_positives += [{"case": name, "score": c["score"], "center_mm": c["center_mm"], **cls}
                                for c, cls in zip(fps, classes, strict=True)]
        for lesion in case.get("lesions", []):
            k = _nearest(lesion["center_mm"], scan["lesions"], max(lesion["diameter_mm"] / 2.0, 2.0))
            score = None if k < 0 else scan["lesions"][k]["score"]
            records.append(
                {
                    "case": name,
                    "hit": score is not None and score >= threshold,
                    "kind": lesion.get("kind", "n/a") if lesion.get("synthetic", True) else "real tumour",
                    "shape": lesion.get("shape", "n/a"),
                    "location": lesion.get("location", "n/a"),
                    "size_band": _size_band(float(lesion["diameter_mm"])),
                }
            )
    return {
        "n_scans": len(scans),
        "threshold": threshold,
        "fp_by_region": dict(Counter(fp["region"] for fp in false_positives)),
        "false_positives": false_positives,
        "recall": recall_by_attribute(records),
    }


def format_error_tables(analysis: Mapping[str, Any]) -> str:
    """Markdown: false positives by region (with median HU), then recall by each lesion attribute."""
    n_scans = max(int(analysis["n_scans"]), 1)
    lines = ["| false positives | count | per scan | median HU | median distance to lung (mm) |", "|---|---|---|---|---|"]
    by_region: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for fp in analysis["false_positives"]:
        by_region[fp["region"]].append(fp)
    for region, items in sorted(by_region.items()):
        hus = [fp["hu"] for fp in items if fp["hu"] is not None]
        dists = [fp["distance_to_lung_mm"] for fp in items if fp["distance_to_lung_mm"] is not None]
        med_hu = f"{np.median(hus):.0f}" if hus else "n/a"
        med_d = f"{np.median(dists):.1f}" if dists else "n/a"
        lines.append(f"| {region} | {len(items)} | {len(items) / n_scans:.2f} | {med_hu} | {med_d} |")
    for attribute, values in analysis["recall"].items():
        lines += ["", f"| {attribute} | hits / lesions | recall |", "|---|---|---|"]
        lines += [f"| {v} | {r['hits']} / {r['total']} | {r['recall']:.2f} |" for v, r in values.items()]
    return "\n".join(lines) + "\n"


def write_error_analysis(
    datalist_file: str | os.PathLike,
    per_scan_file: str | os.PathLike,
    split: str = "validation",
    threshold: float = 0.5,
    output_dir: str | os.PathLike | None = None,
) -> str:
    """:py:func:`error_analysis` written as ``errors.json`` and ``errors.md`` (:py:func:`format_error_tables`) to
    ``output_dir`` (default: the folder of ``per_scan_file``), atomically; returns the markdown.

    Raises:
        FileNotFoundError: when ``datalist_file`` or ``per_scan_file`` does not exist (``"<path>: no such file."``).
        ValueError: when the number of scans differs between the two files.
    """
    for path in (datalist_file, per_scan_file):
        if not Path(path).is_file():
            raise FileNotFoundError(f"{path}: no such file.")
    analysis = error_analysis(datalist_file, per_scan_file, split, threshold)
    table = format_error_tables(analysis)
    out = Path(output_dir) if output_dir else Path(per_scan_file).parent
    atomic_write_text(out / "errors.json", json.dumps(analysis, indent=2) + "\n")
    atomic_write_text(out / "errors.md", table)
    return table
