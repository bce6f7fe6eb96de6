"""Hits of a finished evaluation broken down by what the data set knows about each lesion (kind, shape, source).

``per_scan.json`` (written by ``configs/evaluate.json``) lists each scan's reference lesions with their centre,
diameter and best candidate score; the datalist's lesion records carry ``kind`` (solid, part-solid, ggo),
``shape`` (spherical, lobulated, spiculated, lidc) and ``synthetic``. :func:`breakdown` joins them by centre and
counts lesions and hits (score >= threshold) per value of a record field and per size band.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from monai.config import PathLike

__all__ = ["breakdown", "format_breakdown", "BANDS_MM"]

BANDS_MM = (3.0, 6.0, 10.0, 30.0)  # issue #21's bands: 3-6, 6-10, 10-30, > 30 mm (below 3 mm: "< 3")


def _band(diameter: float, edges: Sequence[float]) -> str:
    if diameter < edges[0]:
        return f"< {edges[0]:g}"
    for lo, hi in zip(edges, edges[1:]):
        if lo <= diameter < hi:
            return f"{lo:g}-{hi:g}"
    return f">= {edges[-1]:g}"


def breakdown(
    per_scan: PathLike | dict,
    entries: Sequence[dict],
    field: str = "kind",
    threshold: float = 0.5,
    tol_mm: float = 3.0,
    bands_mm: Sequence[float] = BANDS_MM,
) -> dict[str, Any]:
    """
    Lesions and hits per value of ``field`` of the datalist records, overall and per diameter band.

    Args:
        per_scan: an evaluation's ``per_scan.json`` (path or loaded).
        entries: the datalist entries the evaluation scored, in its order (one per scan).
        field: the lesion-record field, e.g. ``"kind"`` or ``"shape"``; a record that is not synthetic (the host's
            own lesion) counts as ``"real <value>"``, one without the field as ``"unknown"``, a reference lesion
            matching no record as ``"unmatched"``.
        threshold: the score a hit needs. Defaults to 0.5.
        tol_mm: the largest centre distance between a reference lesion and its record. Defaults to 3 mm.
        bands_mm: band edges (mm). Defaults to :data:`BANDS_MM`.

    Returns:
        ``{"field", "threshold", "bands" (the band names in order, ``"all"`` first), "rows": [{"value", "band",
        "n", "hits"}...]}``.

    Raises:
        ValueError: when the number of scans and entries differ.
    """
    data = json.loads(Path(per_scan).read_text()) if not isinstance(per_scan, dict) else per_scan
    scans = data["scans"]
    if len(scans) != len(entries):
        raise ValueError(f"per_scan has {len(scans)} scans but {len(entries)} datalist entries were given.")
    tally: dict[tuple[str, str], list[int]] = {}
    for scan, entry in zip(scans, entries):
        records = entry.get("lesions", [])
        centres = np.array([r["center_mm"] for r in records], dtype=float).reshape(-1, 3)
        for lesion in scan["lesions"]:
            if lesion.get("ignore"):
                continue
            value = "unmatched"
            if len(records):
                dist = np.linalg.norm(centres - np.asarray(lesion["center_mm"]), axis=1)
                if dist.min() <= tol_mm:
                    record = records[int(dist.argmin())]
                    value = str(record.get(field, "unknown"))
                    if not record.get("synthetic", False):  # the host's own lesion (e.g. the real tumour)
                        value = f"real {value}"
            hit = int(lesion.get("score") is not None and lesion["score"] >= threshold)
            for band in ("all", _band(float(lesion["diameter_mm"]), bands_mm)):
                counts = tally.setdefault((value, band), [0, 0])
                counts[0] += 1
                counts[1] += hit
    order = ["all"] + [_band(e, bands_mm) for e in [bands_mm[0] - 1, *bands_mm]]
    rows = [{"value": v, "band": b, "n": n, "hits": h}
            for (v, b), (n, h) in sorted(tally.items(), key=lambda kv: (kv[0][0], order.index(kv[0][1])))]  # fmt: skip
    return {"field": field, "threshold": float(threshold), "bands": order, "rows": rows}


def format_breakdown(result: dict[str, Any]) -> str:
    """Markdown table of :func:`breakdown`: one row per value, one column per band ("hits / lesions")."""
    present = {r["band"] for r in result["rows"]}
    bands = [b for b in result["bands"] if b in present]
    values = list(dict.fromkeys(r["value"] for r in result["rows"]))
    cell = {(r["value"], r["band"]): f"{r['hits']}/{r['n']}" for r in result["rows"]}
    lines = [f"| {result['field']} | " + " | ".join(f"{b} mm" if b != "all" else "all" for b in bands) + " |",
             "|---" * (len(bands) + 1) + "|"]  # fmt: skip
    lines += [f"| {v} | " + " | ".join(cell.get((v, b), "") for b in bands) + " |" for v in values]
    return "\n".join(lines) + "\n"
