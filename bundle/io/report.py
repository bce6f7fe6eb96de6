"""A case report a person reads: ``report.html``, one self-contained page per case (images embedded as PNG).

The page holds the case's identity (input, bundle version, the time from reading to the lesion list), the lesion
table (centre, diameter, volume, score, tier, and the size band of each lesion against the Lung-RADS v2022 size
thresholds for solid nodules at baseline, named as such: a size band, not a Lung-RADS category, which needs a
radiologist's reading of type, growth and morphology), and per lesion the full axial slice through its centre with
the lesion's box, beside a zoom with its contour, both in radiological display (patient right on the image's
left, anterior up).
"""

from __future__ import annotations

import base64
import datetime
import html
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from monai.config import NdarrayOrTensor, PathLike
from monai.utils import convert_to_numpy
from nibabel.orientations import io_orientation

from bundle.io.atomic import atomic_write_text
from bundle.io.overlay import display_slice, zoom_crop

__all__ = ["REPORT_FILENAME", "LUNG_RADS_SIZE_BANDS", "size_band", "render_lesion_views", "write_case_report"]

REPORT_FILENAME = "report.html"
# Lung-RADS v2022, solid nodules at baseline: the size thresholds (mm) of categories 2, 3, 4A and 4B
LUNG_RADS_SIZE_BANDS = ((6.0, "< 6 mm"), (8.0, "6 to < 8 mm"), (15.0, "8 to < 15 mm"), (float("inf"), ">= 15 mm"))


def size_band(diameter_mm: float) -> str:
    """The Lung-RADS v2022 solid-nodule size band (baseline thresholds 6, 8, 15 mm) a diameter falls in."""
    if not np.isfinite(diameter_mm) or diameter_mm < 0:
        raise ValueError(f"diameter_mm must be a finite non-negative number, got diameter_mm={diameter_mm!r}.")
    return next(label for upper, label in LUNG_RADS_SIZE_BANDS if diameter_mm < upper)


def render_lesion_views(
    image: NdarrayOrTensor,
    seg: NdarrayOrTensor,
    affine: NdarrayOrTensor,
    lesions: Sequence[Mapping[str, Any]],
    window: Sequence[float] | None = None,
    fov_mm: float = 64.0,
    max_lesions: int = 20,
) -> list[bytes]:
    """
    Per lesion (at most ``max_lesions``, in order), a PNG: the whole axial slice through its centre with its box in
    yellow, and a ``fov_mm`` zoom around it with its contour in red.

    Args:
        image: intensities (X, Y, Z) in the grid of ``seg``.
        seg: the lesion label map of that grid (lesion ``n`` is label ``n``).
        affine: the grid's voxel-to-world (RAS) matrix.
        lesions: records with ``center_voxel`` and ``box_voxel`` in that grid.
        window: display range; default the 1st-99th percentiles of ``image``.
        fov_mm: the zoom's field of view. Defaults to 64 mm.
        max_lesions: at most this many views. Defaults to 20.

    Raises:
        ValueError: when ``image`` and ``seg`` are not 3D arrays of the same shape.
    """
    img = np.asarray(convert_to_numpy(image), dtype=np.float32)
    lab = np.asarray(convert_to_numpy(seg))
    aff = np.asarray(convert_to_numpy(affine), dtype=np.float64)
    if img.shape != lab.shape or img.ndim != 3:
        raise ValueError(f"image and seg must be 3D arrays of the same shape, got {img.shape} and {lab.shape}.")
    if window is None:
        window = tuple(float(v) for v in np.percentile(img.ravel()[:: max(1, img.size // 1_000_000)], (1, 99)))
    ornt = io_orientation(aff)
    axial = int(np.flatnonzero(ornt[:, 0] == 2)[0])
    spacing = np.linalg.norm(aff[:3, :3], axis=0)
    views = []
    for n, lesion in enumerate(list(lesions)[:max_lesions], start=1):
        center = np.asarray(lesion["center_voxel"], dtype=np.float64)
        k = int(min(max(round(center[axial]), 0), img.shape[axial] - 1))
        plane, (row_ax, flip_r), (col_ax, flip_c) = display_slice(img, ornt, axial, k)
        mask = display_slice(lab, ornt, axial, k)[0] == n

        def to_display(index: float, axis: int, flip: bool) -> float:
            return img.shape[axis] - 1 - index if flip else index

        (lo, hi) = (np.asarray(b, dtype=np.float64) for b in lesion["box_voxel"])  # stop exclusive
        rows = sorted(to_display(v, row_ax, flip_r) for v in (lo[row_ax], hi[row_ax] - 1))
        cols = sorted(to_display(v, col_ax, flip_c) for v in (lo[col_ax], hi[col_ax] - 1))
        r, c = to_display(center[row_ax], row_ax, flip_r), to_display(center[col_ax], col_ax, flip_c)
        aspect = spacing[row_ax] / spacing[col_ax]
        fig = Figure(figsize=(8.0, 4.2), dpi=100, layout="constrained")
        FigureCanvasAgg(fig)
        whole, zoom = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
        whole.imshow(plane, cmap="gray", vmin=window[0], vmax=window[1], aspect=aspect)
        margin = 3
        whole.add_patch(Rectangle((cols[0] - margin, rows[0] - margin), cols[1] - cols[0] + 2 * margin,
                                  rows[1] - rows[0] + 2 * margin, fill=False, edgecolor="yellow", linewidth=1.2))  # fmt: skip
        whole.set_title("axial slice, lesion boxed", fontsize=9)
        half = (int(fov_mm / 2 / spacing[row_ax]), int(fov_mm / 2 / spacing[col_ax]))
        crop, crop_mask, zr, zc = zoom_crop(plane, mask, r, c, half, window[0])
        zoom.imshow(crop, cmap="gray", vmin=window[0], vmax=window[1], aspect=aspect)
        if crop_mask.any() and min(crop_mask.shape) > 1:
            zoom.contour(crop_mask.astype(np.float32), levels=[0.5], colors="red", linewidths=1.0)
        else:
            zoom.plot([zc], [zr], marker="+", color="red", markersize=10)
        zoom.set_title(f"zoom, {fov_mm:.0f} mm field of view", fontsize=9)
        for ax in (whole, zoom):
            ax.text(0.01, 0.5, "R", color="yellow", transform=ax.transAxes, fontsize=8, va="center")
            ax.text(0.99, 0.5, "L", color="yellow", transform=ax.transAxes, fontsize=8, va="center", ha="right")
            ax.set_xticks([])
            ax.set_yticks([])
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        views.append(buf.getvalue())
    return views


def _row(n: int, lesion: Mapping[str, Any]) -> str:
    centre = ", ".join(f"{float(v):.1f}" for v in lesion["center_mm"])
    cells = [str(n), f"({centre})", f"{float(lesion['diameter_mm']):.1f}", size_band(float(lesion["diameter_mm"])),
             f"{float(lesion['volume_mm3']):.0f}", f"{float(lesion['score']):.2f}", str(lesion["tier"])]  # fmt: skip
    return "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>"


def write_case_report(
    path: PathLike,
    case: str,
    image_path: PathLike,
    lesions: Sequence[Mapping[str, Any]],
    views: Sequence[bytes],
    seconds: float | None = None,
    software_version: str = "0",
    protected: Sequence[PathLike] = (),
) -> Path:
    """
    Write ``report.html`` for one case, atomically.

    Args:
        path: destination, e.g. ``<case>/report.html``.
        case: the case name.
        image_path: the input.
        lesions: the ``lesions.json`` records (centre in RAS mm of the input, sizes, score, tier).
        views: the PNGs of :func:`render_lesion_views`, in lesion order (fewer than the lesions: the rest is
            listed in the table only).
        seconds: time from reading the input to the lesion list; None leaves it out.
        software_version: the bundle version.
        protected: input paths never to be written over.

    Returns:
        the resolved destination path.
    """
    when = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    timing = f"{seconds:.1f} s from reading the input to the lesion list" if seconds is not None else "not recorded"
    head = ["#", "centre (RAS mm)", "diameter (mm)", "size band*", "volume (mm³)", "score", "tier"]
    table = (
        "<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>"
        + "".join(_row(n, les) for n, les in enumerate(lesions, start=1)) + "</table>"
    )  # fmt: skip
    figures = "".join(
        f'<figure><img alt="lesion {n}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'
        f"<figcaption>Lesion {n}: {float(lesions[n - 1]['diameter_mm']):.1f} mm, score "
        f"{float(lesions[n - 1]['score']):.2f}, {html.escape(str(lesions[n - 1]['tier']))} tier</figcaption></figure>"
        for n, png in enumerate(views, start=1)
    )
    more = f"<p>Views of the first {len(views)} of {len(lesions)} lesions.</p>" if len(views) < len(lesions) else ""
    found = f"{len(lesions)} lesion{'s' if len(lesions) != 1 else ''} found" if lesions else "No lesion found"
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(case)}: lesion report</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:60em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #999;padding:.2em .6em;text-align:right}}figure{{margin:1em 0}}img{{max-width:100%}}
.note{{color:#555;font-size:90%}}</style></head><body>
<h1>{html.escape(case)}: {found}</h1>
<p>Input: <code>{html.escape(str(image_path))}</code><br>Small-lesion bundle {html.escape(software_version)},
{html.escape(when)}; {html.escape(timing)}.</p>
<p class="note">Research output of an automatic detector, not a diagnosis; every finding needs a radiologist's
reading.</p>
{table if lesions else ""}
<p class="note">* Size band: the lesion's diameter against the Lung-RADS v2022 size thresholds for solid nodules at
baseline (6, 8 and 15 mm), for orientation only. It is not a Lung-RADS category: that needs a radiologist's
reading of the nodule's type, growth and morphology.</p>
{more}{figures}
</body></html>
"""
    return atomic_write_text(path, page, protected)
