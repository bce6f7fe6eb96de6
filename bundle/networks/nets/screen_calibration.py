"""Calibration of ``GhostCAUNet``'s prototype screen from training windows, and the window-level ROC AUC it reports.

``GhostCAUNet.calibrate_screening`` calls :func:`calibrate_prototype_screen`; the screen evaluation
(``bundle.experiments.screen_eval``) uses :func:`roc_auc`.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from monai.networks.layers.factories import Pool
from scipy.stats import mannwhitneyu

if TYPE_CHECKING:
    from bundle.networks.nets.ghost_ca_unet import GhostCAUNet

__all__ = ["calibrate_prototype_screen", "roc_auc"]

logger = logging.getLogger(__name__)


def calibrate_prototype_screen(
    net: GhostCAUNet, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 4
) -> dict[str, float]:
    """The work of :py:meth:`GhostCAUNet.calibrate_screening` (see there)."""
    n_dims = net.spatial_dims + 2
    if images.dim() != n_dims or images.shape[1] != net.in_channels:
        raise ValueError(
            f"images must have shape (N, {net.in_channels}, *roi) with {net.spatial_dims} spatial dims, "
            f"got images.shape={tuple(images.shape)}."
        )
    if labels.shape != (images.shape[0], 1, *images.shape[2:]):
        raise ValueError(
            f"labels must have shape (N, 1, *roi) = {(images.shape[0], 1, *images.shape[2:])}, "
            f"got labels.shape={tuple(labels.shape)}."
        )
    if not bool((labels > 0).any()):
        raise ValueError("labels must contain at least one lesion voxel (> 0) to set the prototype, got none.")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
        raise ValueError(f"batch_size must be a positive int, got batch_size={batch_size!r}.")
    was_training = net.training
    net.eval()
    device, dtype = net.prototype.device, net.prototype.dtype
    adaptive_max = Pool[Pool.ADAPTIVEMAX, net.spatial_dims]
    try:
        with torch.no_grad():
            raw_edges, sum_all, sum_lesion, n_all, n_lesion = [], 0.0, 0.0, 0, 0
            for start in range(0, images.shape[0] if not net.learned_screen else 0, batch_size):
                x = images[start : start + batch_size].to(device=device, dtype=dtype)
                y = (labels[start : start + batch_size] > 0).to(device=device, dtype=dtype)
                net._check_screen_size(x)
                feats = net._encode(net.screen_pool(x))
                raw_edges.append(net._edge_raw(feats[0]))
                deep = feats[-1].flatten(2)  # (b, C, N)
                mask = adaptive_max(tuple(feats[-1].shape[2:]))(y).flatten(2)  # (b, 1, N): covers a lesion voxel
                sum_all = sum_all + deep.sum(dim=(0, 2))
                n_all += deep.shape[0] * deep.shape[2]
                sum_lesion = sum_lesion + (deep * mask).sum(dim=(0, 2))
                n_lesion += int(mask.sum())
            if not net.learned_screen:
                center = sum_all / n_all
                net.feature_center.copy_(center)
                net.prototype.copy_(F.normalize(sum_lesion / max(n_lesion, 1) - center, dim=0))
                net.edge_scale.copy_(torch.cat(raw_edges).median().clamp_min(1e-8))
            edges, semantics = [], []
            for start in range(0, images.shape[0], batch_size):
                e, s = net.screen_components(images[start : start + batch_size].to(device=device, dtype=dtype))
                edges.append(e)
                semantics.append(s)
    finally:
        net.train(was_training)
    edge = torch.cat(edges).cpu().numpy()
    semantic = torch.cat(semantics).cpu().numpy()
    score = net.edge_weight * edge + net.semantic_weight * semantic
    positive = (labels > 0).flatten(1).any(dim=1).cpu().numpy()
    stats = {
        "n_windows": float(images.shape[0]),
        "n_positive": float(positive.sum()),
        "edge_scale": float(net.edge_scale),
        "auc": roc_auc(score, positive),
        "auc_edge": roc_auc(edge, positive),
        "auc_semantic": roc_auc(semantic, positive),
        "mean_score_positive": float(score[positive].mean()) if positive.any() else math.nan,
        "mean_score_negative": float(score[~positive].mean()) if (~positive).any() else math.nan,
    }
    logger.info("screening calibrated: %s", stats)
    return stats


def roc_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """ROC AUC = Mann-Whitney U / (n_pos * n_neg), ties counted 1/2; NaN when a class is missing."""
    pos, neg = scores[positive], scores[~positive]
    if len(pos) == 0 or len(neg) == 0:
        logger.warning("ROC AUC undefined: %d positive and %d negative windows.", len(pos), len(neg))
        return math.nan
    return float(mannwhitneyu(pos, neg).statistic / (len(pos) * len(neg)))
