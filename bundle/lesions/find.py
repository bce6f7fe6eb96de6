"""Lesion candidates from a probability map: connected components, box refinement and non-maximum suppression.

The source paper post-processes per routing tier: candidates in *high*-tier regions get the full treatment
(box refinement by hysteresis re-growing, then non-maximum suppression that merges duplicated candidates),
*medium* ones refinement only, and *low* ones nothing (the network did not run there, so normally there are none).

Everything is computed in the voxel grid of the array it is given; world coordinates come from its affine
(RAS mm, as MONAI and nibabel use). The same function turns a binary ground-truth mask into a lesion list (every
lesion then scores 1.0), so metrics can compare predicted and ground-truth lists built the same way.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection, NdarrayOrTensor
from monai.data import MetaTensor
from monai.data.box_utils import box_iou, non_max_suppression
from monai.transforms import MapTransform
from monai.utils import convert_to_numpy, look_up_option
from scipy import ndimage

from bundle.tiers import TIER_NAMES

__all__ = ["LESION_KEYS", "find_lesions", "FindLesionsd", "FindLesionsD", "FindLesionsDict"]

logger = logging.getLogger(__name__)

# index = tier code of the routed inferer's `last_tier_map` (0 low, 1 medium, 2 high)
# the keys of every lesion record, in the order written to lesions.json
LESION_KEYS: tuple[str, ...] = ("center_voxel", "center_mm", "box_voxel", "diameter_mm", "volume_mm3", "score", "tier")
_SCORE_MODES = ("max", "mean")
_HIGH, _MEDIUM = 2, 1


def _check_params(
    threshold: float,
    refine_threshold: float | None,
    min_volume_mm3: float,
    min_diameter_mm: float,
    score: str,
    nms_iou: float,
) -> str:
    """Validate the scalar options shared by :py:func:`find_lesions` and :py:class:`FindLesionsd`."""
    if not (math.isfinite(threshold) and threshold > 0):
        raise ValueError(f"threshold must be a finite number > 0, got threshold={threshold}.")
    if refine_threshold is not None and not 0 < refine_threshold <= threshold:
        raise ValueError(
            f"refine_threshold must be in (0, threshold={threshold}], got refine_threshold={refine_threshold}."
        )
    if not min_volume_mm3 >= 0:
        raise ValueError(f"min_volume_mm3 must be >= 0, got min_volume_mm3={min_volume_mm3}.")
    if not min_diameter_mm >= 0:
        raise ValueError(f"min_diameter_mm must be >= 0, got min_diameter_mm={min_diameter_mm}.")
    if not 0 < nms_iou <= 1:
        raise ValueError(f"nms_iou must be in (0, 1], got nms_iou={nms_iou}.")
    return str(look_up_option(score, _SCORE_MODES))


def _equivalent_diameter(volume: float, spatial_dims: int) -> float:
    """Diameter of the sphere (3D) or disc (2D) with the given volume (area)."""
    if spatial_dims == 3:
        return float((6.0 * volume / math.pi) ** (1.0 / 3.0))
    return float(2.0 * math.sqrt(volume / math.pi))


def _voxel_index(center: np.ndarray, shape: tuple[int, ...]) -> tuple[int, ...]:
    """Nearest voxel of a (fractional) center, clipped into the array."""
    return tuple(int(min(max(round(float(c)), 0), s - 1)) for c, s in zip(center, shape, strict=True))


def find_lesions(
    prob: NdarrayOrTensor,
    affine: NdarrayOrTensor | None = None,
    threshold: float = 0.5,
    min_volume_mm3: float = 0.0,
    min_diameter_mm: float = 0.0,
    score: str = "max",
    nms_iou: float = 0.22,
    tier_map: NdarrayOrTensor | None = None,
    refine: bool = True,
    refine_threshold: float | None = None,
    mask: NdarrayOrTensor | None = None,
    return_label_map: bool = False,
    max_candidates: int | None = 1000,
) -> list[dict[str, Any]] | tuple[list[dict[str, Any]], np.ndarray]:
    """
    Lesion candidates of a probability map (or a binary mask): 26-connected (8 in 2D) components of
    ``prob >= threshold``, post-processed per routing tier, sorted by decreasing score.

    Per candidate (a core component), in this order:

    1. ``tier`` is read from ``tier_map`` at the nearest voxel of the core's probability-weighted centroid
       (``"high"`` when there is no tier map).
    2. Candidates whose centroid lies outside ``mask`` are dropped (e.g. a dilated lung mask).
    3. High and medium candidates with ``refine=True``: the box is re-grown to the component of
       ``prob >= refine_threshold`` (hysteresis, default ``threshold / 2``) that contains the core, so the box
       fits the whole lesion and not only its confident centre. Low candidates keep their core box.
    4. High candidates only: non-maximum suppression on the boxes (MONAI
       :py:func:`monai.data.box_utils.non_max_suppression`, IoU > ``nms_iou``). A suppressed candidate is merged
       into the kept candidate it overlaps most: cores are united (score, centre, volume recomputed) and the box
       is the union of both boxes. This removes duplicates from a lesion split into pieces by a dip in the map.
    5. Lesions with ``volume_mm3 < min_volume_mm3`` or ``diameter_mm < min_diameter_mm`` are dropped.

    Args:
        prob: probability map (or binary mask) of shape (spatial_1, spatial_2[, spatial_3]).
        affine: voxel-to-world matrix, shape (N+1, N+1) for N spatial dims; world coordinates are RAS mm when it
            is a MONAI/nibabel affine. Defaults to ``prob.affine`` when ``prob`` is a MetaTensor.
        threshold: a voxel belongs to a lesion core if ``prob >= threshold``. Default 0.5.
        min_volume_mm3: drop lesions smaller than this volume (area in 2D). Default 0 (keep all).
        min_diameter_mm: drop lesions whose equivalent-sphere diameter is below this. Default 0 (keep all).
        score: ``"max"`` or ``"mean"`` of ``prob`` over the core. Default ``"max"``.
        nms_iou: IoU above which a high-tier box is suppressed by a higher-scored one. Default 0.22, the value
            of the Model Zoo's lung_nodule_ct_detection bundle.
        tier_map: optional tier per voxel (0 low, 1 medium, 2 high), same shape as ``prob``; e.g. the routed
            inferer's ``last_tier_map`` brought to the same grid.
        refine: whether to re-grow high and medium boxes at ``refine_threshold``. Default True.
        refine_threshold: hysteresis threshold of the refinement, in (0, threshold]. Default ``threshold / 2``.
        mask: optional boolean mask, same shape as ``prob``; candidates whose centroid is outside are dropped.
        return_label_map: also return the lesion label map (see Returns).
        max_candidates: keep only this many candidate cores, those with the highest scores, before refinement and
            NMS (a warning is logged). An untrained or badly mismatched network can leave tens of thousands of noise
            cores, whose pairwise NMS would take hours. None keeps all. Default 1000.

    Returns:
        A list of lesion dicts, highest score first, each with the keys of :py:data:`LESION_KEYS`:
        ``center_voxel`` (probability-weighted centroid, fractional indices of ``prob``), ``center_mm``
        (``affine @ center_voxel``), ``box_voxel`` (``[[start...], [stop...]]``, start inclusive, stop exclusive),
        ``diameter_mm`` (equivalent sphere), ``volume_mm3`` (core voxels times voxel volume), ``score``,
        ``tier`` (``"high"``, ``"medium"`` or ``"low"``). With ``return_label_map=True`` a tuple
        ``(lesions, label_map)`` where ``label_map`` (same shape as ``prob``, uint16 or int32) holds ``n`` on the
        core voxels of the ``n``-th lesion (1-based) and 0 elsewhere.

    Raises:
        ValueError: When ``prob`` is not 2D or 3D, ``affine`` is missing or not (N+1, N+1), ``tier_map`` or
            ``mask`` do not have the shape of ``prob``, ``tier_map`` has values outside {0, 1, 2}, or a scalar
            option is out of range.

    Example::

        lesions = find_lesions(prob, affine, threshold=0.5, min_diameter_mm=3.0)
        gt_lesions = find_lesions(label_mask, affine)  # every score is 1.0

    """
    score = _check_params(threshold, refine_threshold, min_volume_mm3, min_diameter_mm, score, nms_iou)
    if max_candidates is not None and (isinstance(max_candidates, bool) or int(max_candidates) < 1):
        raise ValueError(f"max_candidates must be None or >= 1, got max_candidates={max_candidates!r}.")
    if affine is None:
        if not isinstance(prob, MetaTensor):
            raise ValueError("affine must be given when prob is not a MetaTensor, got affine=None.")
        affine = prob.affine
    p = np.asarray(convert_to_numpy(prob), dtype=np.float32)
    nd = p.ndim
    if nd not in (2, 3):
        raise ValueError(f"prob must have 2 or 3 spatial dims (no channel), got prob.shape={tuple(p.shape)}.")
    aff = np.asarray(convert_to_numpy(affine), dtype=np.float64)
    if aff.shape != (nd + 1, nd + 1):
        raise ValueError(f"affine must have shape {(nd + 1, nd + 1)} for prob {p.shape}, got {aff.shape}.")
    tiers = None
    if tier_map is not None:
        tiers = np.asarray(convert_to_numpy(tier_map))
        if tiers.shape != p.shape:
            raise ValueError(f"tier_map must have the shape of prob {p.shape}, got tier_map.shape={tiers.shape}.")
        if tiers.size and (tiers.min() < 0 or tiers.max() > _HIGH):
            raise ValueError(f"tier_map values must be 0, 1 or 2, got range [{tiers.min()}, {tiers.max()}].")
    inside = None
    if mask is not None:
        inside = np.asarray(convert_to_numpy(mask)).astype(bool)
        if inside.shape != p.shape:
            raise ValueError(f"mask must have the shape of prob {p.shape}, got mask.shape={inside.shape}.")

    # everything below happens inside the box of the voxels at or above the lowest threshold used (labelling the
    # whole grid is most of the time); positions are shifted back by ``origin`` at the end
    full_shape = p.shape
    low_threshold = (threshold / 2 if refine_threshold is None else refine_threshold) if refine else threshold
    crop = _bounding_box(p >= min(low_threshold, threshold))
    if crop is None:
        return ([], np.zeros(full_shape, np.uint16)) if return_label_map else []
    origin = np.asarray([s.start for s in crop], dtype=np.float64)
    p = p[crop]
    tiers = None if tiers is None else tiers[crop]
    inside = None if inside is None else inside[crop]

    structure = ndimage.generate_binary_structure(nd, nd)  # 26-connectivity in 3D, 8 in 2D
    labels, n = ndimage.label(p >= threshold, structure=structure)
    if n == 0:
        return ([], np.zeros(full_shape, np.uint16)) if return_label_map else []

    # per-core statistics over the (few) core voxels only: ndimage's labelled maximum sorts the whole volume
    where = np.nonzero(labels)
    core_ids, core_p = labels[where] - 1, p[where].astype(np.float64)
    sizes = np.bincount(core_ids, minlength=n).astype(np.float64)
    mass = np.bincount(core_ids, weights=core_p, minlength=n)
    peak = np.zeros(n)
    np.maximum.at(peak, core_ids, core_p)
    centers = np.stack([np.bincount(core_ids, core_p * w, minlength=n) for w in where], axis=1) / mass[:, None]
    slices = ndimage.find_objects(labels)
    boxes = np.array([[s.start for s in sl] + [s.stop for s in sl] for sl in slices], dtype=np.float64)
    tier = np.full(n, _HIGH, dtype=np.int64)
    if tiers is not None:
        tier = np.array([int(tiers[_voxel_index(c, p.shape)]) for c in centers], dtype=np.int64)
    alive = np.ones(n, dtype=bool)
    if inside is not None:
        alive = np.array([bool(inside[_voxel_index(c, p.shape)]) for c in centers])
    core_score = peak if score == "max" else mass / sizes
    if max_candidates is not None and int(alive.sum()) > max_candidates:
        alive_ids = np.flatnonzero(alive)
        dropped = alive_ids[np.argsort(-core_score[alive_ids], kind="stable")[max_candidates:]]
        alive[dropped] = False
        logger.warning("%d candidate lesions: keeping the %d with the highest scores.", len(alive_ids), max_candidates)

    refined = alive & (tier >= _MEDIUM) if refine else np.zeros(n, dtype=bool)
    if refined.any():
        low_labels, _ = ndimage.label(p >= low_threshold, structure)
        low_slices = ndimage.find_objects(low_labels)
        # every core lies inside exactly one low component (the low mask contains the core and cores are connected)
        low_of_core = np.zeros(n, dtype=np.int64)
        low_of_core[core_ids] = low_labels[where]
        for c in np.flatnonzero(refined):
            sl = low_slices[low_of_core[c] - 1]
            boxes[c] = [s.start for s in sl] + [s.stop for s in sl]

    # groups of core ids that form one lesion; NMS merges high-tier duplicates
    groups: dict[int, list[int]] = {int(c): [int(c)] for c in np.flatnonzero(alive)}
    high = np.flatnonzero(alive & (tier == _HIGH))
    if len(high) > 1:
        keep = np.asarray(non_max_suppression(boxes[high], core_score[high], nms_iou), dtype=np.int64)
        kept = high[keep]
        for c in np.setdiff1d(high, kept):
            iou = np.asarray(box_iou(boxes[c][None], boxes[kept]), dtype=np.float64)[0]
            # the greedy NMS suppressor is among these: higher-or-equal score and IoU above the threshold
            iou[(iou <= nms_iou) | (core_score[kept] < core_score[c])] = -1.0
            target = int(kept[int(np.argmax(iou))])
            groups[target].append(int(c))
            del groups[int(c)]

    voxel_volume = abs(float(np.linalg.det(aff[:nd, :nd])))
    lesions: list[dict[str, Any]] = []
    members: list[list[int]] = []
    for head, group in groups.items():
        g = np.asarray(group)
        volume = float(sizes[g].sum()) * voxel_volume
        diameter = _equivalent_diameter(volume, nd)
        if volume < min_volume_mm3 or diameter < min_diameter_mm:
            continue
        center = (centers[g] * mass[g, None]).sum(0) / mass[g].sum() + origin
        lesion_score = peak[g].max() if score == "max" else mass[g].sum() / sizes[g].sum()
        start, stop = boxes[g, :nd].min(0) + origin, boxes[g, nd:].max(0) + origin
        lesions.append(
            {
                "center_voxel": [float(v) for v in center],
                "center_mm": [float(v) for v in (aff @ np.append(center, 1.0))[:nd]],
                "box_voxel": [[int(v) for v in start], [int(v) for v in stop]],
                "diameter_mm": diameter,
                "volume_mm3": volume,
                "score": float(lesion_score),
                "tier": TIER_NAMES[int(tier[head])],
            }
        )
        members.append(group)
    order = sorted(range(len(lesions)), key=lambda i: (-lesions[i]["score"], -lesions[i]["volume_mm3"]))
    lesions = [lesions[i] for i in order]
    logger.debug("find_lesions: %d core components -> %d lesions", n, len(lesions))
    if not return_label_map:
        return lesions
    lut = np.zeros(n + 1, dtype=np.uint16 if len(lesions) < np.iinfo(np.uint16).max else np.int32)
    for rank, i in enumerate(order, start=1):
        lut[np.asarray(members[i]) + 1] = rank
    label_map = np.zeros(full_shape, lut.dtype)
    label_map[crop] = lut[labels]
    return lesions, label_map


def _bounding_box(mask: np.ndarray) -> tuple[slice, ...] | None:
    """The smallest box (slices) holding every True voxel of ``mask``, or None when there is none."""
    box = []
    for axis in range(mask.ndim):
        hit = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
        if hit.size == 0:
            return None
        box.append(slice(int(hit[0]), int(hit[-1]) + 1))
    return tuple(box)


class FindLesionsd(MapTransform):
    """
    Dictionary-based wrapper of :py:func:`find_lesions`: stores the lesion list of ``d[key]`` under
    ``d[f"{key}_{lesions_postfix}"]`` (default ``"pred_lesions"``).

    ``d[key]`` is either a spatial map (spatial_1, ..., spatial_N) or channel-first (C, spatial_1, ..., spatial_N);
    in the latter case channel ``channel`` is used (channel 0 when C == 1), e.g. the foreground channel of a
    softmax output. N is read from the affine: ``d[affine_key].affine`` / ``d[affine_key]`` when ``affine_key``
    is given, otherwise ``d[key].affine`` (a MetaTensor).

    Args:
        keys: keys of the probability maps. Default ``"pred"``.
        threshold, min_volume_mm3, min_diameter_mm, score, nms_iou, refine, refine_threshold: see
            :py:func:`find_lesions`.
        channel: foreground channel of channel-first inputs. Default 1.
        affine_key: key of a MetaTensor or a (N+1, N+1) array giving the affine; None uses ``d[key].affine``.
        tier_map_key: optional key of the tier map (same spatial shape, channel-first with C == 1 allowed).
        mask_key: optional key of the candidate mask (same spatial shape, channel-first with C == 1 allowed).
        lesions_postfix: the output key is ``f"{key}_{lesions_postfix}"``. Default ``"lesions"``.
        allow_missing_keys: don't raise exception if key is missing.

    Raises:
        ValueError: see :py:func:`find_lesions`; also when ``channel`` < 0.

    """

    def __init__(
        self,
        keys: KeysCollection = "pred",
        threshold: float = 0.5,
        min_volume_mm3: float = 0.0,
        min_diameter_mm: float = 0.0,
        score: str = "max",
        nms_iou: float = 0.22,
        refine: bool = True,
        refine_threshold: float | None = None,
        channel: int = 1,
        affine_key: str | None = None,
        tier_map_key: str | None = None,
        mask_key: str | None = None,
        lesions_postfix: str = "lesions",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        score = _check_params(threshold, refine_threshold, min_volume_mm3, min_diameter_mm, score, nms_iou)
        if channel < 0:
            raise ValueError(f"channel must be >= 0, got channel={channel}.")
        self.kwargs: dict[str, Any] = {
            "threshold": threshold,
            "min_volume_mm3": min_volume_mm3,
            "min_diameter_mm": min_diameter_mm,
            "score": score,
            "nms_iou": nms_iou,
            "refine": refine,
            "refine_threshold": refine_threshold,
        }
        self.channel = channel
        self.affine_key = affine_key
        self.tier_map_key = tier_map_key
        self.mask_key = mask_key
        self.lesions_postfix = lesions_postfix

    @staticmethod
    def _spatial(x: NdarrayOrTensor, spatial_dims: int, channel: int) -> NdarrayOrTensor:
        """Drop the channel axis of a channel-first array, keeping ``channel`` (or 0 for one channel)."""
        if x.ndim == spatial_dims + 1:
            return x[channel if x.shape[0] > 1 else 0]
        return x

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            ref = d[key] if self.affine_key is None else d[self.affine_key]
            affine = ref.affine if isinstance(ref, MetaTensor) else ref
            if affine is None or not isinstance(affine, (np.ndarray, torch.Tensor)):
                raise ValueError(f"no affine for key '{key}': give a MetaTensor or affine_key, got {type(ref)}.")
            nd = int(affine.shape[0]) - 1
            extra = {
                name: self._spatial(d[k], nd, 0)
                for name, k in (("tier_map", self.tier_map_key), ("mask", self.mask_key))
                if k is not None
            }
            prob = self._spatial(d[key], nd, self.channel)
            d[f"{key}_{self.lesions_postfix}"] = find_lesions(prob, affine, **self.kwargs, **extra)
        return d


FindLesionsD = FindLesionsDict = FindLesionsd
