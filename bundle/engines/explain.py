"""Explanations of detected lesions: a Grad-CAM map (MONAI ``monai.visualize.GradCAM``) and an input-gradient map
of the lesion score of one detection, rendered next to the case's ``overlay.png`` as ``explain_<k>.png``
(:py:func:`explain_outputs`, the optional ``explain`` step of ``configs/inference.json``).

The segmentation network is wrapped so that Grad-CAM sees a two-class "classifier": its class-1 score is the mean
lesion-minus-background logit inside a ball of the detection's radius around its centre (class 0 is the
negative). Grad-CAM then weights the target layer's channels by the mean gradient of that score and keeps the
positive part, upsampled to the window and scaled to [0, 1] per window (1 = strongest; MONAI's default
normaliser would flip the map). The input gradient of the same score (MONAI ``VanillaGrad``) is rendered beside it.
"""

from __future__ import annotations

import io
import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from monai.visualize import GradCAM, VanillaGrad

from bundle.inferers.windows import crop_window
from bundle.io.atomic import atomic_write_bytes
from bundle.lesions.geometry import world_to_voxel

__all__ = [
    "LesionScore", "ball_mask", "explain_case", "explain_outputs", "lesion_gradcam", "read_case_outputs",
    "render_explanation",
]

logger = logging.getLogger(__name__)


class LesionScore(nn.Module):
    """
    Wrap a segmentation network as a two-class scorer for CAM methods: ``(B, C, *roi) -> (B, 2)`` with column 1 the
    mean of ``logit[1] - logit[0]`` inside ``mask`` and column 0 its negative.

    Args:
        net: segmentation network, (B, C, *roi) -> (B, 2, *roi) logits.
        mask: (1, 1, *roi) or (B, 1, *roi) target region; nonzero is inside.
        enhancement: passed to ``net`` (GhostCAUNet: ``"full"`` or ``"basic"``). Defaults to ``"full"``.

    Raises:
        ValueError: when ``mask`` is empty.
    """

    def __init__(self, net: nn.Module, mask: torch.Tensor, enhancement: str = "full") -> None:
        super().__init__()
        if not bool((mask > 0).any()):
            raise ValueError("mask must contain at least one voxel of the target region, got an empty mask.")
        self.net = net
        self.enhancement = enhancement
        self.register_buffer("mask", (mask > 0).float(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.net(x, enhancement=self.enhancement).float()  # (B, 2, *roi)
        margin = (logits[:, 1:2] - logits[:, 0:1]) * self.mask  # (B, 1, *roi)
        score = margin.flatten(1).sum(1) / self.mask.flatten(1).sum(1)  # (B,)
        return torch.stack([-score, score], dim=1)  # (B, 2)


def _scale_per_window(cam: torch.Tensor) -> torch.Tensor:
    """
    Min-max scale every map of (B, 1, *roi) to [0, 1] with the highest activation at 1. MONAI's
    ``default_normalizer`` maps (min, max) to (1, 0), i.e. it flips the map, so it is not used.
    """
    flat = cam.reshape(cam.shape[0], -1)  # (B, prod(roi))
    lo, hi = flat.min(1, keepdim=True).values, flat.max(1, keepdim=True).values
    return ((flat - lo) / (hi - lo).clamp_min(1e-12)).reshape(cam.shape)


def _scale_saliency(grad: np.ndarray, quantile: float = 0.995) -> np.ndarray:
    """``|grad|`` divided by its ``quantile`` and clipped to [0, 1] (raw input gradients are spiky); zeros stay 0."""
    magnitude = np.abs(grad)
    top = float(np.quantile(magnitude, quantile))
    top = top if top > 0 else float(magnitude.max())
    return np.clip(magnitude / top, 0.0, 1.0) if top > 0 else magnitude


def ball_mask(shape: Sequence[int], center: Sequence[float], radius_mm: float, spacing: Sequence[float]) -> np.ndarray:
    """
    Bool array of ``shape``: voxels within ``radius_mm`` of ``center`` (voxel coordinates); at least the voxel
    nearest to the centre (clamped into the array).

    Args:
        shape: array shape.
        center: centre in voxels.
        radius_mm: radius in mm.
        spacing: voxel size in mm per axis.
    """
    grids = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    d2 = sum(((g - c) * s) ** 2 for g, c, s in zip(grids, center, spacing))
    mask = d2 <= float(radius_mm) ** 2
    nearest = tuple(int(min(max(round(c), 0), n - 1)) for c, n in zip(center, shape))
    mask[nearest] = True
    return mask


def lesion_gradcam(
    net: nn.Module,
    image: torch.Tensor,
    center_voxel: Sequence[float],
    radius_mm: float,
    spacing: Sequence[float],
    roi: Sequence[int],
    target_layer: str = "net.decoder.1",
) -> dict[str, Any]:
    """
    Grad-CAM of one detection in the ``roi`` window centred on it.

    Args:
        net: segmentation network (eval mode is set by MONAI's CAM and restored).
        image: (C, *S) preprocessed image.
        center_voxel: the detection's centre in the voxels of ``image``.
        radius_mm: radius of the target ball (half the detection's diameter; at least one voxel is used).
        spacing: voxel size of ``image`` in mm.
        roi: window size (the network's inference window).
        target_layer: layer of the :class:`LesionScore` wrapper whose activations Grad-CAM weights.
            Defaults to ``"net.decoder.1"`` (GhostCAUNet's half-resolution decoder stage). The last stage,
            ``"net.decoder.2"``, feeds the 1x1 head directly, so its Grad-CAM is only ``relu(margin - bias)``
            of the output itself (all zero when the head's bias exceeds the margin everywhere).

    Returns:
        ``{"window": (C, *roi) tensor, "cam": (*roi) numpy in [0, 1], "saliency": (*roi) numpy in [0, 1] (input
        gradient magnitude of the score, MONAI ``VanillaGrad``, over its 99.5th percentile), "probability":
        (*roi) numpy (softmax lesion probability), "target": (*roi) bool, "center": centre in window voxels,
        "score": lesion score}``.

    Raises:
        ValueError: when ``net`` has no parameters (e.g. the ONNX Runtime backend) or ``target_layer`` is not a
            layer of the wrapper.
    """
    params = list(net.parameters())
    if not params:
        raise ValueError(f"net must be a PyTorch network with parameters (Grad-CAM needs gradients), got "
                         f"{type(net).__name__}; use the 'torch' backend.")
    device = params[0].device
    window, start = crop_window(image, center_voxel, roi)
    center = [float(c) - s for c, s in zip(center_voxel, start)]
    target = ball_mask(tuple(roi), center, radius_mm, spacing)
    model = LesionScore(net, torch.from_numpy(target)[None, None].to(device))
    if target_layer not in dict(model.named_modules()):
        raise ValueError(f"target_layer must name a layer of the wrapped network, got target_layer={target_layer!r}.")
    x = window[None].float().to(device)  # (1, C, *roi)
    cam = GradCAM(nn_module=model, target_layers=target_layer, postprocessing=_scale_per_window)
    cam = cam(x, class_idx=1)  # (1, 1, *roi) in [0, 1], 1 where the weighted activation is highest
    saliency = VanillaGrad(model)(x.clone(), index=1)  # (1, C, *roi): d score / d input
    with torch.no_grad():
        logits = net(x).float()
        prob = torch.softmax(logits, dim=1)[0, 1]
        score = model(x)[0, 1]
    net.zero_grad(set_to_none=True)  # the CAM and saliency passes leave parameter gradients behind
    return {
        "window": window,
        "cam": cam[0, 0].detach().cpu().numpy(),
        "saliency": _scale_saliency(saliency[0].detach().abs().amax(0).cpu().numpy()),
        "probability": prob.cpu().numpy(),
        "target": target,
        "layer": target_layer.removeprefix("net."),
        "center": center,
        "score": float(score),
    }


def _axial(volume: np.ndarray, k: int) -> np.ndarray:
    """Axial slice ``k`` of an RAS (x, y, z) array in radiological display: anterior up, patient right on the left."""
    return volume[:, :, k].T[::-1, ::-1]


def render_explanation(result: Mapping[str, Any], title: str = "", spacing: Sequence[float] = (1.0, 1.0, 1.0)) -> bytes:
    """
    PNG of the axial slice through the detection: the window, the Grad-CAM map over it, the input-gradient
    saliency (when the result has one) and the network's lesion probability, each with the target ball's outline.

    Args:
        result: :py:func:`lesion_gradcam` output (3D, RAS window).
        title: figure title.
        spacing: voxel size in mm (sets the pixel aspect). Defaults to 1 mm.

    Raises:
        ValueError: when the window is not 3D.
    """
    window = np.asarray(result["window"][0], dtype=np.float32)
    if window.ndim != 3:
        raise ValueError(f"render_explanation needs a 3D window, got shape {window.shape}.")
    k = int(min(max(round(result["center"][2]), 0), window.shape[2] - 1))
    image, cam = _axial(window, k), _axial(np.asarray(result["cam"]), k)
    prob, target = _axial(np.asarray(result["probability"]), k), _axial(np.asarray(result["target"]), k)
    aspect = float(spacing[1]) / float(spacing[0])
    panels = [("image (window [0, 1])", None), (f"Grad-CAM ({result.get('layer', 'target layer')})", cam)]
    if "saliency" in result:
        panels.append(("input gradient |d score / d x|", _axial(np.asarray(result["saliency"]), k)))
    panels.append(("lesion probability", prob))
    fig = Figure(figsize=(3.2 * len(panels), 3.6), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    for n, (name, over) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), n + 1)
        ax.imshow(image, cmap="gray", vmin=0.0, vmax=1.0, aspect=aspect)
        if over is not None:
            shown = ax.imshow(over, cmap="jet", alpha=0.45, vmin=0.0, vmax=1.0, aspect=aspect)
            fig.colorbar(shown, ax=ax, fraction=0.046)
        if target.any() and min(target.shape) > 1:
            ax.contour(target.astype(np.float32), levels=[0.5], colors="white", linewidths=0.8)
        ax.set_title(name, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"{title} (slice {k} of the window, lesion score {result['score']:.2f})", fontsize=10)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def read_case_outputs(case_dir: Path, preprocessing: Callable) -> tuple[dict, torch.Tensor, np.ndarray]:
    """``lesions.json`` of an inference case folder and the image it names, preprocessed: (found, (C, *S), affine)."""
    path = case_dir / "lesions.json"
    try:
        found = json.loads(path.read_text())
        image_path, _ = found["image"], found["lesions"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path}: cannot read the lesions file ({type(e).__name__}: {e}).") from e
    try:
        data = preprocessing({"image": image_path})
    except Exception as e:  # MONAI wraps reader errors in RuntimeError
        raise ValueError(f"{image_path}: cannot read or preprocess the image ({' '.join(str(e).split())[:300]}).") from e
    image = torch.as_tensor(data["image"]).float()
    return found, image, np.asarray(data["image"].affine, dtype=np.float64)


def explain_case(
    net: nn.Module, preprocessing: Callable, case_dir: str | os.PathLike, roi: Sequence[int] = (64, 64, 32),
    max_lesions: int | None = None, target_layer: str = "net.decoder.1",
) -> list[Path]:
    """
    Write ``explain_<k>.png`` (k = 1, 2, ... as numbered in ``overlay.png``) into ``case_dir`` for the lesions of
    its ``lesions.json``, from the image the file names, preprocessed like the inference.

    Raises:
        ValueError: when ``case_dir`` has no readable ``lesions.json`` or the image cannot be read (naming it).
    """
    case_dir = Path(case_dir)
    found, image, affine = read_case_outputs(case_dir, preprocessing)
    lesions = found["lesions"]
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    written = []
    for k, lesion in enumerate(lesions[:max_lesions] if max_lesions else lesions, start=1):
        center = world_to_voxel(lesion["center_mm"], affine)
        result = lesion_gradcam(net, image, center, float(lesion["diameter_mm"]) / 2, spacing, roi, target_layer)
        title = f"{found.get('case', case_dir.name)} #{k}: {float(lesion['diameter_mm']):.1f} mm, score {lesion['score']}"
        written.append(atomic_write_bytes(case_dir / f"explain_{k}.png", render_explanation(result, title, spacing),
                                          protected=[found["image"]]))
    return written


def explain_outputs(
    net: nn.Module, preprocessing: Callable, output_dir: str | os.PathLike, roi: Sequence[int] = (64, 64, 32),
    max_lesions: int | None = None, target_layer: str = "net.decoder.1",
) -> list[Path]:
    """
    :py:func:`explain_case` for every case folder of an inference run (each ``<output_dir>/<case>/lesions.json``,
    sorted), so that ``explain_<k>.png`` lands next to each case's ``overlay.png``; meant as an optional step of
    ``configs/inference.json``'s ``run`` list. A case that cannot be explained is logged and skipped.

    Returns:
        the written PNG paths.

    Raises:
        ValueError: when ``net`` has no parameters (the ONNX Runtime backend: Grad-CAM needs gradients).
    """
    if not any(True for _ in net.parameters()):
        raise ValueError(f"net must be a PyTorch network with parameters to explain detections (backend 'torch'), "
                         f"got {type(net).__name__}.")
    written: list[Path] = []
    for path in sorted(Path(output_dir).glob("*/lesions.json")):
        try:
            written += explain_case(net, preprocessing, path.parent, roi, max_lesions, target_layer)
        except ValueError as e:
            logger.error("explanation skipped: %s", e)
    return written
