"""Image-level classification metrics: accuracy, ROC AUC with a bootstrap interval, confusion matrix, size, latency.

AUC comes from MONAI's ``compute_roc_auc`` (macro one-vs-rest over classes; for 2 classes it equals the binary
AUC). On sets of 16-17 images a point estimate means little, so :func:`bootstrap_auc_ci` gives a seeded
percentile interval over resampled images.
"""

from __future__ import annotations

import io
import logging
import time
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from monai.metrics import compute_roc_auc

__all__ = [
    "roc_auc",
    "bootstrap_auc_ci",
    "confusion_matrix",
    "classification_metrics",
    "model_size_mb",
    "count_parameters",
    "latency_ms_per_image",
]

logger = logging.getLogger(__name__)


def _check_inputs(y_true: Sequence[int] | np.ndarray, probs: Sequence | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true).astype(int)
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] < 2:
        raise ValueError(f"probs must have shape (N, num_classes >= 2), got shape {p.shape}.")
    if y.ndim != 1 or y.shape[0] != p.shape[0]:
        raise ValueError(f"y_true must have shape (N,) with N = probs.shape[0] = {p.shape[0]}, got {y.shape}.")
    if y.size and (y.min() < 0 or y.max() >= p.shape[1]):
        raise ValueError(f"y_true must hold class indices in [0, {p.shape[1] - 1}], got {sorted(set(y.tolist()))}.")
    return y, p


def roc_auc(y_true: Sequence[int] | np.ndarray, probs: Sequence | np.ndarray) -> float:
    """
    Macro one-vs-rest ROC AUC over the classes present in ``y_true`` (MONAI ``compute_roc_auc``).

    Args:
        y_true: class index per image, shape (N,).
        probs: class probabilities, shape (N, num_classes).

    Returns:
        the AUC in [0, 1]; NaN when ``y_true`` holds fewer than 2 classes.

    Raises:
        ValueError: when the shapes do not match or a label is out of range.
    """
    y, p = _check_inputs(y_true, probs)
    present = np.unique(y)
    if present.size < 2:
        return float("nan")
    if p.shape[1] == 2:  # binary: the AUC of class 1
        return float(compute_roc_auc(torch.as_tensor(p[:, 1]), torch.as_tensor(y)))
    onehot = np.eye(p.shape[1])[y][:, present]  # (N, present classes): a missing class has no AUC
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(compute_roc_auc(torch.as_tensor(p[:, present]), torch.as_tensor(onehot), average="macro"))


def _group_members(groups: Sequence | np.ndarray | None, n: int) -> list[np.ndarray]:
    """Indices of every group (one group per item when ``groups`` is None)."""
    if groups is None:
        return [np.asarray([i]) for i in range(n)]
    g = np.asarray(groups)
    if g.shape != (n,):
        raise ValueError(f"groups must have shape ({n},) like y_true, got {g.shape}.")
    return [np.flatnonzero(g == value) for value in np.unique(g)]


def bootstrap_auc_ci(
    y_true: Sequence[int] | np.ndarray,
    probs: Sequence | np.ndarray,
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    groups: Sequence | np.ndarray | None = None,
) -> tuple[float, float, int]:
    """
    Percentile bootstrap interval of :func:`roc_auc`: images (or, with ``groups``, whole groups of images such
    as the slices of one scan) are resampled with replacement; resamples that do not contain every class of
    ``y_true`` are skipped (the kept ones are counted in ``n_valid``).

    Args:
        y_true: class index per image, shape (N,).
        probs: class probabilities, shape (N, num_classes).
        n_bootstrap: number of resamples (>= 1). Defaults to 1000.
        confidence: interval mass in (0, 1). Defaults to 0.95.
        seed: seed of ``np.random.default_rng``. Defaults to 0.
        groups: optional group id per image, shape (N,); a cluster bootstrap then draws as many groups as there
            are, so images that are not independent (slices of one scan) move together. Defaults to None.

    Returns:
        ``(low, high, n_valid)``; ``(nan, nan, 0)`` when no resample holds every class.

    Raises:
        ValueError: when ``n_bootstrap < 1``, ``confidence`` is not in (0, 1), or the inputs (``groups``
            included) are inconsistent.
    """
    y, p = _check_inputs(y_true, probs)
    if isinstance(n_bootstrap, bool) or not isinstance(n_bootstrap, int) or n_bootstrap < 1:
        raise ValueError(f"n_bootstrap must be an int >= 1, got n_bootstrap={n_bootstrap!r}.")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got confidence={confidence!r}.")
    members = _group_members(groups, y.size)
    rng = np.random.default_rng(seed)
    n_classes = np.unique(y).size
    values = []
    for _ in range(n_bootstrap):
        idx = np.concatenate([members[g] for g in rng.integers(0, len(members), size=len(members))])
        if np.unique(y[idx]).size == n_classes and n_classes >= 2:
            values.append(roc_auc(y[idx], p[idx]))
    if not values:
        return float("nan"), float("nan"), 0
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(np.asarray(values), [alpha, 1.0 - alpha])
    return float(low), float(high), len(values)


def confusion_matrix(
    y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray, num_classes: int
) -> np.ndarray:
    """
    Confusion matrix, rows = true class, columns = predicted class.

    Raises:
        ValueError: when the lengths differ or a label is outside ``[0, num_classes)``.
    """
    t, q = np.asarray(y_true).astype(int), np.asarray(y_pred).astype(int)
    if t.shape != q.shape or t.ndim != 1:
        raise ValueError(f"y_true and y_pred must be 1-D of equal length, got {t.shape} and {q.shape}.")
    if t.size and (min(t.min(), q.min()) < 0 or max(t.max(), q.max()) >= num_classes):
        raise ValueError(f"labels must be in [0, {num_classes - 1}], got {sorted(set(t.tolist()) | set(q.tolist()))}.")
    matrix = np.zeros((num_classes, num_classes), dtype=int)
    np.add.at(matrix, (t, q), 1)
    return matrix


def classification_metrics(
    y_true: Sequence[int] | np.ndarray,
    probs: Sequence | np.ndarray,
    class_names: Sequence[str] | None = None,
    n_bootstrap: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """
    Accuracy, macro AUC with a 95 % bootstrap interval and the confusion matrix of predicted probabilities.

    Args:
        y_true: class index per image, shape (N,).
        probs: class probabilities, shape (N, num_classes); the prediction is the argmax.
        class_names: optional names, one per class. Defaults to ``["0", "1", ...]``.
        n_bootstrap: resamples of the AUC interval. Defaults to 1000.
        seed: bootstrap seed. Defaults to 0.

    Returns:
        ``{"n", "accuracy", "auc", "auc_ci": [low, high], "auc_ci_resamples", "confusion_matrix" (list of rows),
        "class_names"}``.

    Raises:
        ValueError: when the inputs are inconsistent or ``class_names`` has the wrong length.
    """
    y, p = _check_inputs(y_true, probs)
    names = [str(i) for i in range(p.shape[1])] if class_names is None else [str(c) for c in class_names]
    if len(names) != p.shape[1]:
        raise ValueError(f"class_names must have {p.shape[1]} entries (probs.shape[1]), got {len(names)}.")
    pred = p.argmax(1)
    low, high, n_valid = bootstrap_auc_ci(y, p, n_bootstrap=n_bootstrap, seed=seed)
    return {
        "n": int(y.size),
        "accuracy": float((pred == y).mean()) if y.size else float("nan"),
        "auc": roc_auc(y, p),
        "auc_ci": [low, high],
        "auc_ci_resamples": n_valid,
        "confusion_matrix": confusion_matrix(y, pred, p.shape[1]).tolist(),
        "class_names": names,
    }


def model_size_mb(module: nn.Module) -> float:
    """Size of ``module.state_dict()`` saved by ``torch.save``, in MB (10**6 bytes)."""
    buffer = io.BytesIO()
    torch.save(module.state_dict(), buffer)
    return buffer.getbuffer().nbytes / 1e6


def count_parameters(module: nn.Module) -> int:
    """Number of parameters of ``module``, trainable or frozen."""
    return sum(p.numel() for p in module.parameters())


def latency_ms_per_image(
    module: nn.Module, input_shape: Sequence[int] = (1, 3, 224, 224), threads: int = 2, repeats: int = 10,
    warmup: int = 2,
) -> float:
    """
    Median wall time of one forward pass, in eval mode under ``torch.inference_mode``, divided by the batch size.

    Args:
        module: the network (on CPU).
        input_shape: (B, C, H, W) of the random input. Defaults to (1, 3, 224, 224).
        threads: ``torch.set_num_threads`` during the measurement (restored afterwards). Defaults to 2.
        repeats: timed passes. Defaults to 10.
        warmup: untimed passes first. Defaults to 2.

    Returns:
        milliseconds per image.

    Raises:
        ValueError: when ``threads`` or ``repeats`` is < 1.
    """
    if threads < 1 or repeats < 1:
        raise ValueError(f"threads and repeats must be >= 1, got threads={threads}, repeats={repeats}.")
    previous_threads, was_training = torch.get_num_threads(), module.training
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(tuple(input_shape), generator=generator)
    torch.set_num_threads(threads)
    module.eval()
    times = []
    try:
        with torch.inference_mode():
            for i in range(warmup + repeats):
                start = time.perf_counter()
                module(x)
                if i >= warmup:
                    times.append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(previous_threads)
        module.train(was_training)
    return float(np.median(times)) * 1000.0 / int(input_shape[0])
