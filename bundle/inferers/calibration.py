"""Calibration of the network's screening pass (the router's suspicion score) from training data.

The screening score ``0.6 * edge + 0.4 * semantic`` is only meaningful once the lesion prototype and the edge scale
of the network are set from data. This module samples training windows the way the sliding window sees them
(windows with lesions and windows without, inside the body) and hands them to the network's own
``calibrate_screening``. It runs after training, from ``configs/train.json``'s ``finalize`` step, so the shipped
``models/model.pt`` carries calibrated buffers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from monai.transforms import RandCropByPosNegLabel

logger = logging.getLogger(__name__)

__all__ = ["sample_windows", "calibrate_screening_from_data"]


def sample_windows(
    cases: Sequence[dict[str, Any]],
    transform: Callable[[dict[str, Any]], dict[str, Any]],
    roi_size: Sequence[int],
    windows_per_case: int = 8,
    pos_fraction: float = 0.5,
    image_threshold: float = 0.05,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample fixed-size windows with and without lesions from preprocessed cases.

    Args:
        cases: datalist entries with ``image`` and ``label`` keys.
        transform: deterministic preprocessing mapping an entry to tensors ``image`` (C, *spatial) and
            ``label`` (1, *spatial).
        roi_size: window size, the inferer's ``roi_size``.
        windows_per_case: windows drawn from each case.
        pos_fraction: share of windows centred on lesion voxels; the others are centred on voxels whose image value
            exceeds ``image_threshold`` (inside the body: air outside the patient is trivially low-risk).
        image_threshold: threshold on the normalised image for negative window centres.
        seed: seed of the window sampler.

    Returns:
        images (N, C, *roi_size) and labels (N, 1, *roi_size).

    Raises:
        ValueError: when ``cases`` is empty, ``windows_per_case`` < 1 or ``pos_fraction`` is outside [0, 1].
    """
    if len(cases) == 0:
        raise ValueError("cases must not be empty, got 0 cases.")
    if windows_per_case < 1:
        raise ValueError(f"windows_per_case must be >= 1, got windows_per_case={windows_per_case}.")
    if not 0.0 <= pos_fraction <= 1.0:
        raise ValueError(f"pos_fraction must be in [0, 1], got pos_fraction={pos_fraction}.")
    cropper = RandCropByPosNegLabel(
        spatial_size=tuple(roi_size),
        pos=pos_fraction,
        neg=1.0 - pos_fraction,
        num_samples=windows_per_case,
        image_threshold=image_threshold,
        allow_smaller=False,
    )
    cropper.set_random_state(seed=seed)
    images, labels = [], []
    for case in cases:
        item = transform(dict(case))
        image, label = torch.as_tensor(item["image"]), torch.as_tensor(item["label"])
        # pad small cases up to the window so every sample has the same shape
        pad = [max(int(r) - int(s), 0) for r, s in zip(roi_size, image.shape[1:])]
        if any(pad):
            widths = [(0, 0)] + [(p // 2, p - p // 2) for p in pad]
            image = torch.as_tensor(np.pad(image.numpy(), widths))
            label = torch.as_tensor(np.pad(label.numpy(), widths))
        # draw the centres once, then crop image and label at the same places
        image_crops = cropper(image, label=label, image=image, randomize=True)
        label_crops = cropper(label, label=label, image=image, randomize=False)
        images += [torch.as_tensor(c) for c in image_crops]
        labels += [torch.as_tensor(c) for c in label_crops]
    return torch.stack(images).float(), torch.stack(labels).float()


def calibrate_screening_from_data(
    network: torch.nn.Module,
    cases: Sequence[dict[str, Any]],
    transform: Callable[[dict[str, Any]], dict[str, Any]],
    roi_size: Sequence[int],
    windows_per_case: int = 8,
    pos_fraction: float = 0.5,
    seed: int = 0,
    batch_device: torch.device | str = "cpu",
) -> dict[str, float]:
    """Sample windows from ``cases`` and calibrate ``network``'s screening pass on them.

    Args:
        network: a network with ``calibrate_screening(images, labels) -> dict`` (``bundle.networks.GhostCAUNet``).
        cases, transform, roi_size, windows_per_case, pos_fraction, seed: see :func:`sample_windows`.
        batch_device: device the windows are moved to.

    Returns:
        the diagnostics returned by ``network.calibrate_screening`` plus the number of windows used.

    Raises:
        TypeError: when ``network`` has no ``calibrate_screening`` method.
    """
    target = getattr(network, "module", network)  # unwrap DistributedDataParallel
    if not hasattr(target, "calibrate_screening"):
        raise TypeError(f"network {type(target).__name__} has no calibrate_screening method; use GhostCAUNet.")
    images, labels = sample_windows(cases, transform, roi_size, windows_per_case, pos_fraction, seed=seed)
    diagnostics = dict(target.calibrate_screening(images.to(batch_device), labels.to(batch_device)))
    diagnostics["windows"] = float(images.shape[0])
    diagnostics["windows_with_lesion"] = float((labels.flatten(1).amax(1) > 0).sum())
    logger.info("screening calibrated: %s", {k: round(v, 4) for k, v in diagnostics.items()})
    return diagnostics
