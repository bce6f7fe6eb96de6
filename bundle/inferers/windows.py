"""Windows (patches) of a preprocessed volume: centred on each lesion or tiling the volume (for the analyses), the
gated box of the routed inferer, and running a network on a batch of windows."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from scipy import ndimage

__all__ = [
    "crop_window", "lesion_windows", "grid_windows", "sliding_window_slices", "gate_box", "windows_outside",
    "run_windows", "lesion_logit",
]  # fmt: skip


def _check_roi(volume: torch.Tensor, roi: Sequence[int]) -> tuple[int, ...]:
    roi_t = tuple(int(r) for r in roi)
    if volume.dim() != len(roi_t) + 1 or any(r < 1 for r in roi_t):
        raise ValueError(
            f"volume must be (C, *S) with len(S) == len(roi) and roi positive, got shape {tuple(volume.shape)} "
            f"and roi={roi_t}."
        )
    return roi_t


def crop_window(
    volume: torch.Tensor, center: Sequence[float], roi: Sequence[int], pad_value: float = 0.0
) -> tuple[torch.Tensor, tuple[int, ...]]:
    """
    The ``roi`` window of ``volume`` centred on ``center``, shifted to stay inside the volume where it fits and
    padded with ``pad_value`` where the volume is smaller than ``roi``.

    Args:
        volume: (C, *S).
        center: voxel position per spatial axis.
        roi: window size per spatial axis.
        pad_value: value of padded voxels. Defaults to 0 (the minimum of a [0, 1] normalised image).

    Returns:
        ``(window, start)``: the (C, *roi) window and its first voxel in ``volume`` (may be negative when padded).

    Raises:
        ValueError: when the dimensions of ``volume``, ``center`` and ``roi`` disagree.
    """
    roi_t = _check_roi(volume, roi)
    if len(center) != len(roi_t):
        raise ValueError(f"center must have {len(roi_t)} coordinates, got center={tuple(center)}.")
    sizes = volume.shape[1:]
    start = []
    for c, r, n in zip(center, roi_t, sizes):
        s = int(round(float(c) - r / 2))
        start.append(min(max(s, 0), n - r) if n >= r else (n - r) // 2)  # inside when it fits, else centred pad
    window = torch.full((volume.shape[0], *roi_t), float(pad_value), dtype=volume.dtype)
    src = tuple(slice(max(s, 0), min(s + r, n)) for s, r, n in zip(start, roi_t, sizes))
    dst = tuple(slice(sl.start - s, sl.stop - s) for sl, s in zip(src, start))
    window[(slice(None), *dst)] = volume[(slice(None), *src)]
    return window, tuple(start)


def lesion_windows(
    image: torch.Tensor, label: torch.Tensor, roi: Sequence[int], pad_value: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor, list[dict]]:
    """
    One window per connected lesion of ``label`` (full connectivity), centred on its centre of mass.

    Args:
        image: (C, *S) preprocessed image.
        label: (1, *S) lesion mask (nonzero is lesion) in the same grid.
        roi: window size.
        pad_value: see :py:func:`crop_window`.

    Returns:
        ``(windows (N, C, *roi), masks (N, 1, *roi) of all lesion voxels in the window, info)`` with one
        ``{"center_voxel", "n_voxels", "start"}`` per lesion.

    Raises:
        ValueError: when the shapes disagree.
    """
    if label.shape != (1, *image.shape[1:]):
        raise ValueError(f"label must be (1, *S) = {(1, *image.shape[1:])}, got {tuple(label.shape)}.")
    mask = label[0].cpu().numpy() > 0
    components, n = ndimage.label(mask, structure=np.ones((3,) * mask.ndim))
    windows, masks, info = [], [], []
    lab = (label > 0).to(image.dtype)
    for index in range(1, n + 1):
        center = ndimage.center_of_mass(components == index)
        w, start = crop_window(image, center, roi, pad_value)
        m, _ = crop_window(lab, center, roi, 0.0)
        windows.append(w)
        masks.append(m)
        info.append({"center_voxel": [float(c) for c in center], "n_voxels": int((components == index).sum()),
                     "start": list(start)})
    if not windows:
        return torch.zeros((0, image.shape[0], *roi)), torch.zeros((0, 1, *roi)), []
    return torch.stack(windows), torch.stack(masks), info


def grid_windows(
    image: torch.Tensor, label: torch.Tensor, roi: Sequence[int], pad_value: float = 0.0
) -> tuple[torch.Tensor, np.ndarray, list[tuple[int, ...]]]:
    """
    Non-overlapping windows tiling the whole volume (the last one on each axis aligned to the volume's end, so it
    may overlap its neighbour), as a sliding window with no overlap would see them.

    Args:
        image: (C, *S) preprocessed image.
        label: (1, *S) lesion mask in the same grid.
        roi: window size.
        pad_value: see :py:func:`crop_window`.

    Returns:
        ``(windows (N, C, *roi), positive (N,) bool: the window holds a lesion voxel, starts)``.

    Raises:
        ValueError: when the shapes disagree.
    """
    roi_t = _check_roi(image, roi)
    if label.shape != (1, *image.shape[1:]):
        raise ValueError(f"label must be (1, *S) = {(1, *image.shape[1:])}, got {tuple(label.shape)}.")
    axes = []
    for n, r in zip(image.shape[1:], roi_t):
        starts = list(range(0, max(n - r, 0) + 1, r))
        if n > r and starts[-1] != n - r:
            starts.append(n - r)
        axes.append(starts)
    windows, positive, starts = [], [], []
    for start in np.array(np.meshgrid(*axes, indexing="ij")).reshape(len(roi_t), -1).T:
        center = [s + r / 2 for s, r in zip(start, roi_t)]
        w, s = crop_window(image, center, roi_t, pad_value)
        m, _ = crop_window(label, center, roi_t, 0.0)
        windows.append(w)
        positive.append(bool((m > 0).any()))
        starts.append(s)
    return torch.stack(windows), np.asarray(positive, dtype=bool), starts


def sliding_window_slices(
    spatial: Sequence[int], roi: Sequence[int], overlap: Sequence[float] | float = 0.25
) -> list[tuple[slice, ...]]:
    """The windows MONAI's ``sliding_window_inference`` visits over a (padded) volume of shape ``spatial``: its own
    grid (``dense_patch_slices`` with its scan interval for ``overlap``, one value or one per axis), one tuple of
    spatial slices per window, in MONAI's order."""
    from monai.inferers.utils import _get_scan_interval, dense_patch_slices

    size, window = tuple(int(s) for s in spatial), tuple(int(r) for r in roi)
    overlaps = (float(overlap),) * len(window) if isinstance(overlap, (int, float)) else tuple(map(float, overlap))
    interval = _get_scan_interval(size, window, len(window), overlaps)
    return [tuple(s) for s in dense_patch_slices(size, window, interval)]



def gate_box(
    covered: torch.Tensor, roi: Sequence[int], overlap: Sequence[float] | float = 0.25
) -> tuple[tuple[int, int], ...] | None:
    """
    The smallest box holding every window of MONAI's sliding-window grid that holds a ``covered`` voxel: the part of
    the image the routed inferer has to stitch when its mask gate skips every other window.

    MONAI's grid over such a box is the full grid's windows inside it (the box starts at a window start, a multiple
    of the scan interval, and ends at a window stop; the last window, aligned to the image's end, is the last of
    both), so stitching only the box gives the same windows, blended the same way.

    Args:
        covered: (*spatial) bool, the voxels that make a window run (e.g. the lung envelope).
        roi: window size, one int per spatial axis.
        overlap: the sliding window's overlap, one value or one per axis.

    Returns:
        ``((start, stop), ...)`` per spatial axis, or None when the box is the whole image, when no window holds a
        covered voxel, or when the image is smaller than the window on some axis (MONAI pads it: no box then).
    """
    spatial = tuple(covered.shape)
    if any(s < int(r) for s, r in zip(spatial, roi)):
        return None
    starts, stops = [], []
    for window in sliding_window_slices(spatial, roi, overlap):
        if bool(covered[window].any()):
            starts.append([s.start for s in window])
            stops.append([s.stop for s in window])
    if not starts:
        return None
    box = tuple((min(a), max(b)) for a, b in zip(zip(*starts), zip(*stops)))
    return None if all(a == 0 and b == s for (a, b), s in zip(box, spatial)) else box


def windows_outside(
    spatial: Sequence[int], roi: Sequence[int], overlap: Sequence[float] | float, box: Sequence[tuple[int, int]]
) -> list[list[list[int]]]:
    """The ``[[start, stop], ...]`` of every window of MONAI's grid over ``spatial`` not inside ``box``."""
    return [
        [[s.start, s.stop] for s in window]
        for window in sliding_window_slices(spatial, roi, overlap)
        if not all(a <= s.start and s.stop <= b for s, (a, b) in zip(window, box))
    ]


def run_windows(network: Callable[..., Any], windows: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
    """``network(windows, ...)``; a single CPU window runs as a batch of two (itself twice, first output kept) when
    the network says it is faster so (``pair_single_windows``, as ``GhostCAUNet`` with a strided stem does).

    PyTorch picks its naive ``slow_conv3d`` kernel over oneDNN for a batch of one when a layer's channels x first two
    spatial sizes are small (deep levels of a light network): the light layout then takes ~200 ms for one
    64 x 64 x 32 window and ~66 ms for two (release 0.6.0's layout: 139 ms and 175 ms, so it does not pair). Tiers
    split the sliding window's batches, so single windows are common.
    """
    pair = getattr(network, "pair_single_windows", False)
    if windows.shape[0] != 1 or windows.device.type != "cpu" or not pair:
        return network(windows, *args, **kwargs)
    out = network(torch.cat([windows, windows]), *args, **kwargs)
    if isinstance(out, torch.Tensor):
        return out[:1]
    if isinstance(out, dict):
        return {k: v[:1] for k, v in out.items()}
    return type(out)(o[:1] for o in out)  # a tuple or list of per-window tensors


def lesion_logit(out: Any, foreground_channel: int) -> torch.Tensor:
    """``out[:, f] - out[:, other]`` as (N, 1, *roi) for 2-channel logits ``out`` and ``foreground_channel`` f: the
    logit whose sigmoid is the softmax probability of channel f.

    Raises:
        ValueError: when ``out`` is not a tensor with two channels.
    """
    if not isinstance(out, torch.Tensor) or out.ndim < 3 or out.shape[1] != 2:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"foreground_channel needs the network to return (N, 2, *roi) logits, got {shape}.")
    f = int(foreground_channel)
    return out[:, f : f + 1] - out[:, 1 - f : 2 - f]
