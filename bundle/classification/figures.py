"""Figures for image-level classification: a prediction grid and Grad-CAM heat maps (``monai.visualize.GradCAM``).

The grid follows the seed project's figure: one image per panel, titled with the true and the predicted label,
green when right and red when wrong.
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from monai.visualize import GradCAM
from PIL import Image

__all__ = ["gradcam_maps", "prediction_title", "plot_prediction_grid", "plot_gradcam_grid"]

logger = logging.getLogger(__name__)


def _display(image: np.ndarray | torch.Tensor) -> np.ndarray:
    """(C, H, W) or (H, W) -> (H, W) grayscale in [0, 1] for display (first channel: inputs are gray replicas)."""
    a = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    a = a[0] if a.ndim == 3 else a
    lo, hi = float(a.min()), float(a.max())
    return (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)


def _scale_per_image(x: torch.Tensor) -> torch.Tensor:
    """Min-max scale every map of (B, 1, H, W) to [0, 1], high activation -> 1 (MONAI's default flips it)."""
    flat = x.reshape(x.shape[0], -1)  # (B, H * W)
    lo, hi = flat.min(1, keepdim=True).values, flat.max(1, keepdim=True).values
    return ((flat - lo) / (hi - lo).clamp_min(1e-12)).reshape(x.shape)


def gradcam_maps(
    network: nn.Module, images: torch.Tensor, target_layer: str | None = None, class_idx: int | None = None
) -> np.ndarray:
    """
    Grad-CAM maps of a classifier, upsampled to the input size and scaled to [0, 1] per image.

    Args:
        network: the classifier, (B, C, H, W) -> (B, num_classes); left in the train/eval mode it had.
        images: input batch (B, C, H, W), as fed to ``network``.
        target_layer: dotted name of the layer to explain; None uses ``network.cam_layer``. Defaults to None.
        class_idx: class to explain; None explains each image's predicted class. Defaults to None.

    Returns:
        float array (B, H, W) in [0, 1], 1 where the class evidence is strongest (MONAI's default
        post-processing maps the maximum to 0; a per-image min-max scaling is used instead).

    Raises:
        ValueError: when no ``target_layer`` is given and ``network`` has no ``cam_layer``.
    """
    layer = target_layer if target_layer is not None else getattr(network, "cam_layer", "")
    if not layer:
        raise ValueError("target_layer must be given for a network without a 'cam_layer' attribute, got None.")
    was_training = network.training
    cam = GradCAM(nn_module=network, target_layers=layer, postprocessing=_scale_per_image)
    x = images.detach().clone().float().requires_grad_(True)  # gradients reach the layer even if it is frozen
    try:
        with torch.enable_grad():
            maps = cam(x, class_idx=class_idx)  # (B, 1, H, W) in [0, 1]
    finally:
        network.train(was_training)
        network.zero_grad(set_to_none=True)
    return maps[:, 0].detach().cpu().numpy().astype(np.float32)


def _save_png(fig, path: str | os.PathLike, dpi: int) -> Path:
    """Save a figure as an optimised RGB PNG (no palette: a 256-colour palette tints gray images)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=dpi, format="png")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.open(buffer).convert("RGB").save(out, optimize=True)
    return out


def _grid(n: int, n_columns: int) -> tuple[int, int]:
    columns = max(1, min(n_columns, n))
    return int(np.ceil(n / columns)), columns


def prediction_title(
    y_true: int | None, y_pred: int, class_names: Sequence[str], prob: float | None = None
) -> tuple[str, str]:
    """
    Panel title and colour: ``"true: a\npred: b 0.87"``, green when right, red when wrong, black without a label.
    """
    predicted = class_names[y_pred] + (f" {prob:.2f}" if prob is not None else "")
    if y_true is None:
        return f"pred: {predicted}", "black"
    return f"true: {class_names[y_true]}\npred: {predicted}", "green" if y_true == y_pred else "red"


def plot_prediction_grid(
    images: Sequence[np.ndarray | torch.Tensor],
    y_true: Sequence[int] | None,
    y_pred: Sequence[int],
    class_names: Sequence[str],
    path: str | os.PathLike,
    probs: Sequence[float] | None = None,
    n_columns: int = 6,
    panel_inches: float = 1.6,
    title: str | None = None,
    dpi: int = 100,
) -> Path:
    """
    Save a grid of images titled ``true / predicted``, green when right and red when wrong (black without labels).

    Args:
        images: (C, H, W) or (H, W) images.
        y_true: true class indices, or None when unknown.
        y_pred: predicted class indices.
        class_names: names of the classes.
        path: the PNG file to write (folders are created).
        probs: optional probability of the predicted class, shown in the title.
        n_columns: panels per row. Defaults to 6.
        panel_inches: panel size in inches. Defaults to 1.6.
        title: optional figure title.
        dpi: resolution of the PNG. Defaults to 100.

    Returns:
        the written path.

    Raises:
        ValueError: when the sequences have different lengths or are empty.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(images)
    lengths_ok = len(y_pred) == n and all(v is None or len(v) == n for v in (y_true, probs))
    if n == 0 or not lengths_ok:
        raise ValueError(
            f"images, y_pred (and y_true, probs) must be non-empty with equal lengths, got {n}, {len(y_pred)}, "
            f"{None if y_true is None else len(y_true)}, {None if probs is None else len(probs)}."
        )
    rows, columns = _grid(n, n_columns)
    fig, axes = plt.subplots(
        rows, columns, figsize=(columns * panel_inches, rows * (panel_inches + 0.4) + 0.3), squeeze=False,
        layout="constrained",
    )
    for ax in axes.ravel():
        ax.axis("off")
    for i in range(n):
        ax = axes.ravel()[i]
        ax.imshow(_display(images[i]), cmap="gray", vmin=0, vmax=1)
        text, colour = prediction_title(
            None if y_true is None else int(y_true[i]), int(y_pred[i]), class_names,
            None if probs is None else float(probs[i]),
        )
        ax.set_title(text, color=colour, fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    out = _save_png(fig, path, dpi)
    plt.close(fig)
    return out


def plot_gradcam_grid(
    images: Sequence[np.ndarray | torch.Tensor],
    maps: Sequence[Sequence[np.ndarray]],
    row_labels: Sequence[str],
    path: str | os.PathLike,
    column_titles: Sequence[str] | None = None,
    panel_inches: float = 1.5,
    alpha: float = 0.45,
    dpi: int = 80,
) -> Path:
    """
    Save Grad-CAM overlays: one row per network (``maps[r][c]`` over ``images[c]``), a first row of the inputs.

    Args:
        images: the inputs, (C, H, W) or (H, W).
        maps: per row, one (H, W) map in [0, 1] per image (None leaves the panel blank).
        row_labels: one label per row of ``maps`` (e.g. network names).
        path: the PNG file to write.
        column_titles: optional title per image (e.g. the true class).
        panel_inches: panel size in inches. Defaults to 1.5.
        alpha: opacity of the heat map. Defaults to 0.45.
        dpi: resolution of the PNG (heat maps compress poorly). Defaults to 80.

    Returns:
        the written path.

    Raises:
        ValueError: when the numbers of rows, labels and images do not match.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(images)
    if n == 0 or len(maps) != len(row_labels) or any(len(row) != n for row in maps):
        raise ValueError(
            f"maps must hold len(row_labels)={len(row_labels)} rows of len(images)={n} maps, got "
            f"{[len(row) for row in maps]}."
        )
    rows = len(maps) + 1
    fig, axes = plt.subplots(rows, n, figsize=(n * panel_inches, rows * panel_inches + 0.3), squeeze=False,
                             layout="constrained")
    for c in range(n):
        base = _display(images[c])
        axes[0, c].imshow(base, cmap="gray", vmin=0, vmax=1)
        if column_titles is not None:
            axes[0, c].set_title(str(column_titles[c]), fontsize=7)
        for r, row in enumerate(maps, start=1):
            axes[r, c].imshow(base, cmap="gray", vmin=0, vmax=1)
            if row[c] is not None:
                axes[r, c].imshow(np.asarray(row[c]), cmap="jet", alpha=alpha, vmin=0, vmax=1)
    for r in range(rows):
        for c in range(n):
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
        axes[r, 0].set_ylabel("input" if r == 0 else str(row_labels[r - 1]), fontsize=7)
    out = _save_png(fig, path, dpi)
    plt.close(fig)
    return out
