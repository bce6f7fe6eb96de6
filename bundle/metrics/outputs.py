"""Glue between an ignite engine's per-case outputs and the lesion-level metrics.

A segmentation evaluator produces, per case, a lesion probability map and a label mask. The lesion metrics work on
lists of candidates and ground-truth lesions in world millimetres, so validation and evaluation need one function
that turns the former into the latter. It lives here so that ``configs/train.json`` and ``configs/evaluate.json``
use exactly the same candidate extraction as the inference outputs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from scipy import ndimage

from bundle.lesions.find import find_lesions

__all__ = [
    "MERGE_GAP_MM", "case_lesion_lists", "check_merge_gap", "label_lesions", "merge_fragments", "LesionListsOutputTransform"
]

# Label components closer than this are one lesion (the pieces of a spiculated lesion cut apart by thick slices);
# measured on the training side of the synthetic sets (scripts/reference_gaps.py): pieces lie 2.0-3.9 mm from their
# lesion, separate lesions >= 9.2 mm apart (docs/README.md, "Reference lesions").
MERGE_GAP_MM = 6.0


def _affine_of(x: Any) -> np.ndarray | None:
    affine = getattr(x, "affine", None)
    return None if affine is None else np.asarray(torch.as_tensor(affine).cpu(), dtype=np.float64)


def case_lesion_lists(
    pred: torch.Tensor,
    label: torch.Tensor,
    candidate_threshold: float = 0.2,
    lesion_channel: int = 1,
    min_volume_mm3: float = 0.0,
    mask: np.ndarray | None = None,
    rescorer: Any = None,
    image: torch.Tensor | None = None,
    merge_gap_mm: float = MERGE_GAP_MM,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Candidates of one case's probability map and the lesions of its label mask, both in world mm.

    Args:
        pred: class probabilities (C, *spatial) (a MetaTensor carrying its affine) or a lesion probability map
            (1, *spatial).
        label: label mask (1, *spatial); > 0 is lesion.
        candidate_threshold: probability at which candidate components are cut; the FROC then sweeps the
            candidates' scores (their maximum probability) from high to low, so keep this below the operating
            threshold.
        lesion_channel: channel of ``pred`` holding the lesion probability when it has several channels.
        min_volume_mm3: drop candidates smaller than this.
        mask: optional boolean mask of the spatial shape; candidates outside it are dropped.
        rescorer: optional second stage called as ``rescorer(candidates, image, prob, affine)`` that returns the
            candidates rescored (:py:class:`bundle.lesions.rescore.CandidateRescorer`); needs ``image``.
        image: the preprocessed image (1, *spatial) on the grid of ``pred``, for ``rescorer``.
        merge_gap_mm: label components this close to each other are one lesion (:py:func:`label_lesions`).

    Returns:
        (candidates, lesions): lists of dicts with ``center_mm``, ``score`` (candidates) and ``center_mm``,
        ``diameter_mm`` (lesions), as :py:func:`bundle.metrics.froc` expects.

    Raises:
        ValueError: when ``pred`` and ``label`` have different spatial shapes, or ``rescorer`` comes without
            ``image``.
    """
    prob = pred[lesion_channel] if pred.shape[0] > 1 else pred[0]
    truth = label[0] if label.dim() == prob.dim() + 1 else label
    if tuple(prob.shape) != tuple(truth.shape):
        raise ValueError(
            f"pred and label must have the same spatial shape, got pred {tuple(prob.shape)} and label {tuple(truth.shape)}."
        )
    affine = _affine_of(pred)
    if affine is None:
        affine = _affine_of(label)
    prob_np = np.asarray(torch.as_tensor(prob).detach().cpu(), dtype=np.float32)
    truth_np = np.asarray(torch.as_tensor(truth).detach().cpu()) > 0
    candidates = find_lesions(prob_np, affine, threshold=candidate_threshold, min_volume_mm3=min_volume_mm3, mask=mask)
    if rescorer is not None:
        if image is None:
            raise ValueError("a rescorer needs the preprocessed image.")
        candidates = rescorer(candidates, image, prob_np, affine)
    return candidates, label_lesions(truth_np, affine, merge_gap_mm)


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


def label_lesions(label: np.ndarray, affine: np.ndarray | None, merge_gap_mm: float = MERGE_GAP_MM) -> list[dict[str, Any]]:
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


class LesionListsOutputTransform:
    """ignite ``output_transform`` mapping an evaluator's decollated outputs to per-case lesion lists.

    Use with :py:class:`bundle.metrics.LesionDetectionMetric` through MONAI's ``IgniteMetricHandler``.

    Args:
        pred_key: key of the class probabilities in each output dict. Defaults to ``"pred"``.
        label_key: key of the label mask. Defaults to ``"label"``.
        candidate_threshold: see :py:func:`case_lesion_lists`. Defaults to 0.2.
        min_volume_mm3: see :py:func:`case_lesion_lists`. Defaults to 0.
        mask_key: optional key of a candidate mask (1, *spatial) in each output dict (e.g. the lung envelope of
            :py:class:`bundle.transforms.lung.LungCandidateMaskd`); candidates centred outside it are dropped, as the
            inference does.
        rescorer: optional second stage, see :py:func:`case_lesion_lists`; it reads the image at ``image_key``.
        image_key: key of the preprocessed image in each output dict. Defaults to ``"image"``.
        merge_gap_mm: see :py:func:`label_lesions`. Defaults to :py:data:`MERGE_GAP_MM`.
    """

    def __init__(
        self,
        pred_key: str = "pred",
        label_key: str = "label",
        candidate_threshold: float = 0.2,
        min_volume_mm3: float = 0.0,
        mask_key: str | None = None,
        rescorer: Any = None,
        image_key: str = "image",
        merge_gap_mm: float = MERGE_GAP_MM,
    ) -> None:
        if not 0.0 < candidate_threshold < 1.0:
            raise ValueError(f"candidate_threshold must be in (0, 1), got candidate_threshold={candidate_threshold}.")
        self.pred_key, self.label_key, self.mask_key = pred_key, label_key, mask_key
        self.candidate_threshold, self.min_volume_mm3 = candidate_threshold, min_volume_mm3
        self.rescorer, self.image_key = rescorer, image_key
        self.merge_gap_mm = check_merge_gap(merge_gap_mm)

    def __call__(self, output: Sequence[dict[str, Any]] | dict[str, Any]) -> tuple[list[list[dict]], list[list[dict]]]:
        items = [output] if isinstance(output, dict) else list(output)
        y_pred, y = [], []
        for item in items:
            mask = None
            if self.mask_key is not None:
                mask = np.asarray(torch.as_tensor(item[self.mask_key]).cpu())[0] > 0
            candidates, lesions = case_lesion_lists(
                item[self.pred_key],
                item[self.label_key],
                candidate_threshold=self.candidate_threshold,
                min_volume_mm3=self.min_volume_mm3,
                mask=mask,
                rescorer=self.rescorer,
                image=item.get(self.image_key) if self.rescorer is not None else None,
                merge_gap_mm=self.merge_gap_mm,
            )
            y_pred.append(candidates)
            y.append(lesions)
        return y_pred, y

