"""How well the router's screen sorts the sliding windows of held-out scans, as the product runs it.

Every window of MONAI's sliding-window grid (the inferer's ``roi_size`` and ``overlap``) over each preprocessed
held-out case is screened when it holds a voxel of the lung candidate mask (windows without one are skipped by the
mask gate and never screened). A window is positive when it holds a lesion voxel. Reported: the screen's ROC AUC
(and of its edge and semantic terms), the share of screened windows in each tier, the positive windows put in
LOW, and the lesions that routing would lose (no window that covers the lesion's centre is above LOW).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import ndimage

from bundle.engines.pretrained import load_pretrained
from bundle.experiments.reevaluate import _parser
from bundle.inferers.windows import sliding_window_slices
from bundle.io.atomic import atomic_write_text
from bundle.networks.nets.screen_calibration import roc_auc

logger = logging.getLogger(__name__)

__all__ = ["screen_case", "evaluate_screen"]


def screen_case(
    network: torch.nn.Module,
    image: torch.Tensor,
    label: torch.Tensor,
    mask: torch.Tensor,
    roi: Sequence[int],
    overlap: float = 0.25,
    batch_size: int = 8,
) -> dict[str, Any]:
    """Screen the mask-gated sliding windows of one preprocessed case.

    Args:
        network: eval-mode network with ``screen_components``.
        image: (C, *S) preprocessed image; label and mask: (1, *S).
        roi: window size; overlap: the inferer's overlap.
        batch_size: windows per screening pass.

    Returns:
        ``edge``, ``semantic`` (arrays over the gated windows), ``positive`` (bool array), ``num_windows`` (all
        windows of the grid), ``starts`` / ``stops`` of the gated windows (voxels, unpadded), ``lesion_centres``.
    """
    spatial = tuple(int(s) for s in image.shape[1:])
    roi = tuple(int(r) for r in roi)
    # MONAI pads a volume smaller than the window symmetrically; do the same so the windows match the inferer
    pad = [max(r - s, 0) for r, s in zip(roi, spatial)]
    widths = [(0, 0)] + [(p // 2, p - p // 2) for p in pad]
    image_p, label_p, mask_p = (torch.as_tensor(np.pad(np.asarray(t), widths)) for t in (image, label, mask))
    padded = tuple(image_p.shape[1:])
    slices = sliding_window_slices(padded, roi, overlap)
    gated = [s for s in slices if bool(mask_p[(0, *s)].any())]
    edges, semantics, positive = [], [], []
    with torch.no_grad():
        for start in range(0, len(gated), batch_size):
            chunk = gated[start : start + batch_size]
            windows = torch.stack([image_p[(slice(None), *s)] for s in chunk]).float()
            e, m = network.screen_components(windows)
            edges.append(e.numpy())
            semantics.append(m.numpy())
            positive += [bool(label_p[(0, *s)].any()) for s in chunk]
    components, n = ndimage.label(np.asarray(label_p[0]) > 0)
    centres = ndimage.center_of_mass(components > 0, components, range(1, n + 1)) if n else []
    return {
        "edge": np.concatenate(edges) if edges else np.zeros(0),
        "semantic": np.concatenate(semantics) if semantics else np.zeros(0),
        "positive": np.array(positive, dtype=bool),
        "num_windows": len(slices),
        "starts": np.array([[sl.start for sl in s] for s in gated]).reshape(-1, len(roi)),
        "stops": np.array([[sl.stop for sl in s] for s in gated]).reshape(-1, len(roi)),
        "lesion_centres": np.array(centres).reshape(-1, len(roi)),
    }


def evaluate_screen(
    config_files: Sequence[str],
    ckpt: str,
    overrides: dict[str, Any] | None = None,
    output: str | None = None,
    edge_weight: float = 0.6,
    semantic_weight: float = 0.4,
    low: float = 0.3,
    high: float = 0.6,
) -> dict[str, Any]:
    """Screen every held-out case of ``validate#dataset`` (preprocessing and lung mask of the evaluation config).

    Args:
        config_files: e.g. ``["configs/train.json", "configs/evaluate.json"]``.
        ckpt: the weights to screen with (loaded strictly).
        overrides: config overrides (e.g. a ``network_def#...`` layout for older weights).
        output: a JSON file for the results (written atomically); None: not written.
        edge_weight, semantic_weight, low, high: the router's score and thresholds.

    Returns:
        ``auc``, ``auc_edge``, ``auc_semantic``, ``windows`` (all), ``screened``, ``positive``, ``tier_share``
        (LOW / MEDIUM / HIGH over the screened windows), ``positive_in_low``, ``lesions``, ``lesions_lost``.
    """
    parser = _parser(config_files, overrides)
    network = parser.get_parsed_content("network_def")
    report = load_pretrained(network, ckpt, strict=True)
    network.eval()
    roi = parser.get_parsed_content("patch_size")
    dataset = parser.get_parsed_content("validate#dataset")
    edge, semantic, positive, n_windows, n_lesions, lost = [], [], [], 0, 0, 0
    for index in range(len(dataset)):
        item = dataset[index]
        case = screen_case(network, item["image"], item["label"], item["lung_mask"], roi)
        score = edge_weight * case["edge"] + semantic_weight * case["semantic"]
        for centre in case["lesion_centres"]:
            covers = np.all((case["starts"] <= centre) & (centre < case["stops"]), axis=1)
            n_lesions += 1
            lost += int(not np.any(covers & (score > low)))
        edge.append(case["edge"])
        semantic.append(case["semantic"])
        positive.append(case["positive"])
        n_windows += case["num_windows"]
        logger.info("case %d/%d: %d windows screened, %d with a lesion", index + 1, len(dataset),
                    len(case["positive"]), int(case["positive"].sum()))
    edge_a, semantic_a, positive_a = np.concatenate(edge), np.concatenate(semantic), np.concatenate(positive)
    score = edge_weight * edge_a + semantic_weight * semantic_a
    tiers = {"low": score <= low, "high": score >= high}
    tiers["medium"] = ~tiers["low"] & ~tiers["high"]
    result = {
        "ckpt": ckpt,
        "load": {k: len(v) if isinstance(v, list) else v for k, v in dict(report or {}).items()},
        "cases": len(dataset),
        "windows": n_windows,
        "screened": int(len(score)),
        "positive": int(positive_a.sum()),
        "auc": roc_auc(score, positive_a),
        "auc_edge": roc_auc(edge_a, positive_a),
        "auc_semantic": roc_auc(semantic_a, positive_a),
        "tier_share": {k: float(v.mean()) for k, v in tiers.items()},
        "low_share_of_all_windows": float((tiers["low"].sum() + n_windows - len(score)) / max(n_windows, 1)),
        "positive_in_low": int((tiers["low"] & positive_a).sum()),
        "lesions": n_lesions,
        "lesions_lost": lost,
    }
    if output:
        atomic_write_text(Path(output), json.dumps(result, indent=2) + "\n")
    return result
