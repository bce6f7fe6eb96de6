"""The overlay image of the inference run: one PNG panel per lesion, the axial slice through its centre in
radiological display with the lesion contoured (``overlay.png`` of :py:func:`bundle.io.writers.write_case_outputs`).

Matplotlib's Agg canvas is used directly, so the global pyplot backend is untouched.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from monai.config import NdarrayOrTensor
from monai.utils import convert_to_numpy
from nibabel.orientations import io_orientation

__all__ = ["display_slice", "render_overlay", "zoom_crop"]


def display_slice(
    volume: np.ndarray, ornt: np.ndarray, axial: int, index: int
) -> tuple[np.ndarray, tuple[int, bool], tuple[int, bool]]:
    """
    The axial slice ``index`` of a 3D array in radiological display: rows anterior to posterior, columns patient
    right to left. Returns the 2D slice and, for rows and columns, the array axis shown and whether it is flipped.
    """
    world_of = {int(ornt[a, 0]): a for a in range(3)}
    row_ax, col_ax = world_of[1], world_of[0]  # rows: y (A-P), columns: x (R-L)
    plane = np.take(volume, index, axis=axial)  # remaining axes keep their order
    if row_ax > col_ax:
        plane = plane.T
    flip_rows, flip_cols = bool(ornt[row_ax, 1] > 0), bool(ornt[col_ax, 1] > 0)
    plane = plane[::-1] if flip_rows else plane
    plane = plane[:, ::-1] if flip_cols else plane
    return plane, (row_ax, flip_rows), (col_ax, flip_cols)


def zoom_crop(
    plane: np.ndarray, mask: np.ndarray, r: float, c: float, half: tuple[int, int], fill: float
) -> tuple[np.ndarray, np.ndarray, float, float]:
    """
    The ``(2 * half + 1)``-pixel field around display position (``r``, ``c``) of a slice and its mask, padded with
    ``fill`` so that a lesion at the border stays centred; returns both crops and the position within them.
    """
    hr, hc = half
    padded = np.pad(plane, ((hr, hr), (hc, hc)), constant_values=fill)
    padded_mask = np.pad(mask, ((hr, hr), (hc, hc)))
    r0, c0 = int(round(r)), int(round(c))
    crop = padded[r0 : r0 + 2 * hr + 1, c0 : c0 + 2 * hc + 1]
    crop_mask = padded_mask[r0 : r0 + 2 * hr + 1, c0 : c0 + 2 * hc + 1]
    return crop, crop_mask, r + hr - r0, c + hc - c0


def render_overlay(
    image: NdarrayOrTensor,
    seg: NdarrayOrTensor,
    affine: NdarrayOrTensor,
    lesions: Sequence[Mapping[str, Any]],
    title: str = "",
    window: Sequence[float] | None = None,
    max_panels: int = 12,
    fov_mm: float | None = 96.0,
) -> bytes:
    """
    PNG of one axial panel per lesion (highest score first, at most ``max_panels``): the slice through the lesion
    centre in radiological display (patient right on the image's left, anterior up), the lesion contour in red,
    its score, diameter and tier in the panel title. Without lesions, one mid slice titled "no lesion found".

    Args:
        image: intensities, (spatial_1, spatial_2[, spatial_3]), in the grid of ``seg``.
        seg: label map of the same shape; nonzero voxels are contoured.
        affine: voxel-to-world (RAS) matrix of that grid, (4, 4) (or (3, 3) for 2D).
        lesions: lesion dicts with ``center_voxel``, ``score``, ``diameter_mm``, ``tier`` in that grid.
        title: figure title, e.g. the case name.
        window: display intensity range (min, max), e.g. the CT lung window (-1000, 400); default the 1st-99th
            percentiles of ``image``.
        max_panels: at most this many panels. Default 12.
        fov_mm: each panel shows this field of view around the lesion (small lesions stay visible); None shows
            the whole slice.

    Raises:
        ValueError: When ``image`` and ``seg`` differ in shape, are not 2D/3D, or ``max_panels`` < 1.

    """
    img = np.asarray(convert_to_numpy(image), dtype=np.float32)
    lab = np.asarray(convert_to_numpy(seg))
    aff = np.asarray(convert_to_numpy(affine), dtype=np.float64)
    if img.shape != lab.shape or img.ndim not in (2, 3):
        raise ValueError(f"image and seg must have the same 2D/3D shape, got {img.shape} and {lab.shape}.")
    if max_panels < 1:
        raise ValueError(f"max_panels must be >= 1, got max_panels={max_panels}.")
    if img.ndim == 2:  # a single slice: add a one-voxel z axis so that one code path serves both
        img, lab = img[..., None], lab[..., None]
        aff = np.array([[*aff[0, :2], 0, aff[0, 2]], [*aff[1, :2], 0, aff[1, 2]], [0, 0, 1, 0], [0, 0, 0, 1]])
    if window is None:
        sample = img.ravel()[:: max(1, img.size // 1_000_000)]
        window = tuple(float(v) for v in np.percentile(sample, (1, 99)))
    ornt = io_orientation(aff)
    axial = int(np.flatnonzero(ornt[:, 0] == 2)[0])
    spacing = np.linalg.norm(aff[:3, :3], axis=0)

    shown = list(lesions)[:max_panels]
    # 2D lesion centres get the z index 0 of the added axis
    centers = [np.pad(np.asarray(les["center_voxel"], np.float64), (0, 3 - len(les["center_voxel"]))) for les in shown]
    if not shown:
        centers = [(np.asarray(img.shape, dtype=np.float64) - 1) / 2]
    ncols = min(4, len(centers))
    nrows = math.ceil(len(centers) / ncols)
    fig = Figure(figsize=(3.2 * ncols, 3.4 * nrows + 0.4), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    for n, center in enumerate(centers):
        ax = fig.add_subplot(nrows, ncols, n + 1)
        k = int(min(max(round(center[axial]), 0), img.shape[axial] - 1))
        plane, (row_ax, flip_r), (col_ax, flip_c) = display_slice(img, ornt, axial, k)
        mplane = display_slice(lab, ornt, axial, k)[0] > 0
        r = img.shape[row_ax] - 1 - center[row_ax] if flip_r else center[row_ax]
        c = img.shape[col_ax] - 1 - center[col_ax] if flip_c else center[col_ax]
        if fov_mm is not None and shown:  # the same field of view around each lesion, so a 3 mm nodule is visible
            half = (int(fov_mm / 2 / spacing[row_ax]), int(fov_mm / 2 / spacing[col_ax]))
            plane, mplane, r, c = zoom_crop(plane, mplane, r, c, half, window[0])
        ax.imshow(plane, cmap="gray", vmin=window[0], vmax=window[1], aspect=spacing[row_ax] / spacing[col_ax])
        if mplane.any() and min(mplane.shape) > 1:
            ax.contour(mplane.astype(np.float32), levels=[0.5], colors="red", linewidths=1.0)
        elif shown:
            ax.plot([c], [r], marker="+", color="red", markersize=10)
        # the slice's world position, the same on any grid of the case (a viewer shows it as the slice location)
        at = np.array(center, dtype=np.float64)
        at[axial] = k
        z_mm = float((aff @ np.append(at, 1.0))[2])
        if shown:
            les = shown[n]
            ax.set_title(
                f"#{n + 1} score {float(les['score']):.2f}, {float(les['diameter_mm']):.1f} mm\n"
                f"{les['tier']} tier, axial z {z_mm:.1f} mm",
                fontsize=9,
            )
        else:
            ax.set_title(f"no lesion found\naxial z {z_mm:.1f} mm", fontsize=9)
        ax.text(0.01, 0.5, "R", color="yellow", transform=ax.transAxes, fontsize=8, va="center")
        ax.text(0.99, 0.5, "L", color="yellow", transform=ax.transAxes, fontsize=8, va="center", ha="right")
        ax.set_xticks([])
        ax.set_yticks([])
    extra = f" (showing {len(shown)} of {len(lesions)} lesions)" if len(lesions) > len(shown) else ""
    fig.suptitle(f"{title}{extra}", fontsize=10)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
