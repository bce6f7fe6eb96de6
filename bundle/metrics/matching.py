"""Matching of detected candidates to reference lesions with the LUNA16 hit rule, and the TP / FP / FN counts.

Conventions follow the LUNA16 evaluation script (``noduleCADEvaluationLUNA16.py``, Setio et al., "Validation,
comparison, and combination of algorithms for automatic detection of pulmonary nodules in computed tomography
images: the LUNA16 challenge", MedIA 2017).

Inputs are plain Python, one entry per scan:

- candidates: ``[{"center_mm": [x, y, z], "score": float, ...}, ...]`` (extra keys are ignored),
- lesions: ``[{"center_mm": [x, y, z], "diameter_mm": float, "ignore": bool (optional, default False)}, ...]``.

``per_scan`` is a sequence whose items are either a ``(candidates, lesions)`` pair or a mapping with the keys
``"candidates"`` and ``"lesions"``. Centres are world coordinates in mm; any number of dimensions is accepted as
long as all centres of one scan have the same length. The metrics built on these matches live in
:py:mod:`bundle.metrics.lesion`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from numbers import Real
from typing import Any, Union

import numpy as np
import torch

__all__ = ["MatchResult", "match_candidates", "detection_counts"]

ScanItem = Union[Sequence[Any], Mapping[str, Any]]

# candidate status values of MatchResult.candidate_status
TP, FP, DOUBLE, IGNORED, DROPPED = "tp", "fp", "double", "ignored", "dropped"


@dataclass(frozen=True)
class MatchResult:
    """Threshold-free outcome of matching one scan's candidates to its lesions (see :py:func:`match_candidates`).

    Attributes:
        candidate_score: score of every candidate, in input order, shape (N,).
        candidate_status: per candidate: ``"tp"`` (best hit of a lesion), ``"fp"`` (hits no lesion), ``"double"``
            (a further hit on an already matched lesion, ignored), ``"ignored"`` (hits an ``ignore`` lesion) or
            ``"dropped"`` (beyond ``max_candidates``, not evaluated).
        candidate_lesion: index of the lesion each candidate was assigned to, -1 for none.
        lesion_score: per lesion, the score of its TP candidate; None when nothing hit it or the lesion is ignored.
        lesion_ignored: per lesion, its ``ignore`` flag.
        lesion_diameter_mm: per lesion, its diameter in mm.
    """

    candidate_score: tuple[float, ...]
    candidate_status: tuple[str, ...]
    candidate_lesion: tuple[int, ...]
    lesion_score: tuple[float | None, ...]
    lesion_ignored: tuple[bool, ...]
    lesion_diameter_mm: tuple[float, ...]

    def counts(self, threshold: float) -> tuple[int, int, int]:
        """Return ``(tp, fp, fn)`` when only candidates with ``score >= threshold`` are kept."""
        tp = sum(1 for s, ig in zip(self.lesion_score, self.lesion_ignored) if not ig and s is not None and s >= threshold)
        fp = sum(1 for s, st in zip(self.candidate_score, self.candidate_status) if st == FP and s >= threshold)
        n_lesions = sum(1 for ig in self.lesion_ignored if not ig)
        return tp, fp, n_lesions - tp


def _check_unit_interval(value: float, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a real number in [0, 1], got {name}={value!r} ({type(value).__name__}).")
    if not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {name}={value}.")
    return float(value)


def _check_non_negative(value: float, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a real number >= 0, got {name}={value!r} ({type(value).__name__}).")
    if not (math.isfinite(float(value)) and float(value) >= 0.0):
        raise ValueError(f"{name} must be finite and >= 0, got {name}={value}.")
    return float(value)


def _check_count(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int >= 0, got {name}={value!r} ({type(value).__name__}).")
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {name}={value}.")
    return int(value)


def _center(item: Any, where: str) -> np.ndarray:
    if not isinstance(item, Mapping):
        raise TypeError(f"{where} must be a dict, got {type(item).__name__}.")
    if "center_mm" not in item:
        raise ValueError(f"{where} is missing the key 'center_mm', got keys {sorted(item)}.")
    try:
        center = np.asarray(item["center_mm"], dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{where}['center_mm'] must be a sequence of numbers, got {item['center_mm']!r}.") from e
    if center.ndim != 1 or center.size == 0 or not np.all(np.isfinite(center)):
        raise ValueError(f"{where}['center_mm'] must be a non-empty 1-D list of finite numbers, got {center.tolist()}.")
    return center


def _number(item: Mapping[str, Any], key: str, where: str) -> float:
    if key not in item:
        raise ValueError(f"{where} is missing the key {key!r}, got keys {sorted(item)}.")
    value = item[key]
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(float(value)):
        raise ValueError(f"{where}[{key!r}] must be a finite real number, got {value!r}.")
    return float(value)


def _stack(centers: list[np.ndarray], dims: int | None, where: str) -> np.ndarray:
    for i, c in enumerate(centers):
        if dims is not None and c.size != dims:
            raise ValueError(f"{where}[{i}]['center_mm'] has {c.size} coordinates, expected {dims} like the others.")
    return np.stack(centers) if centers else np.zeros((0, dims or 0))


def _scan_lists(item: ScanItem, index: int) -> tuple[Sequence[Any], Sequence[Any]]:
    if isinstance(item, Mapping):
        if "candidates" not in item or "lesions" not in item:
            raise ValueError(f"per_scan[{index}] must have the keys 'candidates' and 'lesions', got {sorted(item)}.")
        candidates, lesions = item["candidates"], item["lesions"]
    elif isinstance(item, Sequence) and not isinstance(item, str) and len(item) == 2:
        candidates, lesions = item
    else:
        raise ValueError(f"per_scan[{index}] must be a (candidates, lesions) pair or a dict, got {item!r:.80}.")
    for name, value in (("candidates", candidates), ("lesions", lesions)):
        if not isinstance(value, Sequence) or isinstance(value, (str, bytes)):
            raise TypeError(f"per_scan[{index}] {name} must be a list of dicts, got {type(value).__name__}.")
    return candidates, lesions


def _resolve_radius(hit_radius: str | float) -> float | None:
    """None means "use each lesion's diameter / 2"."""
    if isinstance(hit_radius, str):
        if hit_radius != "radius":
            raise ValueError(f"hit_radius must be 'radius' or a number of mm, got hit_radius={hit_radius!r}.")
        return None
    return _check_non_negative(hit_radius, "hit_radius")


def match_candidates(
    candidates: Sequence[Mapping[str, Any]],
    lesions: Sequence[Mapping[str, Any]],
    hit_radius: str | float = "radius",
    min_radius_mm: float = 1.5,
    max_candidates: int | None = None,
) -> MatchResult:
    """Match one scan's candidates to its ground-truth lesions with the LUNA16 hit rule.

    A candidate hits a lesion when the Euclidean distance between the centres (mm) is strictly smaller than the
    hit radius (``dist < R``, as ``noduleCADEvaluationLUNA16.py``), where ``R = max(diameter_mm / 2, min_radius_mm)``
    for ``hit_radius="radius"`` or ``R = max(hit_radius, min_radius_mm)`` for a number. A candidate hitting several
    lesions is assigned to the nearest one (ties: lowest lesion index); the LUNA16 script would let it count for
    each. For each non-ignored lesion the highest-scoring assigned candidate (ties: nearest, then first) is its TP;
    its other hits are double detections, neither TP nor FP. Candidates assigned to ``ignore`` lesions are neither
    TP nor FP (LUNA16 ``bOtherNodulesAsIrrelevant=True``). Candidates that hit nothing are FP.

    The default ``min_radius_mm=1.5`` equals the radius of the smallest LUNA16 nodule (3 mm), so it changes nothing
    for LUNA16-sized lesions but keeps sub-3 mm lesions (e.g. brain micro-lesions) matchable.

    Args:
        candidates: ``[{"center_mm": [x, y, z], "score": float}, ...]``, N items.
        lesions: ``[{"center_mm": [x, y, z], "diameter_mm": float, "ignore": bool}, ...]``, M items.
        hit_radius: ``"radius"`` (per-lesion diameter / 2) or a fixed radius in mm. Defaults to ``"radius"``.
        min_radius_mm: lower bound of the hit radius in mm. Defaults to 1.5.
        max_candidates: keep only the this many highest-scoring candidates (LUNA16 uses 100 per scan); the rest
            get the status ``"dropped"``. None keeps all. Defaults to None.

    Returns:
        a :py:class:`MatchResult`; it does not depend on any score threshold.

    Raises:
        ValueError: when a candidate lacks ``center_mm`` / ``score``, a lesion lacks ``center_mm`` /
            ``diameter_mm``, a value is not finite, a diameter or radius is negative, centres have mismatched
            lengths, or ``max_candidates < 1``.
        TypeError: when an item is not a dict or ``hit_radius`` / ``min_radius_mm`` is not a number.
    """
    fixed_radius = _resolve_radius(hit_radius)
    min_radius_mm = _check_non_negative(min_radius_mm, "min_radius_mm")
    if max_candidates is not None and (isinstance(max_candidates, bool) or not isinstance(max_candidates, int)):
        raise TypeError(f"max_candidates must be an int >= 1 or None, got max_candidates={max_candidates!r}.")
    if max_candidates is not None and max_candidates < 1:
        raise ValueError(f"max_candidates must be >= 1 or None, got max_candidates={max_candidates}.")

    c_centers = [_center(c, f"candidates[{i}]") for i, c in enumerate(candidates)]
    scores = np.asarray([_number(c, "score", f"candidates[{i}]") for i, c in enumerate(candidates)], dtype=np.float64)
    l_centers = [_center(les, f"lesions[{j}]") for j, les in enumerate(lesions)]
    diameters = np.asarray([_number(les, "diameter_mm", f"lesions[{j}]") for j, les in enumerate(lesions)])
    for j, d in enumerate(diameters):
        if d < 0:
            raise ValueError(f"lesions[{j}]['diameter_mm'] must be >= 0 (a radius cannot be negative), got {d}.")
    ignored = [bool(les.get("ignore", False)) for les in lesions]
    dims = (c_centers + l_centers)[0].size if (c_centers or l_centers) else None
    cand_xyz = _stack(c_centers, dims, "candidates")  # (N, D)
    les_xyz = _stack(l_centers, dims, "lesions")  # (M, D)

    n, m = len(c_centers), len(l_centers)
    radius = np.full(m, fixed_radius) if fixed_radius is not None else diameters / 2.0
    radius = np.maximum(radius, min_radius_mm)  # (M,)

    # LUNA16 evaluates only the max_candidates most probable marks of a scan
    order = np.argsort(-scores, kind="stable")
    kept = np.zeros(n, dtype=bool)
    kept[order[: max_candidates if max_candidates is not None else n]] = True

    status = [DROPPED if not kept[i] else FP for i in range(n)]
    assigned = [-1] * n
    dist = np.zeros((n, m))  # (N, M)
    if n and m:
        dist = np.linalg.norm(cand_xyz[:, None, :] - les_xyz[None, :, :], axis=-1)  # (N, M)
        hit_dist = np.where(dist < radius[None, :], dist, np.inf)  # (N, M)
        for i in np.flatnonzero(kept):
            j = int(np.argmin(hit_dist[i]))
            if np.isfinite(hit_dist[i, j]):
                assigned[i] = j
                status[i] = IGNORED if ignored[j] else DOUBLE
    lesion_score: list[float | None] = [None] * m
    for j in range(m):
        hits = [i for i in range(n) if assigned[i] == j]
        if ignored[j] or not hits:
            continue
        best = min(hits, key=lambda i: (-scores[i], dist[i, j], i))
        status[best] = TP
        lesion_score[j] = float(scores[best])
    return MatchResult(
        candidate_score=tuple(float(s) for s in scores),
        candidate_status=tuple(status),
        candidate_lesion=tuple(assigned),
        lesion_score=tuple(lesion_score),
        lesion_ignored=tuple(ignored),
        lesion_diameter_mm=tuple(float(d) for d in diameters),
    )


def _match_all(
    per_scan: Sequence[ScanItem], hit_radius: str | float, min_radius_mm: float, max_candidates: int | None
) -> list[MatchResult]:
    if isinstance(per_scan, (str, bytes, Mapping)) or not isinstance(per_scan, Sequence):
        raise TypeError(f"per_scan must be a list with one entry per scan, got {type(per_scan).__name__}.")
    results = []
    for k, item in enumerate(per_scan):
        candidates, lesions = _scan_lists(item, k)
        try:
            results.append(match_candidates(candidates, lesions, hit_radius, min_radius_mm, max_candidates))
        except (ValueError, TypeError) as e:
            raise type(e)(f"per_scan[{k}]: {e}") from e
    return results


def detection_counts(
    per_scan: Sequence[ScanItem],
    threshold: float = 0.5,
    hit_radius: str | float = "radius",
    min_radius_mm: float = 1.5,
    max_candidates_per_scan: int | None = None,
) -> dict[str, int]:
    """Count TP / FP / FN over all scans, keeping candidates with ``score >= threshold``.

    Matching follows :py:func:`match_candidates`; double detections and hits on ignored lesions are not counted.

    Args:
        per_scan: one ``(candidates, lesions)`` pair (or ``{"candidates", "lesions"}`` dict) per scan.
        threshold: score threshold in [0, 1]. Defaults to 0.5.
        hit_radius, min_radius_mm: see :py:func:`match_candidates`.
        max_candidates_per_scan: cap applied before matching; None (default) keeps all candidates.

    Returns:
        ``{"tp", "fp", "fn", "n_scans", "n_lesions" (not ignored), "n_ignored_lesions", "n_candidates" (all given)}``.

    Raises:
        ValueError: when ``threshold`` is outside [0, 1] or an input is malformed (see :py:func:`match_candidates`).
    """
    threshold = _check_unit_interval(threshold, "threshold")
    matches = _match_all(per_scan, hit_radius, min_radius_mm, max_candidates_per_scan)
    tp = fp = fn = 0
    for match in matches:
        t, f, n = match.counts(threshold)
        tp, fp, fn = tp + t, fp + f, fn + n
    return {
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "n_scans": len(matches),
        "n_lesions": sum(not ig for mt in matches for ig in mt.lesion_ignored),
        "n_ignored_lesions": sum(ig for mt in matches for ig in mt.lesion_ignored),
        "n_candidates": sum(len(mt.candidate_score) for mt in matches),
    }
