"""Fitting the false-positive-reduction stage (:py:class:`bundle.lesions.rescore.CandidateRescorer`): join an
evaluation's logged candidate features with its hit/miss outcome, and fit the logistic regression on them
(``scripts/fit_rescorer.py``)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from bundle.lesions.rescore import FEATURE_NAMES

__all__ = ["fit_logistic", "join_features"]


def fit_logistic(
    features: np.ndarray, labels: np.ndarray, l2: float = 1.0, iterations: int = 50
) -> dict[str, Any]:
    """
    L2-regularised logistic regression by Newton's method on standardised features (the intercept is not
    penalised); the same objective as ``sklearn.linear_model.LogisticRegression(C=1 / l2)``.

    Args:
        features: (N, F) array.
        labels: (N,) 0/1 array (1 = the candidate hits a lesion).
        l2: penalty on the squared weights of the standardised features. Default 1.
        iterations: Newton steps (it stops earlier when the step is below 1e-10).

    Returns:
        ``{"feature_names", "mean", "std", "weights", "bias", "n_fit", "n_positive"}`` (lists of floats), as
        :py:class:`bundle.lesions.rescore.CandidateRescorer` reads it.

    Raises:
        ValueError: when the shapes disagree (also with :py:data:`FEATURE_NAMES`), a value is not finite, or one
            class is missing.
    """
    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64).ravel()
    if x.ndim != 2 or x.shape[0] != y.size:
        raise ValueError(f"features must be (N, F) with N = len(labels), got {x.shape} and {y.size} labels.")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("features and labels must be finite.")
    if x.shape[1] != len(FEATURE_NAMES):
        raise ValueError(f"features must have the {len(FEATURE_NAMES)} columns of FEATURE_NAMES, got {x.shape[1]}.")
    if y.min() == y.max():
        raise ValueError("labels must hold both classes (hits and false positives) to fit a rescorer.")
    mean, std = x.mean(0), x.std(0)
    std = np.where(std > 1e-12, std, 1.0)
    z = np.hstack([(x - mean) / std, np.ones((x.shape[0], 1))])  # (N, F + 1), last column = intercept
    penalty = np.full(z.shape[1], float(l2))
    penalty[-1] = 0.0
    w = np.zeros(z.shape[1])
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-(z @ w)))
        grad = z.T @ (p - y) + penalty * w
        hess = (z * (p * (1 - p))[:, None]).T @ z + np.diag(penalty) + 1e-9 * np.eye(z.shape[1])
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-10:
            break
    return {
        "feature_names": list(FEATURE_NAMES),
        "mean": mean.tolist(),
        "std": std.tolist(),
        "weights": w[:-1].tolist(),
        "bias": float(w[-1]),
        "l2": float(l2),
        "n_fit": int(y.size),
        "n_positive": int(y.sum()),
    }


def join_features(
    features_log: str | os.PathLike, per_scan: str | os.PathLike, tolerance_mm: float = 1e-3
) -> tuple[np.ndarray, np.ndarray, list[dict[str, Any]]]:
    """
    Join a rescorer's ``features_log`` with the ``per_scan.json`` of the same evaluation run.

    Args:
        features_log: the JSON-lines file of :py:class:`CandidateRescorer` (one line per scan).
        per_scan: the evaluation's ``per_scan.json``.
        tolerance_mm: largest allowed distance between the centres of a joined pair of candidates.

    Returns:
        ``(features (N, F), labels (N,), scans)``: one row per candidate that hits a lesion (``tp`` or ``double``,
        label 1) or nothing (``fp``, label 0), candidates hitting ignored lesions left out; ``scans`` is
        ``per_scan.json``'s list with ``features`` added to every candidate, for re-evaluation with new scores.

    Raises:
        ValueError: when the two files do not describe the same candidates (another run, or a cut-short log).
    """
    lines = [json.loads(line) for line in Path(features_log).read_text().splitlines() if line.strip()]
    scans = json.loads(Path(per_scan).read_text())["scans"]
    if len(lines) != len(scans):
        raise ValueError(f"{features_log}: {len(lines)} scans logged but {per_scan} has {len(scans)}.")
    rows, labels = [], []
    for index, (line, scan) in enumerate(zip(lines, scans)):
        logged, scored = line["candidates"], scan["candidates"]
        if len(logged) != len(scored):
            raise ValueError(f"scan {index}: {len(logged)} candidates logged, {len(scored)} in {per_scan}.")
        for a, b in zip(logged, scored):
            if np.linalg.norm(np.subtract(a["center_mm"], b["center_mm"])) > tolerance_mm:
                raise ValueError(f"scan {index}: candidate centres differ between {features_log} and {per_scan}.")
            b["features"] = a["features"]
            if b["status"] in ("tp", "double", "fp"):
                rows.append(a["features"])
                labels.append(0 if b["status"] == "fp" else 1)
    return np.asarray(rows, dtype=np.float64).reshape(-1, len(FEATURE_NAMES)), np.asarray(labels), scans
