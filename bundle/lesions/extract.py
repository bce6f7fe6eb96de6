"""From the network's output to lesions: the one extraction used by inference, evaluation, MONAI Label and metrics.

1. :py:func:`lesion_probability`: logits (K, *spatial) -> the lesion probability (*spatial): ``sigmoid`` for one
   channel, else ``softmax`` over the channels and the ``foreground_channel``;
2. :py:func:`extract_lesions`: probability -> lesion candidates (:py:func:`bundle.lesions.find.find_lesions`, with
   the routing tier map and a candidate mask), then the optional false-positive-reduction stage
   (:py:mod:`bundle.lesions.rescore`), which either keeps the rescored candidates at or above a threshold (inference)
   or keeps them all, rescored, for the FROC sweep (evaluation).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from bundle.lesions.find import find_lesions
from bundle.lesions.rescore import rescore_lesions

__all__ = ["extract_lesions", "lesion_probability"]


def lesion_probability(logits: torch.Tensor, foreground_channel: int = 1, inplace: bool = False) -> torch.Tensor:
    """
    The lesion probability of one image's logits.

    Args:
        logits: (K, *spatial) network output of one image.
        foreground_channel: the lesion channel when K > 1. Default 1.
        inplace: with K == 1 and float32 logits, take the sigmoid in ``logits`` itself (overwritten, no second
            volume allocated); for callers that own the logits. Default False.

    Returns:
        (*spatial) float tensor: ``sigmoid(logits[0])`` when K == 1, else ``softmax(logits, 0)[foreground_channel]``.

    Raises:
        ValueError: when ``foreground_channel`` is negative or not a channel of ``logits``.
    """
    k = logits.shape[0]
    if foreground_channel < 0 or (k > 1 and foreground_channel >= k):
        raise ValueError(f"foreground_channel={foreground_channel} but the network gave {k} channels.")
    logits = logits.float()
    if k == 1:
        return logits[0].sigmoid_() if inplace else torch.sigmoid(logits[0])
    if k == 2:  # softmax(l)[f] = sigmoid(l_f - l_other): one map allocated instead of K
        return (logits[foreground_channel] - logits[1 - foreground_channel]).sigmoid_()
    return torch.softmax(logits, 0)[foreground_channel]


def extract_lesions(
    prob: np.ndarray,
    affine: np.ndarray | torch.Tensor,
    lesion_kwargs: Mapping[str, Any] | None = None,
    tier_map: np.ndarray | None = None,
    mask: np.ndarray | None = None,
    rescorer: Any = None,
    image: np.ndarray | torch.Tensor | None = None,
    rescore_threshold: float | None = 0.5,
    return_label_map: bool = False,
) -> list[dict[str, Any]] | tuple[list[dict[str, Any]], np.ndarray]:
    """
    The lesions of one lesion-probability map.

    Args:
        prob: (*spatial) lesion probability on the grid of ``affine``.
        affine: voxel -> world (RAS mm) of that grid.
        lesion_kwargs: keyword arguments of :py:func:`bundle.lesions.find.find_lesions` (``threshold``,
            ``min_diameter_mm``, ``min_volume_mm3``, ``nms_iou``...).
        tier_map: optional routing tier code per voxel (the routed inferer's ``last_tier_map``).
        mask: optional boolean candidate mask; lesions centred outside it are dropped.
        rescorer: optional second stage (:py:class:`bundle.lesions.rescore.CandidateRescorer`), called as
            ``rescorer(lesions, image, prob, affine)``; needs ``image``.
        image: the preprocessed image (*spatial) on the grid of ``prob``, for ``rescorer``.
        rescore_threshold: with a rescorer, the lowest rescored score kept
            (:py:func:`bundle.lesions.rescore.rescore_lesions`); None keeps every candidate, rescored and sorted by
            the new score (what a FROC sweep needs).
        return_label_map: also return the label map (``n`` on the ``n``-th lesion). Needs ``rescore_threshold``
            when a rescorer is given.

    Returns:
        the lesion records, or (records, label map) with ``return_label_map``.

    Raises:
        ValueError: when a rescorer comes without ``image``, or ``return_label_map`` with a rescorer and no
            ``rescore_threshold``.
    """
    found = find_lesions(prob, affine, tier_map=tier_map, mask=mask, return_label_map=return_label_map,
                         **dict(lesion_kwargs or {}))  # fmt: skip
    lesions, labels = found if return_label_map else (found, None)
    if rescorer is not None:
        if image is None:
            raise ValueError("a rescorer needs the preprocessed image.")
        if rescore_threshold is None:
            if return_label_map:
                raise ValueError("return_label_map needs a rescore_threshold: every candidate would be kept.")
            lesions = rescorer(lesions, image, prob, affine)
        else:
            lesions, labels = rescore_lesions(rescorer, lesions, image, prob, affine, rescore_threshold, labels)
    return (lesions, labels) if return_label_map else lesions
