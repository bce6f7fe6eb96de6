"""From the LIDC readers' nodules to lesions: rasterise each reader's contours, cluster the readers' nodules
into lesions, and build the consensus label and lesion records.

A nodule's ``roi`` contours are filled with ``skimage.draw.polygon``; as LIDC's reading instructions put the
outline just outside the nodule, the contour pixels are left out (``include_contour=False``, as pylidc does)
unless the contour has no inside. Two annotations belong to one lesion when their voxels come within a linking
distance of each other (as pylidc's ``cluster_annotations``), transitively; a voxel is lesion when at least
``consensus`` distinct readers marked it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree
from skimage.draw import polygon, polygon_perimeter

from bundle.data.converters.common import size_band
from bundle.data.converters.lidc_xml import LidcNodule
from bundle.data.synthetic.lesion_params import lesion_record

__all__ = ["LidcAnnotation", "rasterize_nodule", "cluster_annotations", "consensus_lesions"]


@dataclass
class LidcAnnotation:
    """One reader's nodule rasterised in a box of the volume grid.

    Attributes:
        reader: reading session index.
        reader_id: the reader's id.
        nodule_id: the reader's nodule id.
        offset: int (3,), the box's first voxel in the volume.
        mask: bool (w, h, d), the nodule inside the box.
    """

    reader: int
    reader_id: str
    nodule_id: str
    offset: np.ndarray
    mask: np.ndarray


def _roi_region(points: np.ndarray, shape: tuple[int, int], include_contour: bool) -> tuple[np.ndarray, np.ndarray]:
    """(marked pixels, inside pixels) of one contour in a (W, H) box: ``points`` are (x, y) in the box."""
    marked = np.zeros(shape, dtype=bool)
    inside = np.zeros(shape, dtype=bool)
    if np.unique(points, axis=0).shape[0] < 3:  # a point (nodule < 3 mm: its centre) or a segment
        marked[points[:, 0], points[:, 1]] = True
        return marked, inside
    rr, cc = polygon(points[:, 0], points[:, 1], shape=shape)
    inside[rr, cc] = True
    rr, cc = polygon_perimeter(points[:, 0], points[:, 1], shape=shape)
    edge = np.zeros(shape, dtype=bool)
    edge[rr, cc] = True
    edge[points[:, 0], points[:, 1]] = True
    inside &= ~edge
    marked = inside | edge if include_contour or not inside.any() else inside.copy()
    return marked, inside


def rasterize_nodule(
    nodule: LidcNodule, slices: Sequence[int], volume_shape: Sequence[int], include_contour: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Rasterise one reader's nodule into a box of the volume grid.

    Args:
        nodule: the reader's nodule.
        slices: the volume slice index of each of ``nodule.rois``.
        volume_shape: ``(W, H, D)``, the volume's (column, row, slice) shape.
        include_contour: also mark the contour pixels. Defaults to False (LIDC outlines lie just outside the
            nodule); a contour with no inside pixel always marks its own pixels.

    Returns:
        ``(offset, mask)``: the box's first voxel (3,) and a bool mask of the box, (w, h, d).

    Raises:
        ValueError: when ``slices`` and ``nodule.rois`` differ in length or a point lies outside the slice.
    """
    if len(slices) != len(nodule.rois):
        raise ValueError(f"slices must give one index per roi ({len(nodule.rois)}), got {len(slices)}.")
    pts = np.concatenate([roi.points for roi in nodule.rois])
    width, height = int(volume_shape[0]), int(volume_shape[1])
    if (pts < 0).any() or (pts[:, 0] >= width).any() or (pts[:, 1] >= height).any():
        raise ValueError(
            f"nodule {nodule.nodule_id!r} of reader {nodule.reader_id}: contour points must lie inside the "
            f"{width} x {height} slice, got x in [{pts[:, 0].min()}, {pts[:, 0].max()}], "
            f"y in [{pts[:, 1].min()}, {pts[:, 1].max()}]."
        )
    lo = np.array([pts[:, 0].min(), pts[:, 1].min(), min(slices)])
    hi = np.array([pts[:, 0].max() + 1, pts[:, 1].max() + 1, max(slices) + 1])
    mask = np.zeros(tuple(hi - lo), dtype=bool)
    holes = np.zeros_like(mask)
    for roi, k in zip(nodule.rois, slices):
        marked, inside = _roi_region(roi.points - lo[:2], mask.shape[:2], include_contour)
        if roi.inclusion:
            mask[:, :, k - lo[2]] |= marked
        else:
            holes[:, :, k - lo[2]] |= inside
    return lo, mask & ~holes


def _world(idx: np.ndarray, affine: np.ndarray) -> np.ndarray:
    return idx @ affine[:3, :3].T + affine[:3, 3]  # (N, 3) voxel -> (N, 3) mm


def cluster_annotations(
    annotations: Sequence[tuple[np.ndarray, np.ndarray]], affine: np.ndarray, distance_mm: float
) -> list[list[int]]:
    """Group annotations whose voxels come within ``distance_mm`` of each other (transitively).

    Args:
        annotations: ``(offset, mask)`` boxes as :py:func:`rasterize_nodule` returns them (non-empty masks).
        affine: the volume's 4x4 voxel-to-world matrix.
        distance_mm: largest voxel-centre distance (mm) that links two annotations (>= 0).

    Returns:
        lists of annotation indices, each sorted, ordered by their first index.

    Raises:
        ValueError: when ``distance_mm`` is negative.
    """
    if distance_mm < 0:
        raise ValueError(f"distance_mm must be >= 0, got distance_mm={distance_mm}.")
    points = [_world(np.argwhere(m) + off, affine) for off, m in annotations]
    trees = [cKDTree(p) for p in points]
    lows = [p.min(axis=0) for p in points]
    highs = [p.max(axis=0) for p in points]
    parent = list(range(len(points)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(len(points)):
        for j in range(i + 1, len(points)):
            if (lows[i] > highs[j] + distance_mm).any() or (lows[j] > highs[i] + distance_mm).any():
                continue  # boxes too far apart
            dist, _ = trees[i].query(points[j], k=1, distance_upper_bound=distance_mm + 1e-6)
            if np.isfinite(dist).any():
                parent[find(j)] = find(i)
    groups: dict[int, list[int]] = {}
    for i in range(len(points)):
        groups.setdefault(find(i), []).append(i)
    return sorted(groups.values(), key=lambda g: g[0])


def consensus_lesions(
    annotations: Sequence[LidcAnnotation],
    n_readers: int,
    affine: np.ndarray,
    volume_shape: Sequence[int],
    consensus: int = 2,
    min_diameter_mm: float = 3.0,
    max_diameter_mm: float = 30.0,
    distance_mm: float = 1.0,
) -> tuple[np.ndarray, list[dict]]:
    """Cluster the readers' annotations into lesions and build the consensus label and lesion records.

    Args:
        annotations: the readers' rasterised nodules (non-empty masks).
        n_readers: reading sessions in the XML (the denominator of the agreement).
        affine: 4x4 voxel-to-world (RAS) matrix of the volume.
        volume_shape: ``(W, H, D)``.
        consensus: a voxel is lesion when at least this many distinct readers marked it. Defaults to 2.
        min_diameter_mm: smallest kept equivalent diameter. Defaults to 3.
        max_diameter_mm: largest kept equivalent diameter. Defaults to 30.
        distance_mm: linking distance of :py:func:`cluster_annotations`. Defaults to 1.

    Returns:
        ``(label, records)``: uint8 label (W, H, D) with the kept lesions at 1, and one record per lesion
        (:py:func:`bundle.data.synthetic.lesion_params.lesion_record` plus ``readers`` (how many distinct readers
        marked it), ``reader_ids``, ``reader_sessions`` (their 0-based reading session indices),
        ``n_reading_sessions``, ``agreement`` (readers / sessions), ``consensus``,
        ``nodule_ids``, ``size_band``, ``ignore`` and, when ignored, ``ignore_reason``). The record of a lesion
        without a consensus mask describes the union of its readers' marks.
    """
    label = np.zeros(tuple(int(s) for s in volume_shape), dtype=np.uint8)
    records = []
    groups = cluster_annotations([(a.offset, a.mask) for a in annotations], affine, distance_mm)
    for group in groups:
        members = [annotations[i] for i in group]
        lo = np.min([a.offset for a in members], axis=0)
        hi = np.max([a.offset + a.mask.shape for a in members], axis=0)
        per_reader: dict[int, np.ndarray] = {}
        for a in members:
            marks = per_reader.setdefault(a.reader, np.zeros(tuple(hi - lo), dtype=bool))
            start = a.offset - lo
            marks[tuple(slice(s, s + n) for s, n in zip(start, a.mask.shape))] |= a.mask
        count = np.sum(list(per_reader.values()), axis=0)  # (w, h, d): readers marking each voxel
        n = len(per_reader)
        fields = {
            "readers": n,
            "reader_ids": sorted({a.reader_id for a in members}),
            "reader_sessions": sorted(int(r) for r in per_reader),
            "n_reading_sessions": int(n_readers),
            "agreement": round(n / max(int(n_readers), 1), 3),
            "consensus": int(consensus),
            "nodule_ids": [f"{a.reader_id}:{a.nodule_id}" for a in members],
            "source": "LIDC-IDRI",
        }
        core = count >= consensus
        reason = None
        if n < consensus:
            reason = f"marked by {n} of {n_readers} readers, fewer than consensus={consensus}"
        elif not core.any():
            reason = f"{n} readers marked it but no voxel is marked by {consensus} of them"
        if reason is not None:
            record = lesion_record(count > 0, affine, offset=lo, **fields)
        else:
            record = lesion_record(core, affine, offset=lo, **fields)
            d = record["diameter_mm"]
            if d < min_diameter_mm:
                reason = f"consensus diameter {d} mm < min_diameter_mm={min_diameter_mm}"
            elif d > max_diameter_mm:
                reason = f"consensus diameter {d} mm > max_diameter_mm={max_diameter_mm}"
            else:
                box = label[tuple(slice(a, b) for a, b in zip(lo, hi))]
                box[core] = 1
        record["size_band"] = size_band(record["diameter_mm"])
        record["ignore"] = reason is not None
        if reason is not None:
            record["ignore_reason"] = reason
        records.append(record)
    return label, records
