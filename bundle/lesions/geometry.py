"""Lesion boxes between voxel grids and the world: one corner mapping for every place that needs it.

A lesion's ``box_voxel`` is ``[[start...], [stop...]]`` (start inclusive, stop exclusive) on the grid where it was
found. Its voxel-edge corners (``start - 0.5`` and ``stop - 0.5`` on every axis) mapped by an affine give the box in
mm (:py:func:`voxel_box_to_world`, what MONAI Label's detection writer reads) or, through a second affine, on
another grid of the same world (:py:func:`lesions_to_grid`, preprocessed grid -> the input's own grid), and so
does a label map, box by box (:py:func:`label_map_to_grid`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.utils import convert_to_tensor
from scipy import ndimage

__all__ = [
    "box_edge_corners", "input_grid", "label_map_to_grid", "lesions_to_grid", "voxel_box_to_world", "world_to_voxel"
]  # fmt: skip

_RAS_TO_LPS = np.array([-1.0, -1.0, 1.0])



def _grid_affines(from_affine: Any, to_affine: Any, nd: int) -> tuple[np.ndarray, np.ndarray]:
    """Both affines as float64 arrays, checked to be (nd+1, nd+1) (``ValueError`` naming both shapes)."""
    src = np.asarray(convert_to_tensor(from_affine, track_meta=False).cpu(), dtype=np.float64)
    dst = np.asarray(convert_to_tensor(to_affine, track_meta=False).cpu(), dtype=np.float64)
    if src.shape != (nd + 1, nd + 1) or dst.shape != (nd + 1, nd + 1):
        raise ValueError(f"affines must be {(nd + 1, nd + 1)} for a {nd}-D grid, got {src.shape} and {dst.shape}.")
    return src, dst

def box_edge_corners(box_voxel: Any) -> np.ndarray:
    """The ``2**N`` voxel-edge corners (2**N, N) of an N-D voxel box ``[[start...], [stop...]]``."""
    start, stop = (np.asarray(b, dtype=np.float64) for b in box_voxel)
    nd = len(start)
    bits = np.array(np.meshgrid(*[[0, 1]] * nd, indexing="ij")).reshape(nd, -1).T  # (2**N, N) of 0/1
    return np.where(bits == 0, start - 0.5, stop - 0.5)


def _map(points: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """``points`` (P, N) mapped by the (N+1, N+1) ``affine``."""
    return points @ affine[:-1, :-1].T + affine[:-1, -1]


def world_to_voxel(points_mm: Any, affine: Any) -> np.ndarray:
    """Voxel coordinates of world points: ``inv(affine) @ [x, y, z, 1]``.

    Args:
        points_mm: one point (N,) or several (P, N), e.g. RAS mm.
        affine: the grid's (N+1, N+1) voxel-to-world matrix.

    Returns:
        float64 voxel coordinates, the shape of ``points_mm`` ((0, N) for no points).
    """
    inverse = np.linalg.inv(np.asarray(affine, dtype=np.float64))
    points = np.asarray(points_mm, dtype=np.float64)
    flat = points.reshape(-1, inverse.shape[0] - 1)
    return _map(flat, inverse).reshape(points.shape if points.size else flat.shape)


def voxel_box_to_world(box_voxel: Any, affine: np.ndarray, lps: bool = True) -> list[float]:
    """
    A voxel box ``[[i0, j0, k0], [i1, j1, k1]]`` (start inclusive, stop exclusive) as world ``[cx, cy, cz, w, h,
    d]`` mm: the axis-aligned hull of the box's voxel-edge corners mapped by ``affine`` (RAS), in LPS by default.
    """
    world = _map(box_edge_corners(box_voxel), np.asarray(affine, dtype=np.float64))  # (8, 3) RAS mm
    if lps:
        world = world * _RAS_TO_LPS
    wmin, wmax = world.min(0), world.max(0)
    return [*((wmin + wmax) / 2).tolist(), *(wmax - wmin).tolist()]


def lesions_to_grid(
    lesions: Sequence[Mapping[str, Any]],
    from_affine: np.ndarray | torch.Tensor,
    to_affine: np.ndarray | torch.Tensor,
    to_shape: Sequence[int],
) -> list[dict[str, Any]]:
    """Lesion records of one voxel grid re-expressed in another grid of the same world (e.g. preprocessed -> input).

    ``center_voxel`` is mapped through ``inv(to_affine) @ from_affine``; ``box_voxel`` becomes the smallest box of the
    target grid that holds the mapped box (its voxel-edge corners), clipped to ``to_shape``; ``center_mm``,
    ``diameter_mm``, ``volume_mm3``, ``score`` and ``tier`` are physical or grid-free and kept.

    Raises:
        ValueError: when an affine is not (N+1, N+1) for N = ``len(to_shape)``.
    """
    src, dst = _grid_affines(from_affine, to_affine, len(to_shape))
    m = np.linalg.inv(dst) @ src
    out = []
    for lesion in lesions:
        center = _map(np.asarray(lesion["center_voxel"], float)[None], m)[0]
        mapped = _map(box_edge_corners(lesion["box_voxel"]), m).T  # (N, 2**N)
        lo = np.clip(np.floor(mapped.min(axis=1) + 0.5), 0, np.asarray(to_shape) - 1).astype(int)
        hi = np.clip(np.ceil(mapped.max(axis=1) + 0.5), lo + 1, np.asarray(to_shape)).astype(int)
        out.append({**lesion, "center_voxel": [float(v) for v in center],
                    "box_voxel": [[int(v) for v in lo], [int(v) for v in hi]]})
    return out


def label_map_to_grid(
    labels: np.ndarray,
    from_affine: np.ndarray | torch.Tensor,
    to_affine: np.ndarray | torch.Tensor,
    to_shape: Sequence[int],
    boxes: Sequence[Any] | None = None,
) -> np.ndarray:
    """A label map brought to another grid of the same world by nearest neighbour, computed inside ``boxes`` only.

    Every target voxel of a box takes the label of the source voxel nearest to its centre (``floor(p + 0.5)`` of
    its source position ``p``, the rule of MONAI's nearest resampling, which ``Invertd`` uses); voxels outside the
    boxes are 0. With the boxes of :py:func:`lesions_to_grid` (they hold every target voxel whose centre falls in a
    lesion's source box) the result equals resampling the whole map, at the cost of the lesions' volume.

    Args:
        labels: (*spatial) integer label map on the grid of ``from_affine``.
        from_affine, to_affine: voxel -> world of the source and the target grid.
        to_shape: the target grid's shape.
        boxes: target-grid voxel boxes ``[[start...], [stop...]]`` (e.g. the mapped lesions' ``box_voxel``); None
            uses the bounding box of every labelled region of ``labels``, mapped to the target grid.

    Returns:
        (*to_shape) array of ``labels``' dtype.

    Raises:
        ValueError: when an affine is not (N+1, N+1) for N = ``len(to_shape)``.
    """
    src, dst = _grid_affines(from_affine, to_affine, len(to_shape))
    labels = np.asarray(labels)
    if boxes is None:
        regions = [{"center_voxel": [0.0] * labels.ndim, "box_voxel": [[s.start for s in b], [s.stop for s in b]]}
                   for b in ndimage.find_objects(labels) if b is not None]  # fmt: skip
        boxes = [r["box_voxel"] for r in lesions_to_grid(regions, src, dst, to_shape)]
    m = np.linalg.inv(src) @ dst  # target voxel -> source voxel
    out = np.zeros(tuple(int(s) for s in to_shape), dtype=labels.dtype)
    for box in boxes:
        lo = np.clip(np.asarray(box[0], dtype=int), 0, out.shape)
        hi = np.clip(np.asarray(box[1], dtype=int), lo, out.shape)
        if np.any(hi <= lo):
            continue
        axes = [np.arange(a, b) for a, b in zip(lo, hi)]
        centres = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, len(to_shape)).astype(np.float64)
        source = np.floor(_map(centres, m) + 0.5).astype(np.int64)  # (P, N) nearest source voxels
        inside = np.all((source >= 0) & (source < labels.shape), axis=1)
        values = np.zeros(len(centres), dtype=labels.dtype)
        values[inside] = labels[tuple(source[inside].T)]
        region = out[tuple(slice(a, b) for a, b in zip(lo, hi))]
        np.maximum(region, values.reshape(region.shape), out=region)  # overlapping boxes read the same labels
    return out


def input_grid(meta: Mapping[str, Any], case: str) -> tuple[np.ndarray, tuple[int, ...]]:
    """(affine, spatial shape) of the input's own grid, as MONAI's ``LoadImage`` recorded them in ``meta`` (an image's
    ``.meta``)."""
    if "original_affine" not in meta or "spatial_shape" not in meta:
        raise ValueError(f"case {case}: the image has no 'original_affine' / 'spatial_shape' metadata to map the "
                         "outputs back to the input's grid (load it with MONAI's LoadImage, or pass preprocessing=None).")
    affine = np.asarray(torch.as_tensor(meta["original_affine"]).cpu(), dtype=np.float64)
    return affine, tuple(int(s) for s in np.asarray(meta["spatial_shape"]).ravel())
