"""The source paper's comparison set that is not a segmentation network: MONAI's RetinaNet detectors, trained on the
bundle's patches and scored with the bundle's lesion metrics (the segmentation baselines, MONAI's UNet, BasicUNet,
SegResNet and SwinUNETR, are variants of :py:mod:`bundle.experiments.ablation`)."""

from __future__ import annotations

from .retinanet import (
    DETECTORS,
    EVALUATE_CONFIG_FILES,
    TRAIN_CONFIG_FILES,
    boxes_from_label,
    boxes_to_candidates,
    build_detector,
    evaluate_detector,
    read_overrides_file,
    train_detector,
)

__all__ = [
    "DETECTORS",
    "EVALUATE_CONFIG_FILES",
    "TRAIN_CONFIG_FILES",
    "boxes_from_label",
    "boxes_to_candidates",
    "build_detector",
    "evaluate_detector",
    "read_overrides_file",
    "train_detector",
]
