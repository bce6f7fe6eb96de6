"""One-call detection evaluation (counts, FROC/CPM, size bands, balance score) and its table / JSON / plot outputs."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bundle.io.atomic import atomic_path, atomic_write_text
from bundle.metrics.lesion import (
    LUNA16_FP_RATES,
    SIZE_BANDS_MM,
    balance_score,
    f1,
    froc,
    froc_by_size,
    precision,
    recall,
    sensitivity_by_size,
)
from bundle.metrics.matching import ScanItem, detection_counts

__all__ = ["evaluate_detection", "format_table", "save_json", "plot_froc"]


def _optional_non_negative(value: float | None, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number >= 0 or None, got {name}={value!r} ({type(value).__name__}).")
    if not (math.isfinite(float(value)) and value >= 0):
        raise ValueError(f"{name} must be finite and >= 0, got {name}={value}.")
    return float(value)


def evaluate_detection(
    per_scan: Sequence[ScanItem],
    threshold: float = 0.5,
    n_params: int | None = None,
    seconds_per_image: float | None = None,
    seconds_per_volume: float | None = None,
    fp_rates: Sequence[float] = LUNA16_FP_RATES,
    max_candidates_per_scan: int | None = 100,
    bands: Sequence[Sequence[float]] = SIZE_BANDS_MM,
    hit_radius: str | float = "radius",
    min_radius_mm: float = 1.5,
) -> dict[str, Any]:
    """Evaluate lesion detection over a list of scans with the conventions of :py:mod:`bundle.metrics.lesion`.

    Recall, precision, F1 and size bands are taken at ``threshold`` over all candidates; the FROC / CPM uses the
    ``max_candidates_per_scan`` highest-scoring candidates of each scan (LUNA16: 100) and no threshold.

    Args:
        per_scan: one ``(candidates, lesions)`` pair (or ``{"candidates", "lesions"}`` dict) per scan.
        threshold: score threshold in [0, 1] for recall / precision / F1 / size bands. Defaults to 0.5.
        n_params: number of model parameters (a count, not millions). Defaults to None.
        seconds_per_image: inference time per image (2-D slice or patch) in seconds. Defaults to None.
        seconds_per_volume: inference time per volume in seconds. Defaults to None.
        fp_rates: FROC read-out points in FP/scan. Defaults to LUNA16's seven points.
        max_candidates_per_scan: FROC candidate cap per scan. Defaults to 100.
        bands: ``(lo, hi)`` diameter bands in mm. Defaults to (3-4, 4-6, 6-10, 10-30).
        hit_radius, min_radius_mm: see :py:func:`bundle.metrics.matching.match_candidates`.

    Returns:
        a JSON-ready dict with ``threshold, n_scans, n_lesions, n_ignored_lesions, n_candidates, tp, fp, fn,
        fp_per_scan, recall, precision, f1, cpm, froc`` (see :py:func:`bundle.metrics.lesion.froc`), ``size_bands``
        (see :py:func:`bundle.metrics.lesion.sensitivity_by_size`), ``n_params, params_millions,
        seconds_per_image, seconds_per_volume`` (None when not given) and, when ``n_params`` and the matching time
        are given, ``balance_score_per_image`` / ``balance_score_per_volume``
        (:py:func:`bundle.metrics.lesion.balance_score` with that time).

    Raises:
        ValueError: for a negative ``n_params`` or time, or any error of the underlying metric functions.
    """
    if n_params is not None and (isinstance(n_params, bool) or not isinstance(n_params, (int, np.integer))):
        raise TypeError(f"n_params must be an int (a parameter count) or None, got n_params={n_params!r}.")
    params = _optional_non_negative(n_params, "n_params")
    t_image = _optional_non_negative(seconds_per_image, "seconds_per_image")
    t_volume = _optional_non_negative(seconds_per_volume, "seconds_per_volume")

    counts = detection_counts(per_scan, threshold, hit_radius, min_radius_mm)
    tp, fp, fn = counts["tp"], counts["fp"], counts["fn"]
    curve = froc(per_scan, fp_rates, max_candidates_per_scan, hit_radius, min_radius_mm)
    bands_result = sensitivity_by_size(per_scan, threshold, bands, hit_radius, min_radius_mm)
    bands_result["froc"] = froc_by_size(per_scan, bands, fp_rates, max_candidates_per_scan, hit_radius, min_radius_mm)
    results: dict[str, Any] = {
        "threshold": float(threshold),
        **{k: counts[k] for k in ("n_scans", "n_lesions", "n_ignored_lesions", "n_candidates")},
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "fp_per_scan": fp / counts["n_scans"] if counts["n_scans"] else 0.0,
        "recall": recall(tp, fn),
        "precision": precision(tp, fp),
        "f1": f1(tp, fp, fn),
        "cpm": curve["cpm"],
        "froc": {k: v for k, v in curve.items() if k not in ("cpm", "n_scans", "n_lesions")},
        "size_bands": bands_result,
        "n_params": None if params is None else int(params),
        "params_millions": None if params is None else params / 1e6,
        "seconds_per_image": t_image,
        "seconds_per_volume": t_volume,
    }
    for key, seconds in (("balance_score_per_image", t_image), ("balance_score_per_volume", t_volume)):
        if params is not None and seconds is not None:
            results[key] = balance_score(results["recall"], results["precision"], seconds, params / 1e6)
    return results


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, (bool, int, np.integer)):
        return str(value)
    return f"{float(value):.{digits}f}"


def format_table(results: Mapping[str, Any]) -> str:
    """Render :py:func:`evaluate_detection` output as markdown: a summary table, the FROC points, the size bands.

    Raises:
        ValueError: when ``results`` lacks a key that :py:func:`evaluate_detection` always writes.
    """
    required = ("n_scans", "n_lesions", "n_candidates", "threshold", "tp", "fp", "fn", "recall", "precision", "f1")
    missing = [k for k in required + ("cpm", "froc", "size_bands") if k not in results]
    if missing:
        raise ValueError(f"results must come from evaluate_detection, missing keys {missing}.")
    rows = [
        ("Scans", _fmt(results["n_scans"])),
        ("Lesions (ignored)", f"{results['n_lesions']} ({results.get('n_ignored_lesions', 0)})"),
        ("Candidates", _fmt(results["n_candidates"])),
        ("Threshold", _fmt(results["threshold"])),
        ("TP / FP / FN", f"{results['tp']} / {results['fp']} / {results['fn']}"),
        ("FP per scan", _fmt(results.get("fp_per_scan"))),
        ("Recall", _fmt(results["recall"])),
        ("Precision", _fmt(results["precision"])),
        ("F1", _fmt(results["f1"])),
        ("CPM (FROC mean)", _fmt(results["cpm"])),
        ("Params (M)", _fmt(results.get("params_millions"))),
        ("Seconds per image", _fmt(results.get("seconds_per_image"))),
        ("Seconds per volume", _fmt(results.get("seconds_per_volume"))),
    ]
    for key, label in (("balance_score_per_image", "Balance score (per image)"), ("balance_score_per_volume", "Balance score (per volume)")):
        if key in results:
            rows.append((label, _fmt(results[key])))
    lines = ["| Metric | Value |", "|---|---|"] + [f"| {name} | {value} |" for name, value in rows]

    rates, sens = results["froc"]["fp_rates"], results["froc"]["sensitivities"]
    lines += ["", "| FP/scan | " + " | ".join(f"{r:g}" for r in rates) + " | CPM |"]
    lines += ["|---" * (len(rates) + 2) + "|"]
    lines += ["| Sensitivity | " + " | ".join(_fmt(s) for s in sens) + f" | {_fmt(results['cpm'])} |"]

    lines += ["", "| Diameter (mm) | Lesions | Hits | Sensitivity |", "|---|---|---|---|"]
    for band in results["size_bands"]["bands"]:
        lo, hi = band["band_mm"]
        lines.append(f"| [{lo:g}, {hi:g}) | {band['n']} | {band['hits']} | {_fmt(band['sensitivity'])} |")
    out = results["size_bands"]["outside"]
    lines.append(f"| outside bands | {out['n']} | {out['hits']} | {_fmt(out['sensitivity'])} |")
    if results["size_bands"].get("froc"):  # FROC per band: other bands' lesions ignored, FP/scan as above
        lines += ["", "| Diameter (mm) | " + " | ".join(f"{r:g} FP/scan" for r in rates) + " | CPM |"]
        lines += ["|---" * (len(rates) + 2) + "|"]
        for band in results["size_bands"]["froc"]:
            lo, hi = band["band_mm"]
            values = band["sensitivities"] or [None] * len(rates)
            lines.append(f"| [{lo:g}, {hi:g}) | " + " | ".join(_fmt(v) for v in values) + f" | {_fmt(band['cpm'])} |")
    return "\n".join(lines) + "\n"


def _jsonable(value: Any) -> Any:
    """Plain Python copy of ``value``: numpy / torch scalars and arrays to lists, NaN and inf to None."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def save_json(results: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Write ``results`` as indented JSON atomically (temporary file + ``os.replace``); NaN / inf become null.

    Returns:
        the path written.
    """
    text = json.dumps(_jsonable(results), indent=4, allow_nan=False) + "\n"  # the Model Zoo's JSON format
    atomic_write_text(path, text)
    return Path(path)


def plot_froc(results: Mapping[str, Any], path: str | os.PathLike, title: str | None = None) -> Path:
    """Plot the FROC curve (log2 x axis from 1/8 to 8 FP/scan) with the CPM in the legend and save it as PNG.

    The line is the interpolated curve that the sensitivities and CPM are read from (see
    :py:func:`bundle.metrics.lesion.froc`); markers show the ``fp_rates`` read-outs. Uses matplotlib's Agg
    canvas directly, so the global pyplot backend is untouched. The file is written atomically.

    Args:
        results: output of :py:func:`evaluate_detection` or of :py:func:`bundle.metrics.lesion.froc`.
        path: destination ``.png`` path.
        title: optional figure title.

    Returns:
        the path written.

    Raises:
        ValueError: when ``results`` holds no FROC data.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    curve_res = results.get("froc", results)
    if not isinstance(curve_res, Mapping) or "curve" not in curve_res or "sensitivities" not in curve_res:
        raise ValueError(f"results must hold FROC data ('froc' or 'curve' key), got keys {sorted(results)}.")
    cpm = results.get("cpm", curve_res.get("cpm"))
    fps = np.concatenate([[0.0], np.asarray(curve_res["curve"]["fps_per_scan"], dtype=float)])
    sens = np.concatenate([[0.0], np.asarray(curve_res["curve"]["sensitivity"], dtype=float)])
    grid = np.geomspace(0.125, 8.0, 257)
    if fps.size > 1 and results.get("n_lesions", curve_res.get("n_lesions")) != 0:
        line = np.interp(grid, fps, sens)
    else:  # no operating point, or no lesion: the sensitivity is constant (see froc's conventions)
        line = np.full_like(grid, float(curve_res["sensitivities"][0]))

    fig = Figure(figsize=(6, 4.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(grid, line, "-", color="tab:blue", label=f"FROC (CPM = {_fmt(cpm)})")
    ax.plot(curve_res["fp_rates"], curve_res["sensitivities"], "o", color="tab:red", label="sensitivity read-outs")
    ax.set_xscale("log", base=2)
    ax.set_xlim(0.125, 8.0)
    ax.set_ylim(0.0, 1.02)
    ticks = [0.125, 0.25, 0.5, 1, 2, 4, 8]
    ax.set_xticks(ticks)
    ax.set_xticklabels(["1/8", "1/4", "1/2", "1", "2", "4", "8"])
    ax.set_xlabel("Average false positives per scan")
    ax.set_ylabel("Sensitivity")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return Path(path)
