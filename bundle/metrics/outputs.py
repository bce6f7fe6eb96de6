"""Glue between an ignite engine's per-case outputs and the lesion-level metrics.

A segmentation evaluator produces, per case, a lesion probability map and a label mask. The lesion metrics work on
lists of candidates and ground-truth lesions in world millimetres, so validation and evaluation need one function
that turns the former into the latter: the candidates come from :py:func:`bundle.lesions.extract.extract_lesions`,
the same extraction as the inference outputs, and the reference lesions from
:py:func:`bundle.lesions.reference.label_lesions`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from bundle.lesions.extract import extract_lesions
from bundle.lesions.reference import MERGE_GAP_MM, check_merge_gap, label_lesions

__all__ = ["LesionListsOutputTransform", "case_lesion_lists"]


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
            candidates rescored (:py:class:`bundle.lesions.rescore.CandidateRescorer`); needs ``image``. Every
            candidate is kept, rescored.
        image: the preprocessed image (1, *spatial) on the grid of ``pred``, for ``rescorer``.
        merge_gap_mm: label components this close to each other are one lesion
            (:py:func:`bundle.lesions.reference.label_lesions`).

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
    candidates = extract_lesions(
        prob_np, affine, {"threshold": candidate_threshold, "min_volume_mm3": min_volume_mm3}, mask=mask,
        rescorer=rescorer, image=image, rescore_threshold=None,
    )  # fmt: skip
    return candidates, label_lesions(truth_np, affine, merge_gap_mm)


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
        merge_gap_mm: see :py:func:`bundle.lesions.reference.label_lesions`. Defaults to
            :py:data:`bundle.lesions.reference.MERGE_GAP_MM`.
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

