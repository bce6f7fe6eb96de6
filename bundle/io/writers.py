"""Output writing for the inference run: per-case outputs (seg.nii.gz, lesions.json, overlay.png drawn by
:py:mod:`bundle.io.overlay`), and summary.json.

Every file goes through :py:mod:`bundle.io.atomic` (temporary file, fsync, ``os.replace``; never over an input), so
a crash never leaves a half-written output under its final name. ``lesions.json`` is written last: its presence marks a finished case, which is what the re-run policy (``overwrite=False``) checks.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from monai.config import NdarrayOrTensor, PathLike
from monai.utils import convert_to_numpy

from bundle.io.atomic import atomic_save_nifti, atomic_write_bytes, atomic_write_text
from bundle.io.overlay import render_overlay
from bundle.lesions.find import LESION_KEYS
from bundle.tiers import TIER_REPORT_ORDER

__all__ = [
    "check_output_dir",
    "safe_case_name",
    "case_done",
    "write_case_outputs",
    "write_summary",
]

logger = logging.getLogger(__name__)

LESIONS_FILENAME = "lesions.json"
SEG_FILENAME = "seg.nii.gz"
OVERLAY_FILENAME = "overlay.png"
META_FILENAME = "meta.json"
SUMMARY_FILENAME = "summary.json"
SUMMARY_CSV_FILENAME = "summary.csv"
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._+-]")


def check_output_dir(dataset_dir: PathLike, output_dir: PathLike, allow_inside: bool = False) -> Path:
    """
    Refuse an ``output_dir`` equal to or inside ``dataset_dir``: outputs would mix with inputs, and a later run
    would read them back as cases.

    Args:
        dataset_dir: the input folder.
        output_dir: the output folder.
        allow_inside: accept an ``output_dir`` inside (not equal to) ``dataset_dir``.

    Returns:
        the resolved ``output_dir``.

    Raises:
        ValueError: When ``output_dir`` equals ``dataset_dir``, or lies inside it and ``allow_inside`` is False.

    """
    data_root = Path(dataset_dir).expanduser().resolve()
    out = Path(output_dir).expanduser().resolve()
    if out == data_root or (not allow_inside and data_root in out.parents):
        raise ValueError(
            f"output_dir must not be dataset_dir or lie inside it (allow_inside={allow_inside}), "
            f"got output_dir={out} and dataset_dir={data_root}."
        )
    return out


def safe_case_name(case: str) -> str:
    """
    Folder name for a case: characters other than letters, digits and ``._+-`` become ``_``.

    Raises:
        ValueError: When ``case`` is empty, ``.`` or ``..``.

    """
    name = _UNSAFE_NAME.sub("_", str(case))
    if name in ("", ".", ".."):
        raise ValueError(f"case must be a non-empty name other than '.' and '..', got case={case!r}.")
    return name


def case_done(output_dir: PathLike, case: str) -> bool:
    """Whether ``case`` finished in ``output_dir`` (its ``lesions.json``, written last, exists)."""
    return (Path(output_dir) / safe_case_name(case) / LESIONS_FILENAME).is_file()


def _lesion_record(lesion: Mapping[str, Any], index: int) -> dict[str, Any]:
    """The lesions.json form of one lesion: exactly the schema keys, plain JSON numbers, rounded."""
    missing = [k for k in LESION_KEYS if k not in lesion]
    if missing:
        raise ValueError(f"lesions[{index}] must have the keys of the lesions.json schema, missing {missing}.")
    if lesion["tier"] not in TIER_REPORT_ORDER:
        raise ValueError(f"lesions[{index}]['tier'] must be one of {TIER_REPORT_ORDER}, got {lesion['tier']!r}.")
    return {
        "center_voxel": [round(float(v), 2) for v in lesion["center_voxel"]],
        "center_mm": [round(float(v), 3) for v in lesion["center_mm"]],
        "box_voxel": [[int(v) for v in corner] for corner in lesion["box_voxel"]],
        "diameter_mm": round(float(lesion["diameter_mm"]), 3),
        "volume_mm3": round(float(lesion["volume_mm3"]), 3),
        "score": round(float(lesion["score"]), 4),
        "tier": str(lesion["tier"]),
    }


def write_case_outputs(
    output_dir: PathLike,
    case: str,
    image_path: PathLike,
    seg: NdarrayOrTensor,
    affine: NdarrayOrTensor,
    lesions: Sequence[Mapping[str, Any]],
    image_for_overlay: NdarrayOrTensor | None = None,
    extra_meta: Mapping[str, Any] | None = None,
    protected: Sequence[PathLike] = (),
    overwrite: bool = True,
    window: Sequence[float] | None = None,
    max_panels: int = 12,
    overlay_seg: NdarrayOrTensor | None = None,
    overlay_affine: NdarrayOrTensor | None = None,
    overlay_lesions: Sequence[Mapping[str, Any]] | None = None,
    report: Mapping[str, Any] | None = None,
) -> dict[str, Path]:
    """
    Write one case's outputs into ``output_dir/<case>/`` (case name made folder-safe by :py:func:`safe_case_name`):

    - ``seg.nii.gz``: ``seg`` (the label map in the input's own voxel grid) with the input's ``affine``;
    - ``overlay.png``: :py:func:`bundle.io.overlay.render_overlay` of ``image_for_overlay`` (skipped when it is None);
    - ``meta.json``: ``extra_meta`` (only when given);
    - ``lesions.json``, last, exactly::

        {"case": ..., "image": ..., "lesions": [{"center_voxel": [i, j, k], "center_mm": [x, y, z],
         "box_voxel": [[i0, j0, k0], [i1, j1, k1]], "diameter_mm": ..., "volume_mm3": ..., "score": ...,
         "tier": "high"|"medium"|"low"}]}

      voxel indices in the input's grid (NIfTI: as nibabel indexes the array; box start inclusive, stop
      exclusive), world coordinates in RAS mm.

    Args:
        output_dir: the run's output folder.
        case: the case name.
        image_path: the input path, recorded in lesions.json and never written over.
        seg: label map (spatial_1, spatial_2[, spatial_3]) in the input's grid (e.g. the lesion label map of
            :py:func:`bundle.lesions.find.find_lesions`).
        affine: the input's voxel-to-world (RAS) matrix.
        lesions: lesion dicts with the keys above, highest score first.
        image_for_overlay: intensities for the overlay, in the grid of ``seg`` or, when ``overlay_seg`` is given, in
            the grid of ``overlay_seg``; None writes no overlay.
        extra_meta: JSON-serialisable extras (timings, routing statistics) for ``meta.json``.
        protected: more input paths that must never be written over or into (``image_path`` always is).
        overwrite: when False and the case already has ``lesions.json``, write nothing and return ``{}``.
        window: overlay intensity window, see :py:func:`bundle.io.overlay.render_overlay`.
        max_panels: overlay panel cap. Default 12.
        overlay_seg, overlay_affine, overlay_lesions: draw the overlay on another grid than ``seg``'s (e.g. the
            preprocessed grid where the lesions were found: no image needs resampling to the input's grid): its
            label map, voxel-to-world matrix and lesion records (same keys and order as ``lesions``). Default: the
            overlay is drawn with ``seg``, ``affine`` and ``lesions``.
        report: also write ``report.html`` (:py:mod:`bundle.io.report`; needs ``image_for_overlay``), with these
            ``seconds`` and ``software_version``; None (default) writes none.

    Returns:
        ``{"seg": path, "overlay": path, "meta": path, "lesions": path}`` for the files written.

    Raises:
        ValueError: When a destination is protected, a lesion lacks a schema key or has an unknown tier, or
            ``case`` is not a usable name.

    """
    case_dir = Path(output_dir) / safe_case_name(case)
    if not overwrite and case_done(output_dir, case):
        logger.info("case %s: %s exists, skipped (overwrite=False)", case, case_dir / LESIONS_FILENAME)
        return {}
    guard = [image_path, *protected]
    records = [_lesion_record(les, i) for i, les in enumerate(lesions)]
    labels = np.asarray(convert_to_numpy(seg))
    dtype = np.uint8 if labels.size == 0 or labels.max() <= np.iinfo(np.uint8).max else np.uint16
    written = {"seg": atomic_save_nifti(case_dir / SEG_FILENAME, labels, affine, guard, dtype=dtype)}
    if image_for_overlay is not None:
        if overlay_seg is None:
            png = render_overlay(image_for_overlay, labels, affine, records, str(case), window, max_panels)
        else:
            shown = records if overlay_lesions is None else [_lesion_record(r, i) for i, r in enumerate(overlay_lesions)]
            grid = affine if overlay_affine is None else overlay_affine
            png = render_overlay(image_for_overlay, overlay_seg, grid, shown, str(case), window, max_panels)
        written["overlay"] = atomic_write_bytes(case_dir / OVERLAY_FILENAME, png, guard)
        if report is not None:
            from bundle.io.report import REPORT_FILENAME, render_lesion_views, write_case_report

            views = render_lesion_views(
                image_for_overlay,
                labels if overlay_seg is None else overlay_seg,
                affine if overlay_affine is None else overlay_affine,
                shown if overlay_seg is not None else records,
                window,
            )  # fmt: skip
            written["report"] = write_case_report(
                case_dir / REPORT_FILENAME, str(case), image_path, records, views, report.get("seconds"),
                str(report.get("software_version", "0")), guard,
            )  # fmt: skip
    if extra_meta:
        written["meta"] = atomic_write_text(
            case_dir / META_FILENAME, json.dumps(extra_meta, indent=2, default=str), guard
        )
    # one lesion per line: readable by a person, still plain JSON
    lines = ",\n".join(f"    {json.dumps(r)}" for r in records)
    lesions_text = f"[\n{lines}\n  ]" if records else "[]"
    header = f'"case": {json.dumps(str(case))},\n  "image": {json.dumps(str(image_path))}'
    text = f'{{\n  {header},\n  "lesions": {lesions_text}\n}}\n'
    written["lesions"] = atomic_write_text(case_dir / LESIONS_FILENAME, text, guard)
    return written


def write_summary(
    output_dir: PathLike,
    records: Sequence[Mapping[str, Any]],
    total_seconds: float | None = None,
    protected: Sequence[PathLike] = (),
    ignored: Sequence[Mapping[str, Any]] = (),
) -> Path:
    """
    Write ``output_dir/summary.json`` from per-case records and the input folder's entries that are not cases, and
    ``summary.csv``: one row per case and per ignored entry (columns ``SUMMARY_CSV_COLUMNS``; a record's
    ``largest_diameter_mm`` and ``max_score`` when it has them), for a spreadsheet.

    Each record has ``case``, ``image``, ``status`` (``"done"``, ``"failed"`` or ``"skipped"``), and ``error``
    (failed) or ``seconds``, ``windows`` (``{"high", "medium", "low"}`` counts or None), ``skipped_fraction``
    (or None), ``n_lesions`` and optionally ``stage_seconds`` (done). The summary::

        {"cases_done": [case, ...], "cases_failed": [{"case", "image", "error"}, ...],
         "cases_skipped": [case, ...],
         "entries_ignored": [{"path", "reason"}, ...],
         "per_case": {case: {"seconds", "windows": {"high", "medium", "low"}, "skipped_fraction", "n_lesions",
                             "stage_seconds": {"load_preprocess", "network", "lesions", "outputs"}}},
         "totals": {"cases", "done", "failed", "skipped", "ignored", "seconds", "windows", "skipped_fraction",
                    "n_lesions"}}

    ``cases_skipped`` are cases finished by an earlier run (``overwrite=False``); ``entries_ignored`` are the entries
    of the input folder that are no case (``ignored``: the ``skipped`` list of
    :py:func:`bundle.io.cases.scan_dataset`: non-image files, empty folders, ...), each with its one-line reason.
    ``totals.skipped_fraction`` pools the windows of all done cases with routing statistics (None without);
    ``totals.seconds`` is ``total_seconds`` when given, else the sum of per-case seconds.

    Args:
        output_dir: the run's output folder.
        records: the per-case records (see above).
        total_seconds: the run's wall time; None sums the per-case seconds.
        protected: input paths that must never be written over or into.
        ignored: ``{"path", "reason"}`` of every input entry that is not a case. Default none.

    Raises:
        ValueError: When a record's ``status`` is not one of the three, or an ignored entry lacks ``path`` or
            ``reason``.

    """
    done, failed, skipped, per_case = [], [], [], {}
    windows: dict[str, int] | None = None
    routed_windows = skipped_windows = 0.0
    for rec in records:
        status, case = rec.get("status"), str(rec.get("case"))
        if status == "failed":
            failed.append({"case": case, "image": str(rec.get("image")), "error": str(rec.get("error"))})
        elif status == "skipped":
            skipped.append(case)
        elif status == "done":
            done.append(case)
            counts = rec.get("windows")
            entry = {
                "seconds": round(float(rec.get("seconds", 0.0)), 3),
                "windows": {t: (None if counts is None else int(counts.get(t, 0))) for t in TIER_REPORT_ORDER},
                "skipped_fraction": rec.get("skipped_fraction"),
                "n_lesions": int(rec.get("n_lesions", 0)),
            }
            if rec.get("stage_seconds") is not None:
                entry["stage_seconds"] = {k: round(float(v), 3) for k, v in rec["stage_seconds"].items()}
            per_case[case] = entry
            if counts is not None:
                n = sum(entry["windows"].values())  # type: ignore[arg-type]
                windows = {t: (windows or {}).get(t, 0) + entry["windows"][t] for t in TIER_REPORT_ORDER}  # type: ignore[operator]
                if entry["skipped_fraction"] is not None:
                    routed_windows += n
                    skipped_windows += float(entry["skipped_fraction"]) * n
        else:
            raise ValueError(f"record status must be 'done', 'failed' or 'skipped', got status={status!r} ({case}).")
    seconds = sum(e["seconds"] for e in per_case.values()) if total_seconds is None else total_seconds
    entries = []
    for i, entry in enumerate(ignored):
        if not isinstance(entry, Mapping) or "path" not in entry or "reason" not in entry:
            raise ValueError(f"ignored[{i}] must be a mapping with 'path' and 'reason', got {entry!r}.")
        entries.append({"path": str(entry["path"]), "reason": " ".join(str(entry["reason"]).split())})
    summary = {
        "cases_done": done,
        "cases_failed": failed,
        "cases_skipped": skipped,
        "entries_ignored": entries,
        "per_case": per_case,
        "totals": {
            "cases": len(records),
            "done": len(done),
            "failed": len(failed),
            "skipped": len(skipped),
            "ignored": len(entries),
            "seconds": round(float(seconds), 3),
            "windows": windows,
            "skipped_fraction": round(skipped_windows / routed_windows, 4) if routed_windows else None,
            "n_lesions": sum(e["n_lesions"] for e in per_case.values()),
        },
    }
    path = atomic_write_text(Path(output_dir) / SUMMARY_FILENAME, json.dumps(summary, indent=2), protected)
    atomic_write_text(Path(output_dir) / SUMMARY_CSV_FILENAME, _summary_csv(records, entries), protected)
    return path


SUMMARY_CSV_COLUMNS = (
    "case", "image", "status", "n_lesions", "largest_diameter_mm", "max_score", "seconds", "windows_high",
    "windows_medium", "windows_low", "skipped_fraction", "error",
)  # fmt: skip


def _summary_csv(records: Sequence[Mapping[str, Any]], ignored: Sequence[Mapping[str, str]]) -> str:
    """One row per case (every status) and per ignored input entry (status ``ignored``, the reason as error)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, SUMMARY_CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for rec in records:
        row = {k: rec.get(k) for k in SUMMARY_CSV_COLUMNS}
        for tier in TIER_REPORT_ORDER:
            row[f"windows_{tier}"] = (rec.get("windows") or {}).get(tier)
        writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
    for entry in ignored:
        writer.writerow({"case": "", "image": entry["path"], "status": "ignored", "error": entry["reason"]})
    return buffer.getvalue()
