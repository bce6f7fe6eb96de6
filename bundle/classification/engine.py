"""Run the classification train config from Python and predict with a trained classifier.

:func:`train_with_config` is what ``python -m monai.bundle run --config_file configs/classification/train.json``
does, with overrides, returning the trained network and its per-epoch history instead of exiting, so that
scripts (e.g. the k-fold comparison) train with exactly the bundle's recipe.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from monai.bundle import ConfigWorkflow
from monai.data import DataLoader, Dataset, PersistentDataset

from bundle.classification.handlers import EpochHistory

__all__ = ["DEFAULT_TRAIN_CONFIG", "train_with_config", "predict"]

logger = logging.getLogger(__name__)

DEFAULT_TRAIN_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "classification" / "train.json"
"""``configs/classification/train.json`` of the bundle root (the parent of ``bundle/``)."""


def train_with_config(
    config_file: str | os.PathLike | Sequence[str | os.PathLike] = DEFAULT_TRAIN_CONFIG,
    logging_file: str | bool = False,
    **override: Any,
) -> tuple[nn.Module, EpochHistory, dict[str, Any]]:
    """
    Initialise, run and finalise the train config through ``monai.bundle.ConfigWorkflow``.

    Args:
        config_file: the train config (or a list of configs merged in order). Defaults to
            ``configs/classification/train.json``.
        logging_file: passed to ``ConfigWorkflow``; False leaves the caller's logging alone. Defaults to False.
        override: config overrides by id, e.g. ``epochs=2``, ``split=[train, val]``,
            ``network_def={"_target_": ...}``, ``output_dir="runs/x"``.

    Returns:
        ``(network, history, info)``: the network after the last epoch (in eval mode), the
        :class:`~bundle.classification.handlers.EpochHistory` of the run and ``{"class_names", "output_dir",
        "epochs_run"}``.

    Raises:
        ValueError: when the config has no ``train#history`` handler.
    """
    files = [str(f) for f in config_file] if isinstance(config_file, (list, tuple)) else str(config_file)
    workflow = ConfigWorkflow(config_file=files, workflow_type="train", logging_file=logging_file, **override)
    workflow.initialize()
    workflow.run()
    parser = workflow.parser
    history = parser.get_parsed_content("train#history")
    if not isinstance(history, EpochHistory):
        raise ValueError(f"config_file must define train#history as an EpochHistory, got {type(history).__name__}.")
    network = parser.get_parsed_content("network")
    info = {
        "class_names": list(parser.get_parsed_content("class_names")),
        "output_dir": str(parser.get_parsed_content("output_dir")),
        "epochs_run": int(parser.get_parsed_content("train#trainer").state.epoch),
    }
    workflow.finalize()
    return network.eval(), history, info


def predict(
    network: nn.Module,
    datalist: Sequence[dict[str, Any]],
    transform: Callable,
    batch_size: int = 4,
    device: str | torch.device | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """
    Class probabilities of a classifier on a datalist (eval mode, no gradients).

    Args:
        network: the classifier, (B, C, H, W) -> (B, num_classes) logits.
        datalist: items ``{"image": path, "label": int (optional), ...}``.
        transform: deterministic preprocessing, e.g. ``classification_transforms(train=False)``.
        batch_size: images per forward pass. Defaults to 4.
        device: where to run; None uses the network's device. Defaults to None.
        cache_dir: if given, a ``PersistentDataset`` cache of the preprocessed images (one folder per distinct
            ``transform``). Defaults to None (no cache).

    Returns:
        ``{"probs": (N, num_classes) float array, "labels": (N,) int array or None, "images": (N, C, H, W) tensor
        (CPU, the network inputs), "paths": list of str}``.
    """
    device = next(network.parameters()).device if device is None else torch.device(device)
    dataset = (
        Dataset(list(datalist), transform=transform) if cache_dir is None
        else PersistentDataset(list(datalist), transform=transform, cache_dir=cache_dir)
    )
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)
    probs, labels, images, paths = [], [], [], []
    was_training = network.training
    network.eval()
    try:
        with torch.no_grad():
            for batch in loader:
                x = torch.as_tensor(batch["image"]).float()
                probs.append(torch.softmax(network(x.to(device)).float(), dim=1).cpu().numpy())
                images.append(x.cpu())
                if "label" in batch:
                    labels.extend(int(v) for v in torch.as_tensor(batch["label"]).reshape(-1).tolist())
                paths.extend(str(p) for p in batch.get("path", [""] * x.shape[0]))
    finally:
        network.train(was_training)
    return {
        "probs": np.concatenate(probs) if probs else np.zeros((0, 0)),
        "labels": np.asarray(labels, dtype=int) if len(labels) == sum(len(p) for p in probs) and labels else None,
        "images": torch.cat(images) if images else torch.zeros(0),
        "paths": paths,
    }
