"""Lesion-level detection metrics: recall / precision / F1, FROC and CPM, size bands, Dice, lesion F1, balance score.

Conventions follow the LUNA16 evaluation script (``noduleCADEvaluationLUNA16.py``, Setio et al., "Validation,
comparison, and combination of algorithms for automatic detection of pulmonary nodules in computed tomography
images: the LUNA16 challenge", MedIA 2017) and the ISLES'22 lesion-wise F1 (``isles22/utils/eval_utils.py``).

Candidates are matched to lesions with the LUNA16 hit rule of :py:mod:`bundle.metrics.matching`, which also
describes the inputs: ``per_scan`` holds one ``(candidates, lesions)`` pair (or ``{"candidates", "lesions"}``
dict) per scan.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from monai.metrics import compute_dice
from scipy import ndimage

from bundle.metrics.matching import (
    DROPPED,
    FP,
    ScanItem,
    _check_count,
    _check_non_negative,
    _check_unit_interval,
    _match_all,
    _scan_lists,
)

__all__ = [
    "LUNA16_FP_RATES",
    "SIZE_BANDS_MM",
    "recall",
    "precision",
    "f1",
    "froc",
    "sensitivity_by_size",
    "froc_by_size",
    "dice",
    "lesion_f1",
    "balance_score",
]

logger = logging.getLogger(__name__)

LUNA16_FP_RATES: tuple[float, ...] = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
SIZE_BANDS_MM: tuple[tuple[float, float], ...] = ((3.0, 4.0), (4.0, 6.0), (6.0, 10.0), (10.0, 30.0))


def recall(tp: int, fn: int) -> float:
    """Lesion recall (sensitivity) ``tp / (tp + fn)``; 1.0 when there are no lesions (nothing was missed)."""
    tp, fn = _check_count(tp, "tp"), _check_count(fn, "fn")
    return tp / (tp + fn) if tp + fn else 1.0


def precision(tp: int, fp: int) -> float:
    """Lesion precision ``tp / (tp + fp)``; 1.0 when there are no detections (no false claim was made)."""
    tp, fp = _check_count(tp, "tp"), _check_count(fp, "fp")
    return tp / (tp + fp) if tp + fp else 1.0


def f1(tp: int, fp: int, fn: int) -> float:
    """Lesion F1 ``2 tp / (2 tp + fp + fn)`` (= ISLES' ``tp / (tp + (fp + fn) / 2)``); 1.0 when all counts are 0.

    With the conventions of :py:func:`recall` / :py:func:`precision` this equals ``2 P R / (P + R)`` whenever
    ``P + R > 0``, and is 0 (never NaN) for lesions with no detections or detections with no lesions.
    """
    tp, fp, fn = _check_count(tp, "tp"), _check_count(fp, "fp"), _check_count(fn, "fn")
    denominator = 2 * tp + fp + fn
    return 2 * tp / denominator if denominator else 1.0


def _interp_sensitivity(rates: Sequence[float], fps: np.ndarray, sens: np.ndarray) -> np.ndarray:
    """Piecewise-linear sensitivity at ``rates`` over ``(0, 0)`` + the points ``(fps, sens)`` (non-decreasing fps).

    Same values as ``np.interp``, written out because ``np.interp`` documents only strictly increasing ``xp``:
    at an FP rate reached by several points (a vertical step), the last, i.e. highest, sensitivity is used, and
    beyond the last point the sensitivity stays constant.
    """
    xp, fp = np.concatenate([[0.0], fps]), np.concatenate([[0.0], sens])  # (K + 1,): LUNA16 roc_curve origin
    out = np.empty(len(rates))
    for k, r in enumerate(rates):
        i = int(np.searchsorted(xp, r, side="right")) - 1  # last point with xp <= r
        if i == len(xp) - 1 or xp[i] == r:
            out[k] = fp[i]
        else:
            out[k] = fp[i] + (fp[i + 1] - fp[i]) * (r - xp[i]) / (xp[i + 1] - xp[i])
    return out


def froc(
    per_scan: Sequence[ScanItem],
    fp_rates: Sequence[float] = LUNA16_FP_RATES,
    max_candidates_per_scan: int | None = 100,
    hit_radius: str | float = "radius",
    min_radius_mm: float = 1.5,
) -> dict[str, Any]:
    """Free-response ROC over all scans and the LUNA16 competition performance metric (CPM).

    The curve has one operating point per distinct candidate score ``t`` (descending): FP/scan = number of FP
    candidates with ``score >= t`` / number of scans, sensitivity = number of lesions whose TP candidate has
    ``score >= t`` / number of non-ignored lesions. Double detections and hits on ignored lesions are left out, as
    in the LUNA16 script. Sensitivity at a given FP rate is the linear interpolation of sensitivity against
    FP/scan over these points plus the origin ``(0, 0)``, as the LUNA16 script does with ``np.interp`` over
    ``sklearn.metrics.roc_curve`` output (it samples the interpolant on a 10001-point grid; here it is evaluated at
    the exact rates). At an FP rate reached exactly by a vertical step the highest sensitivity is used (what
    ``np.interp`` returns); beyond the largest FP/scan reached, the sensitivity stays at its maximum. ``cpm`` is
    the mean of those sensitivities and equals MONAI's ``compute_froc_score(fps[::-1], sens[::-1], fp_rates)``
    on the same points, origin included (checked in the tests). MONAI's ``compute_froc_curve_data`` is not used: it drops the
    operating point of the lowest score (a CAMELYON16 convention), which loses a TP scored lowest.

    With no non-ignored lesion the sensitivity is 1.0 everywhere (as :py:func:`recall`) and a warning is logged.

    Args:
        per_scan: one ``(candidates, lesions)`` pair (or ``{"candidates", "lesions"}`` dict) per scan.
        fp_rates: FP/scan at which to read sensitivities. Defaults to LUNA16's (1/8, 1/4, 1/2, 1, 2, 4, 8).
        max_candidates_per_scan: keep the this many highest-scoring candidates per scan (LUNA16: 100); None keeps
            all. Defaults to 100.
        hit_radius, min_radius_mm: see :py:func:`bundle.metrics.matching.match_candidates`.

    Returns:
        ``{"fp_rates": [...], "sensitivities": [...], "cpm": float, "curve": {"fps_per_scan": [...],
        "sensitivity": [...], "thresholds": [...]}, "n_scans", "n_lesions", "n_candidates_evaluated",
        "max_candidates_per_scan"}``; curve lists are ordered by decreasing threshold.

    Raises:
        ValueError: when ``per_scan`` is empty, ``fp_rates`` is empty or holds a value <= 0, or an input is
            malformed (see :py:func:`bundle.metrics.matching.match_candidates`).
    """
    rates = [float(r) for r in fp_rates]
    if not rates or not all(math.isfinite(r) and r > 0 for r in rates):
        raise ValueError(f"fp_rates must be a non-empty list of finite values > 0, got fp_rates={list(fp_rates)}.")
    matches = _match_all(per_scan, hit_radius, min_radius_mm, max_candidates_per_scan)
    if not matches:
        raise ValueError("per_scan must hold at least one scan to compute FP/scan, got an empty list.")
    tp_scores = np.asarray([s for mt in matches for s in mt.lesion_score if s is not None], dtype=np.float64)
    fp_scores = np.asarray(
        [s for mt in matches for s, st in zip(mt.candidate_score, mt.candidate_status) if st == FP], dtype=np.float64
    )
    n_lesions = sum(not ig for mt in matches for ig in mt.lesion_ignored)
    n_scans = len(matches)

    thresholds = np.unique(np.concatenate([tp_scores, fp_scores]))[::-1]  # (K,) descending
    fps = np.asarray([(fp_scores >= t).sum() for t in thresholds], dtype=np.float64) / n_scans
    if n_lesions:
        sens = np.asarray([(tp_scores >= t).sum() for t in thresholds], dtype=np.float64) / n_lesions
        sensitivities = _interp_sensitivity(rates, fps, sens)
        cpm = float(np.mean(sensitivities))
    else:
        logger.warning("froc: no non-ignored lesion in %d scans; sensitivity set to 1.0 by convention.", n_scans)
        sens = np.ones_like(fps)
        sensitivities, cpm = np.ones(len(rates)), 1.0
    return {
        "fp_rates": rates,
        "sensitivities": [float(s) for s in sensitivities],
        "cpm": cpm,
        "curve": {
            "fps_per_scan": fps.tolist(),
            "sensitivity": sens.tolist(),
            "thresholds": thresholds.tolist(),
        },
        "n_scans": n_scans,
        "n_lesions": n_lesions,
        "n_candidates_evaluated": int(sum(st != DROPPED for mt in matches for st in mt.candidate_status)),
        "max_candidates_per_scan": max_candidates_per_scan,
    }


def sensitivity_by_size(
    per_scan: Sequence[ScanItem],
    threshold: float = 0.5,
    bands: Sequence[Sequence[float]] = SIZE_BANDS_MM,
    hit_radius: str | float = "radius",
    min_radius_mm: float = 1.5,
    max_candidates_per_scan: int | None = None,
) -> dict[str, Any]:
    """Sensitivity per lesion-diameter band at a score threshold.

    A lesion belongs to band ``(lo, hi)`` when ``lo <= diameter_mm < hi`` (half-open, so bands ``(3, 4), (4, 6)``
    do not overlap). Lesions in no band are reported under ``"outside"``; ignored lesions are not counted.

    Args:
        per_scan: one ``(candidates, lesions)`` pair (or ``{"candidates", "lesions"}`` dict) per scan.
        threshold: score threshold in [0, 1]. Defaults to 0.5.
        bands: ``(lo, hi)`` diameter bands in mm, non-overlapping. Defaults to (3-4, 4-6, 6-10, 10-30).
        hit_radius, min_radius_mm, max_candidates_per_scan: see :py:func:`bundle.metrics.matching.detection_counts`.

    Returns:
        ``{"bands": [{"band_mm": [lo, hi], "n": int, "hits": int, "sensitivity": float | None}, ...],
        "outside": {"n", "hits", "sensitivity"}}``; sensitivity is None when ``n == 0``.

    Raises:
        ValueError: when ``threshold`` is outside [0, 1], a band is not ``0 <= lo < hi``, bands overlap, or an input
            is malformed.
    """
    threshold = _check_unit_interval(threshold, "threshold")
    clean: list[tuple[float, float]] = []
    for b in bands:
        if len(b) != 2 or not (math.isfinite(b[0]) and math.isfinite(b[1]) and 0 <= b[0] < b[1]):
            raise ValueError(f"each band must be (lo, hi) with 0 <= lo < hi, got band={tuple(b)} in bands.")
        clean.append((float(b[0]), float(b[1])))
    for (lo1, hi1), (lo2, hi2) in zip(sorted(clean), sorted(clean)[1:]):
        if lo2 < hi1:
            raise ValueError(f"bands must not overlap, got ({lo1}, {hi1}) and ({lo2}, {hi2}).")
    matches = _match_all(per_scan, hit_radius, min_radius_mm, max_candidates_per_scan)
    tallies = [[0, 0] for _ in range(len(clean) + 1)]  # last = outside
    for mt in matches:
        for d, s, ig in zip(mt.lesion_diameter_mm, mt.lesion_score, mt.lesion_ignored):
            if ig:
                continue
            k = next((i for i, (lo, hi) in enumerate(clean) if lo <= d < hi), len(clean))
            tallies[k][0] += 1
            tallies[k][1] += int(s is not None and s >= threshold)

    def entry(n: int, hits: int) -> dict[str, Any]:
        return {"n": n, "hits": hits, "sensitivity": hits / n if n else None}

    return {
        "bands": [{"band_mm": [lo, hi], **entry(*tallies[i])} for i, (lo, hi) in enumerate(clean)],
        "outside": entry(*tallies[-1]),
    }


def froc_by_size(
    per_scan: Sequence[ScanItem],
    bands: Sequence[Sequence[float]] = SIZE_BANDS_MM,
    fp_rates: Sequence[float] = LUNA16_FP_RATES,
    max_candidates_per_scan: int | None = 100,
    hit_radius: str | float = "radius",
    min_radius_mm: float = 1.5,
) -> list[dict[str, Any]]:
    """The FROC of each lesion-diameter band: :py:func:`froc` with the lesions outside the band marked ``ignore``,
    so a candidate on such a lesion is neither a hit nor a false positive, and every other candidate counts as a
    false positive as in the whole-set FROC (the FP/scan axis is the same for every band).

    Args:
        per_scan: one ``(candidates, lesions)`` pair (or ``{"candidates", "lesions"}`` dict) per scan.
        bands: ``(lo, hi)`` diameter bands in mm (``lo <= d < hi``). Defaults to (3-4, 4-6, 6-10, 10-30).
        fp_rates, max_candidates_per_scan, hit_radius, min_radius_mm: see :py:func:`froc`.

    Returns:
        per band ``{"band_mm": [lo, hi], "n": lesions, "sensitivities": [...] (at ``fp_rates``), "cpm"}``;
        ``sensitivities`` and ``cpm`` are None for a band without lesions.
    """
    out = []
    for lo, hi in ((float(b[0]), float(b[1])) for b in bands):
        scans, n = [], 0
        for i, item in enumerate(per_scan):
            candidates, lesions = _scan_lists(item, i)
            kept = []
            for lesion in lesions:
                inside = lo <= float(lesion["diameter_mm"]) < hi and not lesion.get("ignore", False)
                n += int(inside)
                kept.append({**lesion, "ignore": not inside})
            scans.append((candidates, kept))
        if n == 0:
            out.append({"band_mm": [lo, hi], "n": 0, "sensitivities": None, "cpm": None})
            continue
        curve = froc(scans, fp_rates, max_candidates_per_scan, hit_radius, min_radius_mm)
        out.append({"band_mm": [lo, hi], "n": n, "sensitivities": [float(v) for v in curve["sensitivities"]],
                    "cpm": float(curve["cpm"])})  # fmt: skip
    return out


def _binary(mask: np.ndarray | torch.Tensor, name: str) -> np.ndarray:
    if isinstance(mask, torch.Tensor):
        mask = mask.detach().cpu().numpy()
    if not isinstance(mask, np.ndarray):
        raise TypeError(f"{name} must be a numpy array or torch tensor, got {type(mask).__name__}.")
    return mask.astype(bool)


def dice(pred_mask: np.ndarray | torch.Tensor, true_mask: np.ndarray | torch.Tensor) -> float:
    """Voxel Dice of two binary masks (non-zero = foreground) of the same shape ``(*spatial)``.

    Uses MONAI's ``compute_dice(..., ignore_empty=False)``: both masks empty gives 1.0, only one empty gives 0.0.

    Raises:
        ValueError: when the shapes differ.
        TypeError: when a mask is not an array or tensor.
    """
    pred, true = _binary(pred_mask, "pred_mask"), _binary(true_mask, "true_mask")
    if pred.shape != true.shape:
        raise ValueError(f"pred_mask and true_mask must have the same shape, got {pred.shape} and {true.shape}.")
    y_pred = torch.from_numpy(pred).float()[None, None]  # (1, 1, *spatial)
    y = torch.from_numpy(true).float()[None, None]  # (1, 1, *spatial)
    return float(compute_dice(y_pred, y, include_background=True, ignore_empty=False)[0, 0])


def lesion_f1(
    pred_mask: np.ndarray | torch.Tensor, true_mask: np.ndarray | torch.Tensor, connectivity: int | None = None
) -> float:
    """ISLES'22 lesion-wise F1 from connected components of two binary masks of shape ``(*spatial)``.

    TP = ground-truth component overlapping the prediction by >= 1 voxel, FN = ground-truth component untouched,
    FP = predicted component touching no ground truth; F1 = TP / (TP + (FP + FN) / 2), 1.0 when both are empty.

    Args:
        pred_mask, true_mask: binary masks (non-zero = foreground) of the same shape.
        connectivity: ``scipy.ndimage.generate_binary_structure`` connectivity, 1..ndim; None (default) uses ndim,
            i.e. 26-connectivity in 3D as ISLES'22.

    Raises:
        ValueError: when the shapes differ or ``connectivity`` is outside 1..ndim.
    """
    pred, true = _binary(pred_mask, "pred_mask"), _binary(true_mask, "true_mask")
    if pred.shape != true.shape:
        raise ValueError(f"pred_mask and true_mask must have the same shape, got {pred.shape} and {true.shape}.")
    rank = max(true.ndim, 1)
    connectivity = rank if connectivity is None else connectivity
    if not 1 <= connectivity <= rank:
        raise ValueError(f"connectivity must be in 1..{rank} for {rank}-D masks, got connectivity={connectivity}.")
    structure = ndimage.generate_binary_structure(rank, connectivity)
    true_lab, n_true = ndimage.label(true, structure=structure)
    pred_lab, n_pred = ndimage.label(pred, structure=structure)
    tp = len(np.unique(true_lab[true & pred]))
    fp = n_pred - len(np.unique(pred_lab[pred & true]))
    return f1(tp, fp, n_true - tp)


def balance_score(recall: float, precision: float, seconds: float, params_millions: float) -> float:
    """Balance score of the source paper: ``0.5 * (R + P) - 0.5 * (seconds / 2 + params_millions / 50)``.

    It rewards detection quality (mean of recall and precision) and penalises inference time (in seconds, per
    image; 2 s costs as much as 50 M parameters) and model size (in millions of parameters). Higher is better;
    a perfect, instantaneous, parameter-free model scores 1.0 and the score can be negative.

    Raises:
        ValueError: when ``recall`` / ``precision`` is outside [0, 1] or ``seconds`` / ``params_millions`` < 0.
    """
    r = _check_unit_interval(recall, "recall")
    p = _check_unit_interval(precision, "precision")
    t = _check_non_negative(seconds, "seconds")
    m = _check_non_negative(params_millions, "params_millions")
    return 0.5 * (r + p) - 0.5 * (t / 2.0 + m / 50.0)
