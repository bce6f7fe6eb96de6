"""Layer responses, attention gain and screening separation of :class:`bundle.networks.GhostCAUNet`
(source paper 3.1.2 and 4.2).

- Layer response of a stage: the channel mean of the absolute activation at its output, upsampled (trilinear) to
  the window size, averaged inside the lesion mask and outside it; their ratio says how much more the stage
  responds in lesions than in background.
- Attention gain at a Coordinate Attention stage: the same lesion and background responses taken just before
  the CA block (output of the stage's convolutions) and just after it, in one forward pass. CA multiplies by
  sigmoid gates in (0, 1), so the absolute gain is below 1 by construction; the paper's "2-3x" can only be a
  relative gain, reported as ``contrast_gain = (lesion / background after) / (lesion / background before)``. The
  end-to-end effect is also measured: mean lesion probability inside lesions and outside them, with attention
  (``enhancement="full"``) and without it (``"basic"``).
- Screening separation: ROC AUC of :py:meth:`GhostCAUNet.screen` (and its edge and semantic parts) between
  windows with and without lesion voxels.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from monai.inferers import sliding_window_inference
from sklearn.metrics import roc_auc_score

__all__ = [
    "stage_modules",
    "capture_outputs",
    "response_map",
    "region_means",
    "layer_responses",
    "attention_gain",
    "screening_auc",
    "sliding_response_maps",
]


def stage_modules(net: nn.Module) -> dict[str, nn.Module]:
    """
    The stages of a :class:`~bundle.networks.GhostCAUNet` whose outputs are feature maps, shallow to deep then
    back: ``enc0`` (full resolution) .. ``enc{L-1}`` (bottleneck), ``dec1`` .. ``dec{L-1}`` (decoder stages,
    ``dec{L-1}`` at full resolution).

    Args:
        net: a network with ``encoder`` and ``decoder`` module lists.

    Raises:
        ValueError: when ``net`` has no ``encoder``/``decoder`` lists.
    """
    if not isinstance(getattr(net, "encoder", None), nn.ModuleList) or not isinstance(
        getattr(net, "decoder", None), nn.ModuleList
    ):
        raise ValueError(f"net must have 'encoder' and 'decoder' ModuleLists (GhostCAUNet), got {type(net).__name__}.")
    stages = {f"enc{i}": m for i, m in enumerate(net.encoder)}
    stages.update({f"dec{s + 1}": m for s, m in enumerate(net.decoder)})
    return stages


@contextmanager
def capture_outputs(modules: dict[str, nn.Module]) -> Iterator[dict[str, torch.Tensor]]:
    """
    Record the (detached) output of each module during the forward passes run inside the ``with`` block.

    Args:
        modules: name -> module.

    Yields:
        a dict name -> last output, filled as the forward runs; the hooks are removed on exit.
    """
    outputs: dict[str, torch.Tensor] = {}
    handles = []
    for name, module in modules.items():
        def hook(_m: nn.Module, _inp: Any, out: torch.Tensor, name: str = name) -> None:
            outputs[name] = out.detach().clone()  # a later in-place op must not change the record
        handles.append(module.register_forward_hook(hook))
    try:
        yield outputs
    finally:
        for h in handles:
            h.remove()


def response_map(features: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """
    Channel mean of ``|features|`` resized to ``size``: (B, C, *s) -> (B, 1, *size).

    Args:
        features: a feature map (B, C, *s), 2 or 3 spatial dims.
        size: output spatial size.
    """
    r = features.abs().mean(dim=1, keepdim=True).float()  # (B, 1, *s)
    if tuple(r.shape[2:]) == tuple(size):
        return r
    mode = "trilinear" if r.dim() == 5 else "bilinear"
    return F.interpolate(r, size=tuple(int(s) for s in size), mode=mode, align_corners=False)


def region_means(values: torch.Tensor, mask: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """
    Per-sample mean of ``values`` inside ``mask`` and outside it.

    Args:
        values: (B, 1, *S).
        mask: (B, 1, *S), nonzero is inside.

    Returns:
        ``(inside, outside)``, each (B,) float64; NaN where a region is empty.

    Raises:
        ValueError: when the shapes differ.
    """
    if values.shape != mask.shape:
        raise ValueError(f"values and mask must have the same shape, got {tuple(values.shape)} and {tuple(mask.shape)}.")
    m = (mask > 0).flatten(1).double()
    v = values.flatten(1).double()
    with np.errstate(invalid="ignore", divide="ignore"):
        inside = ((v * m).sum(1) / m.sum(1)).numpy()
        outside = ((v * (1 - m)).sum(1) / (1 - m).sum(1)).numpy()
    return inside, outside


def _batches(windows: torch.Tensor, masks: torch.Tensor | None, batch_size: int) -> Iterator[tuple]:
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got batch_size={batch_size}.")
    for start in range(0, windows.shape[0], batch_size):
        yield windows[start : start + batch_size], None if masks is None else masks[start : start + batch_size]


def _check_windows(windows: torch.Tensor, masks: torch.Tensor) -> None:
    if windows.dim() < 4 or masks.shape != (windows.shape[0], 1, *windows.shape[2:]):
        raise ValueError(
            f"windows must be (N, C, *roi) and masks (N, 1, *roi), got {tuple(windows.shape)} and {tuple(masks.shape)}."
        )


def _summary(inside: np.ndarray, outside: np.ndarray) -> dict[str, float]:
    """Means over windows (NaN-aware) and the ratio of the means; the per-window ratios' median."""
    ok = np.isfinite(inside) & np.isfinite(outside) & (outside > 0)
    lesion, background = float(np.mean(inside[ok])), float(np.mean(outside[ok]))
    return {
        "lesion": lesion,
        "background": background,
        "ratio": lesion / background,
        "median_window_ratio": float(np.median(inside[ok] / outside[ok])),
        "n_windows": int(ok.sum()),
    }


@torch.no_grad()
def layer_responses(
    net: nn.Module, windows: torch.Tensor, masks: torch.Tensor, batch_size: int = 2, enhancement: str = "full"
) -> dict[str, dict[str, float]]:
    """
    Lesion versus background response of every stage (see the module docstring), over windows with lesions.

    Args:
        net: a :class:`~bundle.networks.GhostCAUNet` (put in eval mode here).
        windows: (N, C, *roi) preprocessed windows.
        masks: (N, 1, *roi) lesion masks; windows without a lesion voxel or without background are skipped.
        batch_size: windows per forward. Defaults to 2.
        enhancement: forward mode, ``"full"`` or ``"basic"``. Defaults to ``"full"``.

    Returns:
        stage name -> ``{"lesion", "background", "ratio", "median_window_ratio", "n_windows"}``.

    Raises:
        ValueError: on mismatching shapes or ``batch_size < 1``.
    """
    _check_windows(windows, masks)
    net.eval()
    stages = stage_modules(net)
    inside: dict[str, list] = {k: [] for k in stages}
    outside: dict[str, list] = {k: [] for k in stages}
    with capture_outputs(stages) as outs:
        for x, m in _batches(windows, masks, batch_size):
            net(x, enhancement=enhancement)
            for name in stages:
                i, o = region_means(response_map(outs[name], x.shape[2:]), m)
                inside[name].append(i)
                outside[name].append(o)
    return {k: _summary(np.concatenate(inside[k]), np.concatenate(outside[k])) for k in stages}


@torch.no_grad()
def attention_gain(net: nn.Module, windows: torch.Tensor, masks: torch.Tensor, batch_size: int = 2) -> dict[str, Any]:
    """
    Effect of each Coordinate Attention block on lesion versus background response, and end to end (see the
    module docstring).

    Args:
        net: a :class:`~bundle.networks.GhostCAUNet` with at least one CA stage.
        windows: (N, C, *roi) preprocessed windows.
        masks: (N, 1, *roi) lesion masks.
        batch_size: windows per forward. Defaults to 2.

    Returns:
        ``{"stages": {"dec<s>": {"before": summary, "after": summary, "lesion_gain", "background_gain",
        "contrast_gain"}}, "probability": {"full": summary, "basic": summary, "lesion_gain", "contrast_gain"}}``
        where a summary is ``{"lesion", "background", "ratio", ...}`` as in :py:func:`layer_responses` and the
        probability summaries are of the softmax lesion probability.

    Raises:
        ValueError: when ``net`` has no CA stage or the shapes mismatch.
    """
    _check_windows(windows, masks)
    net.eval()
    ca_stages = {f"dec{s + 1}": st for s, st in enumerate(net.decoder) if getattr(st, "has_ca", False)}
    if not ca_stages:
        raise ValueError("net must have at least one Coordinate Attention stage (ca_stages), got none.")
    hooks = {f"{k}/before": st.convs for k, st in ca_stages.items()}
    hooks.update({f"{k}/after": st.ca for k, st in ca_stages.items()})
    acc: dict[str, tuple[list, list]] = {k: ([], []) for k in list(hooks) + ["full", "basic"]}
    with capture_outputs(hooks) as outs:
        for x, m in _batches(windows, masks, batch_size):
            for mode in ("full", "basic"):
                prob = torch.softmax(net(x, enhancement=mode).float(), dim=1)[:, 1:2]  # (b, 1, *roi)
                i, o = region_means(prob, m)
                acc[mode][0].append(i)
                acc[mode][1].append(o)
                if mode == "full":  # the CA hooks only fire with attention on
                    for k in hooks:
                        i, o = region_means(response_map(outs[k], x.shape[2:]), m)
                        acc[k][0].append(i)
                        acc[k][1].append(o)
    s = {k: _summary(np.concatenate(a), np.concatenate(b)) for k, (a, b) in acc.items()}

    def gains(after: dict, before: dict) -> dict[str, float]:
        return {
            "lesion_gain": after["lesion"] / before["lesion"],
            "background_gain": after["background"] / before["background"],
            "contrast_gain": after["ratio"] / before["ratio"],
        }

    result: dict[str, Any] = {"stages": {}}
    for k in ca_stages:
        before, after = s[f"{k}/before"], s[f"{k}/after"]
        result["stages"][k] = {"before": before, "after": after, **gains(after, before)}
    result["probability"] = {"full": s["full"], "basic": s["basic"], **gains(s["full"], s["basic"])}
    return result


@torch.no_grad()
def screening_auc(net: nn.Module, windows: torch.Tensor, positive: Sequence[bool], batch_size: int = 8) -> dict[str, Any]:
    """
    ROC AUC of the screening score (and of its edge and semantic parts) between windows with and without lesions.

    Args:
        net: a network with ``screen_components`` and ``edge_weight``/``semantic_weight``
            (:class:`~bundle.networks.GhostCAUNet`).
        windows: (N, C, *roi) preprocessed windows.
        positive: N booleans, True for windows holding lesion voxels.
        batch_size: windows per screening pass. Defaults to 8.

    Returns:
        ``{"auc", "auc_edge", "auc_semantic", "n_windows", "n_positive", "scores": [...], "positive": [...]}``
        (AUCs None when a class is missing).

    Raises:
        ValueError: when ``positive`` does not have one entry per window.
    """
    positive = np.asarray(positive, dtype=bool)
    if positive.shape != (windows.shape[0],):
        raise ValueError(f"positive must have one entry per window ({windows.shape[0]}), got shape {positive.shape}.")
    net.eval()
    edges, semantics = [], []
    for x, _ in _batches(windows, None, batch_size):
        e, s = net.screen_components(x)
        edges.append(e.float().numpy())
        semantics.append(s.float().numpy())
    edge, semantic = np.concatenate(edges), np.concatenate(semantics)
    score = net.edge_weight * edge + net.semantic_weight * semantic
    both = positive.any() and (~positive).any()

    def auc(v: np.ndarray) -> float | None:
        return float(roc_auc_score(positive, v)) if both else None

    return {
        "auc": auc(score),
        "auc_edge": auc(edge),
        "auc_semantic": auc(semantic),
        "n_windows": int(len(positive)),
        "n_positive": int(positive.sum()),
        "scores": [round(float(v), 5) for v in score],
        "positive": [bool(v) for v in positive],
    }


@torch.no_grad()
def sliding_response_maps(
    net: nn.Module,
    image: torch.Tensor,
    roi: Sequence[int],
    overlap: float = 0.25,
    sw_batch_size: int = 2,
    enhancement: str = "full",
) -> dict[str, torch.Tensor]:
    """
    Every stage's response map (:py:func:`response_map` of its output) over a whole volume, computed window by
    window as the inference does (MONAI ``sliding_window_inference``, Gaussian blending), so each map is what the
    stage produces on the windows the network really sees.

    Args:
        net: a :class:`~bundle.networks.GhostCAUNet` (put in eval mode here).
        image: (C, *S) preprocessed volume.
        roi: window size.
        overlap: window overlap. Defaults to 0.25 (the inference's).
        sw_batch_size: windows per forward. Defaults to 2.
        enhancement: forward mode, ``"full"`` or ``"basic"``. Defaults to ``"full"``.

    Returns:
        stage name -> (*S) response map, in stage order (see :py:func:`stage_modules`).

    Raises:
        ValueError: when ``image`` is not (C, *S) with one spatial axis per ``roi`` entry.
    """
    if image.dim() != len(roi) + 1:
        raise ValueError(f"image must be (C, *S) with {len(roi)} spatial axes, got shape {tuple(image.shape)}.")
    net.eval()
    stages = stage_modules(net)

    def predictor(x: torch.Tensor) -> torch.Tensor:
        with capture_outputs(stages) as outs:
            net(x, enhancement=enhancement)
        return torch.cat([response_map(outs[k], x.shape[2:]) for k in stages], dim=1)  # (b, n_stages, *roi)

    params = list(net.parameters())
    sw_device = params[0].device if params else torch.device("cpu")  # windows go to the net, the maps stay on CPU
    maps = sliding_window_inference(torch.as_tensor(image)[None].float().cpu(), tuple(int(r) for r in roi),
                                    sw_batch_size, predictor, overlap=overlap, mode="gaussian", sw_device=sw_device,
                                    device=torch.device("cpu"))  # (1, n_stages, *S)
    return {k: maps[0, i] for i, k in enumerate(stages)}
