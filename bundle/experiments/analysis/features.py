"""Lesion feature statistics (source paper 3.1.1): grey level and edge gradient of lesions versus the tissue around
them, by lesion size band.

For every connected lesion of a label map (26-connectivity) in the image's own voxel grid:

- ``lesion_mean`` / ``lesion_var``: mean and variance of the image inside the lesion;
- ``surround_mean`` / ``surround_var``: the same over the surrounding ring, the non-lesion voxels whose distance
  (mm, anisotropic spacing respected) to the lesion is in ``(0, ring_mm]``;
- ``edge_gradient``: mean gradient magnitude (image units per mm, central differences of ``numpy.gradient`` with
  the voxel spacing) over the lesion's edge band, i.e. its inner contour (lesion voxels with a 6-neighbour
  outside) and its outer shell (outside voxels with a 6-neighbour inside);
- ``surround_gradient``: mean gradient magnitude over the ring without the outer shell (the tissue's own texture);
- ``diameter_mm``: equivalent-sphere diameter ``(6 V / pi) ** (1/3)`` of the lesion volume ``V``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy import ndimage, stats

from bundle.lesions.reference import MERGE_GAP_MM, merge_fragments

__all__ = ["SIZE_BANDS", "FEATURES", "size_band_of", "gradient_magnitude", "lesion_features", "summarize_by_band"]

SIZE_BANDS: tuple[tuple[float, float], ...] = ((3.0, 5.0), (5.0, 10.0), (10.0, 30.0))
FEATURES: tuple[str, ...] = ("mean", "var", "gradient")  # lesion_<f> is paired with surround_<f>


def size_band_of(diameter_mm: float, bands: Sequence[tuple[float, float]] = SIZE_BANDS) -> str | None:
    """
    Name ``"lo-hi"`` of the band holding ``diameter_mm`` (``lo <= d < hi``; the last band includes ``hi``), or None.

    Args:
        diameter_mm: a diameter.
        bands: ``(lo, hi)`` pairs in mm. Defaults to :py:data:`SIZE_BANDS` (3-5, 5-10, 10-30 mm).
    """
    for i, (lo, hi) in enumerate(bands):
        if lo <= diameter_mm < hi or (i == len(bands) - 1 and diameter_mm == hi):
            return f"{lo:g}-{hi:g}"
    return None


def gradient_magnitude(image: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
    """
    ``|grad image|`` in image units per mm (``numpy.gradient``: central differences, one-sided at the borders).

    Args:
        image: N-D array.
        spacing: voxel size in mm per axis.

    Raises:
        ValueError: when ``spacing`` does not give one positive size per axis.
    """
    if len(spacing) != image.ndim or any(not s > 0 for s in spacing):
        raise ValueError(f"spacing must give {image.ndim} positive sizes, got spacing={tuple(spacing)}.")
    grads = np.gradient(image.astype(np.float64), *[float(s) for s in spacing])
    grads = grads if isinstance(grads, (list, tuple)) else [grads]
    return np.sqrt(np.sum([g**2 for g in grads], axis=0))


def _box(sl: tuple[slice, ...], margin: Sequence[int], shape: Sequence[int]) -> tuple[slice, ...]:
    return tuple(slice(max(s.start - m, 0), min(s.stop + m, n)) for s, m, n in zip(sl, margin, shape))


def lesion_features(
    image: np.ndarray,
    label: np.ndarray,
    spacing: Sequence[float],
    ring_mm: float = 3.0,
    merge_gap_mm: float = MERGE_GAP_MM,
) -> list[dict[str, Any]]:
    """
    Per-lesion grey-level and gradient statistics of ``image`` inside each lesion of ``label`` and around it.

    Args:
        image: intensities (CT: HU) of shape (X, Y[, Z]).
        label: lesion mask of the same shape; nonzero is lesion, connected components (full connectivity) are
            lesions, except that components within ``merge_gap_mm`` of each other are one lesion, as the detection
            metrics read them (:py:func:`bundle.lesions.reference.label_lesions`).
        spacing: voxel size in mm per axis.
        ring_mm: outer radius of the surrounding ring in mm (> 0). Defaults to 3.
        merge_gap_mm: see ``label``; 0 makes every component a lesion. Defaults to
            :py:data:`bundle.lesions.reference.MERGE_GAP_MM`.

    Returns:
        one dict per lesion (component order): ``center_voxel``, ``n_voxels``, ``volume_mm3``, ``diameter_mm``,
        ``size_band`` (or None outside :py:data:`SIZE_BANDS`), ``lesion_mean``, ``lesion_var``,
        ``surround_mean``, ``surround_var``, ``edge_gradient``, ``surround_gradient`` (NaN when the ring is
        empty, e.g. a lesion filling the image), ``n_surround``.

    Raises:
        ValueError: when the shapes differ, ``spacing`` is bad or ``ring_mm <= 0``.
    """
    image = np.asarray(image, dtype=np.float64)
    label = np.asarray(label)
    if image.shape != label.shape:
        raise ValueError(f"image and label must have the same shape, got {image.shape} and {label.shape}.")
    if not (isinstance(ring_mm, (int, float)) and math.isfinite(ring_mm) and ring_mm > 0):
        raise ValueError(f"ring_mm must be a positive number, got ring_mm={ring_mm!r}.")
    grad = gradient_magnitude(image, spacing)
    spacing = tuple(float(s) for s in spacing)
    lesion_any = label > 0
    components, n = ndimage.label(lesion_any, structure=np.ones((3,) * image.ndim))
    components = merge_fragments(components, n, spacing, merge_gap_mm)
    cross = ndimage.generate_binary_structure(image.ndim, 1)  # 6-neighbourhood in 3D
    margin = [int(math.ceil(ring_mm / s)) + 1 for s in spacing]
    voxel_mm3 = float(np.prod(spacing))
    records = []
    for index, sl in enumerate(ndimage.find_objects(components), start=1):
        box = _box(sl, margin, image.shape)
        m = components[box] == index
        img, g = image[box], grad[box]
        dist = ndimage.distance_transform_edt(~m, sampling=spacing)  # mm to the lesion, 0 inside
        ring = (dist > 0) & (dist <= ring_mm) & ~lesion_any[box]  # other lesions are not tissue
        outer = ndimage.binary_dilation(m, cross) & ~m
        inner = m & ~ndimage.binary_erosion(m, cross, border_value=1)
        tissue = ring & ~outer
        volume = float(m.sum()) * voxel_mm3
        diameter = (6.0 * volume / math.pi) ** (1.0 / 3.0)
        center = [float(c) + s.start for c, s in zip(ndimage.center_of_mass(m), box)]
        records.append({
            "center_voxel": [round(c, 2) for c in center],
            "n_voxels": int(m.sum()),
            "volume_mm3": volume,
            "diameter_mm": diameter,
            "size_band": size_band_of(diameter),
            "lesion_mean": float(img[m].mean()),
            "lesion_var": float(img[m].var()),
            "surround_mean": float(img[ring].mean()) if ring.any() else math.nan,
            "surround_var": float(img[ring].var()) if ring.any() else math.nan,
            "edge_gradient": float(g[inner | outer].mean()),
            "surround_gradient": float(g[tissue].mean()) if tissue.any() else math.nan,
            "n_surround": int(ring.sum()),
        })
    return records


def _paired_test(a: np.ndarray, b: np.ndarray) -> float | None:
    """Two-sided Wilcoxon signed-rank p-value of paired samples; None with fewer than 2 pairs or no difference."""
    if len(a) < 2 or np.allclose(a, b):
        return None
    return float(stats.wilcoxon(a, b).pvalue)


def summarize_by_band(
    records: Sequence[Mapping[str, Any]], bands: Sequence[tuple[float, float]] = SIZE_BANDS
) -> list[dict[str, Any]]:
    """
    Per size band: how many lesions, and for each feature the mean and standard deviation over lesions of the
    lesion value and of the surrounding value, the mean paired difference and ratio lesion / surround, and a
    Wilcoxon signed-rank p-value of lesion versus surround.

    Args:
        records: :py:func:`lesion_features` records (with ``diameter_mm``); lesions with a NaN surround value
            are left out of that feature.
        bands: ``(lo, hi)`` size bands in mm. Defaults to :py:data:`SIZE_BANDS`.

    Returns:
        one row per band, in band order: ``band``, ``n``, and for ``f`` in :py:data:`FEATURES`:
        ``lesion_<f>``, ``lesion_<f>_sd``, ``surround_<f>``, ``surround_<f>_sd``, ``diff_<f>`` (mean of the
        per-lesion differences), ``ratio_<f>`` (mean of the per-lesion ratios, for ``var`` and ``gradient``
        only; None when a surround value is 0), ``p_<f>``; and ``abs_diff_mean``, the mean absolute grey-level
        difference (lesions both brighter and darker than their surround do not cancel); values are None for an
        empty band.
    """
    rows = []
    for lo, hi in bands:
        name = f"{lo:g}-{hi:g}"
        members = [r for r in records if size_band_of(float(r["diameter_mm"]), bands) == name]
        row: dict[str, Any] = {"band": name, "n": len(members)}
        for f in FEATURES:
            key_l, key_s = ("edge_gradient", "surround_gradient") if f == "gradient" else (f"lesion_{f}", f"surround_{f}")
            pairs = np.array([(r[key_l], r[key_s]) for r in members if math.isfinite(r[key_s])], dtype=np.float64)
            if len(pairs) == 0:
                row.update({k: None for k in (f"lesion_{f}", f"lesion_{f}_sd", f"surround_{f}", f"surround_{f}_sd",
                                              f"diff_{f}", f"ratio_{f}", f"p_{f}")})
                if f == "mean":
                    row["abs_diff_mean"] = None
                continue
            a, b = pairs[:, 0], pairs[:, 1]
            # a ratio of grey-level means is meaningless on a signed scale (HU), so means get only the difference
            ratio = float(np.mean(a / b)) if f != "mean" and np.all(b > 0) else None
            row.update({
                f"lesion_{f}": float(a.mean()), f"lesion_{f}_sd": float(a.std()),
                f"surround_{f}": float(b.mean()), f"surround_{f}_sd": float(b.std()),
                f"diff_{f}": float(np.mean(a - b)), f"ratio_{f}": ratio, f"p_{f}": _paired_test(a, b),
            })
            if f == "mean":  # brighter and darker lesions (MRI hyper/hypo) cancel in the signed mean difference
                row["abs_diff_mean"] = float(np.mean(np.abs(a - b)))
        rows.append(row)
    return rows
