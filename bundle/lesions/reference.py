"""Reference (ground-truth) lesions of a label mask, measured as the detection metrics count them.

One lesion per connected label component, except that components within :py:data:`MERGE_GAP_MM` of each other are
one lesion: a spiculated or lobulated lesion averaged onto a coarse grid falls into its body and a few small pieces,
and scored on their own those pieces would be small "nodules" that no detector could find
(``docs/README.md``, "Reference lesions").
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import ndimage

__all__ = ["MERGE_GAP_MM", "check_merge_gap", "label_lesions", "merge_fragments"]

# Label components closer than this are one lesion (the pieces of a spiculated lesion cut apart by thick slices);
# measured on the training side of the synthetic sets (scripts/reference_gaps.py): pieces lie 2.0-3.9 mm from their
# lesion, separate lesions >= 9.2 mm apart (docs/README.md, "Reference lesions").
MERGE_GAP_MM = 6.0


def check_merge_gap(gap_mm: Any) -> float:
    """``gap_mm`` as a float, or a ValueError naming it when it is not a finite number >= 0."""
    if isinstance(gap_mm, bool) or not isinstance(gap_mm, (int, float)) or not math.isfinite(gap_mm) or gap_mm < 0:
        raise ValueError(f"merge_gap_mm must be a finite number >= 0, got merge_gap_mm={gap_mm!r}.")
    return float(gap_mm)


def merge_fragments(components: np.ndarray, count: int, spacing: Sequence[float], gap_mm: float) -> np.ndarray:
    """Group connected components that lie within ``gap_mm`` of each other (single linkage) into one lesion.

    A spiculated or lobulated lesion averaged onto a coarse grid (5 mm CT slices, then resampling) loses the thin
    parts that joined its lobes and spicules, so one lesion falls into several components: the main body and
    2-4 mm pieces a few mm away. Scored as lesions of their own, those pieces are small "nodules" that no detector
    can find, and they inflate the false negatives and the small-lesion bands.

    Args:
        components: integer label map of the components (0 background, 1..``count``), e.g. ``ndimage.label``'s.
        count: number of components.
        spacing: voxel spacing in mm, one per axis.
        gap_mm: two components are grouped when a voxel of one lies within this distance (between voxel centres)
            of a voxel of the other. 0 keeps every component on its own.

    Returns:
        label map of the same shape, 0 background and 1..G for the G groups (numbered by their first component).
    """
    check_merge_gap(gap_mm)
    if count < 2 or gap_mm == 0:
        return components
    spacing = np.asarray(spacing, dtype=np.float64)
    reach = np.ceil(gap_mm / spacing).astype(int)
    parent = list(range(count + 1))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for k, box in enumerate(ndimage.find_objects(components), start=1):
        if box is None:
            continue
        lo = [max(s.start - r, 0) for s, r in zip(box, reach)]
        hi = [min(s.stop + r, n) for s, r, n in zip(box, reach, components.shape)]
        crop = components[tuple(slice(a, b) for a, b in zip(lo, hi))]
        near = ndimage.distance_transform_edt(crop != k, sampling=spacing) <= gap_mm
        for other in np.unique(crop[near]):
            if other > k:
                parent[root(int(other))] = root(k)
    groups = np.zeros(count + 1, dtype=np.int64)
    numbers: dict[int, int] = {}
    for k in range(1, count + 1):
        groups[k] = numbers.setdefault(root(k), len(numbers) + 1)
    return groups[components]


def label_lesions(
    label: np.ndarray, affine: np.ndarray | None, merge_gap_mm: float = MERGE_GAP_MM
) -> list[dict[str, Any]]:
    """The ground-truth lesions of a label mask (H, W, D) (> 0 is lesion), with ``center_mm`` and ``diameter_mm``.

    One lesion per 26-connected component (8 in 2D), except that components within ``merge_gap_mm`` of each other
    are one lesion (:py:func:`merge_fragments`): its centre is the centroid of all their voxels and its diameter the
    equivalent diameter of their total volume. 0 makes every component a lesion. Default :py:data:`MERGE_GAP_MM`.
    """
    mask = np.asarray(label) > 0
    nd = mask.ndim
    if affine is None:
        raise ValueError("affine must be given to measure the lesions of a label in mm, got affine=None.")
    aff = np.asarray(affine, dtype=np.float64)
    if nd not in (2, 3) or aff.shape != (nd + 1, nd + 1):
        raise ValueError(f"label must be 2-D or 3-D with an affine of shape (nd + 1, nd + 1), got label {mask.shape} "
                         f"and affine {aff.shape}.")
    components, count = ndimage.label(mask, structure=np.ones((3,) * nd))
    groups = merge_fragments(components, count, np.linalg.norm(aff[:nd, :nd], axis=0), merge_gap_mm)
    ids = np.arange(1, int(groups.max()) + 1)
    if len(ids) == 0:
        return []
    voxel_volume = abs(float(np.linalg.det(aff[:nd, :nd])))
    sizes = ndimage.sum_labels(mask, groups, ids)
    centres = ndimage.center_of_mass(mask, groups, ids)
    lesions = []
    for size, centre, box in zip(sizes, centres, ndimage.find_objects(groups)):
        volume = float(size) * voxel_volume
        diameter = (6.0 * volume / math.pi) ** (1.0 / 3.0) if nd == 3 else 2.0 * math.sqrt(volume / math.pi)
        lesions.append(
            {
                "center_voxel": [float(v) for v in centre],
                "center_mm": [float(v) for v in (aff @ np.append(centre, 1.0))[:nd]],
                "box_voxel": [[s.start for s in box], [s.stop for s in box]],
                "diameter_mm": float(diameter),
                "volume_mm3": volume,
                "score": 1.0,
                "tier": "high",
            }
        )
    return sorted(lesions, key=lambda les: -les["volume_mm3"])
