"""Seeded stratified splits of a classification datalist: k folds (:py:func:`stratified_kfold`) and a hold-out
(:py:func:`train_val_split`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["stratified_kfold", "train_val_split"]


def _check_labels(labels: Sequence[int], n_splits: int) -> np.ndarray:
    if isinstance(n_splits, bool) or not isinstance(n_splits, int) or n_splits < 2:
        raise ValueError(f"n_splits must be an int >= 2, got n_splits={n_splits!r}.")
    y = np.asarray(labels)
    if y.ndim != 1 or y.size < n_splits:
        raise ValueError(f"labels must be 1-D with at least n_splits={n_splits} items, got shape {y.shape}.")
    return y


def stratified_kfold(labels: Sequence[int], n_splits: int = 4, seed: int = 0) -> list[tuple[list[int], list[int]]]:
    """
    Seeded stratified k-fold split: every class is shuffled and dealt round-robin over the folds, each class
    starting where the previous one stopped, so fold sizes differ by at most one and every class is spread as
    evenly as it can be (a class with fewer items than folds is missing from some validation folds).

    Args:
        labels: class index per item.
        n_splits: number of folds (>= 2). Defaults to 4.
        seed: seed of the shuffle (``np.random.default_rng``). Defaults to 0.

    Returns:
        ``n_splits`` pairs ``(train_indices, val_indices)``, sorted; every index is in exactly one validation fold.

    Raises:
        ValueError: when ``n_splits < 2`` or there are fewer labels than folds.
    """
    y = _check_labels(labels, n_splits)
    rng = np.random.default_rng(seed)
    folds: list[list[int]] = [[] for _ in range(n_splits)]
    start = 0
    for c in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == c))
        for j, index in enumerate(members):
            folds[(start + j) % n_splits].append(int(index))
        start = (start + len(members)) % n_splits
    out = []
    for k in range(n_splits):
        val = set(folds[k])
        out.append(([i for i in range(y.size) if i not in val], sorted(val)))
    return out


def train_val_split(
    datalist: Sequence[dict[str, Any]], val_fraction: float = 0.2, seed: int = 0
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """
    Seeded stratified hold-out split: ``round(n_c * val_fraction)`` items of every class ``c`` (at least 1 when
    the class has 2 or more) go to validation.

    Args:
        datalist: items with an int ``"label"``.
        val_fraction: share of every class held out, in (0, 1). Defaults to 0.2.
        seed: seed of the shuffle. Defaults to 0.

    Returns:
        ``(train, val)`` in the order of ``datalist``.

    Raises:
        ValueError: when ``val_fraction`` is not in (0, 1) or an item has no ``"label"``.
    """
    if not 0.0 < float(val_fraction) < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got val_fraction={val_fraction!r}.")
    if any("label" not in d for d in datalist):
        raise ValueError("datalist items must all have a 'label' key.")
    y = np.asarray([int(d["label"]) for d in datalist])
    rng = np.random.default_rng(seed)
    val_idx: set[int] = set()
    for c in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == c))
        n_val = min(max(int(round(len(members) * float(val_fraction))), 1), len(members) - 1)  # 0 if single
        val_idx.update(int(i) for i in members[:n_val])
    return [d for i, d in enumerate(datalist) if i not in val_idx], [d for i, d in enumerate(datalist) if i in val_idx]
