"""The false-positive-reduction rescorer (:py:class:`bundle.lesions.rescore.CandidateRescorer`) on logged evaluation
runs (``python -m scripts.fit_rescorer``): fit it on the candidates of evaluations run with
``--rescorer_features_log`` and no rescorer, and preview the detection table a fitted model would give another run.

A logged run is an evaluation folder holding ``features.jsonl`` (every candidate's shape features) and
``per_scan.json`` (every candidate's hit/miss status), joined by :py:func:`bundle.lesions.rescorer_fit.join_features`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bundle.lesions.rescore import FEATURE_NAMES, CandidateRescorer
from bundle.lesions.rescorer_fit import fit_logistic, join_features
from bundle.metrics import evaluate_detection, save_json

__all__ = ["load_logged_run", "fit_rescorer", "format_fit", "preview_rescorer"]


def load_logged_run(run: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, list[dict[str, Any]]]:
    """
    The joined ``(features (N, F), labels (N,), scans)`` of one logged run
    (:py:func:`bundle.lesions.rescorer_fit.join_features`).

    Raises:
        FileNotFoundError: when ``features.jsonl`` or ``per_scan.json`` is missing.
        ValueError: when the two files do not describe the same candidates (the message starts with ``run``).
    """
    folder = Path(run)
    for name in ("features.jsonl", "per_scan.json"):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"{folder / name}: no such file (evaluate with --rescorer_features_log first).")
    try:
        return join_features(folder / "features.jsonl", folder / "per_scan.json")
    except (ValueError, KeyError) as e:
        raise ValueError(f"{folder}: {e}") from e


def fit_rescorer(runs: str | Sequence[str], output: str | os.PathLike, l2: float = 1.0) -> dict[str, Any]:
    """
    Fit the rescorer (:py:func:`bundle.lesions.rescorer_fit.fit_logistic`) on the candidates of ``runs`` together
    and write the model JSON to ``output``.

    Args:
        runs: logged evaluation folders (one string is one folder).
        output: the model JSON to write.
        l2: L2 penalty on the standardised weights (``C = 1 / l2``).

    Returns:
        the model written, with ``fitted_on``: the list of runs.

    Raises:
        FileNotFoundError: when a run lacks one of its files.
        ValueError: when a run's files disagree, or the candidates cannot be fitted (e.g. one class only).
    """
    runs = [runs] if isinstance(runs, str) else list(runs)
    parts = [load_logged_run(r)[:2] for r in runs]
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    model = fit_logistic(x, y, l2=l2)
    model["fitted_on"] = runs
    save_json(model, output)
    return model


def format_fit(model: dict[str, Any], output: str | os.PathLike) -> str:
    """What was fitted (candidates, hits, runs, the file written) and the weights, largest first."""
    lines = [f"fitted on {model['n_fit']} candidates ({model['n_positive']} hits) of {model['fitted_on']}; "
             f"wrote {output}"]
    for name, w in sorted(zip(FEATURE_NAMES, model["weights"]), key=lambda t: -abs(t[1])):
        lines.append(f"  {name:12s} {w:+.3f}")
    return "\n".join(lines)


def preview_rescorer(
    run: str | os.PathLike, model: str | os.PathLike, threshold: float = 0.5
) -> tuple[dict[str, Any], dict[str, Any]]:
    """
    The detection results (:py:func:`bundle.metrics.evaluate_detection`) of a logged run with the network's scores
    and with the scores of the fitted ``model``.

    Args:
        run: a logged evaluation folder (logged without a model).
        model: the fitted model JSON.
        threshold: operating score threshold.

    Returns:
        ``(before, after)``.

    Raises:
        FileNotFoundError: when the run lacks one of its files.
        ValueError: when the model cannot be read, or the run's files disagree.
    """
    rescorer = CandidateRescorer(model)
    _, _, scans = load_logged_run(run)
    before, after = [], []
    for scan in scans:
        cands = scan["candidates"]
        scores = rescorer.probability(np.asarray([c["features"] for c in cands]).reshape(-1, len(FEATURE_NAMES)))
        before.append(([{"center_mm": c["center_mm"], "score": c["score"]} for c in cands], scan["lesions"]))
        rescored = [{"center_mm": c["center_mm"], "score": float(s)} for c, s in zip(cands, scores)]
        after.append((rescored, scan["lesions"]))
    return evaluate_detection(before, threshold), evaluate_detection(after, threshold)
