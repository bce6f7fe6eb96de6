"""Figures of the analyses (PNG bytes; the callers write them atomically; the tables are
:py:func:`bundle.experiments.markdown.markdown_table`)."""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = ["plot_features", "plot_layer_maps", "plot_layer_ratios", "plot_screening"]


def _png(fig: Figure, palette: bool = False) -> bytes:
    """PNG bytes of ``fig``; ``palette``: 256 colours (about 3x smaller for dense colour maps)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    if not palette:
        return buf.getvalue()
    from PIL import Image

    image = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    out = io.BytesIO()
    image.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(out, format="png",
                                                                                                optimize=True)
    return out.getvalue()


def _new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def plot_features(rows: Sequence[Mapping[str, Any]], title: str = "", unit: str = "HU") -> bytes:
    """
    Grouped bars per size band, lesion versus surrounding tissue, for the grey-level mean, the standard deviation
    (square root of the variance, same unit as the mean) and the edge-gradient magnitude; error bars are the
    standard deviation over lesions.

    Args:
        rows: :py:func:`bundle.experiments.analysis.features.summarize_by_band` rows.
        title: figure title.
        unit: intensity unit for the axis labels. Defaults to ``"HU"``.
    """
    fig = _new_figure(11.0, 3.6)
    bands = [f"{r['band']} mm\n(n={r['n']})" for r in rows]
    x = np.arange(len(rows))
    panels = (("mean", f"grey-level mean ({unit})"), ("var", f"grey-level SD ({unit})"),
              ("gradient", f"edge gradient ({unit}/mm)"))
    for n, (f, label) in enumerate(panels):
        ax = fig.add_subplot(1, 3, n + 1)
        for shift, who, color in ((-0.2, "lesion", "tab:red"), (0.2, "surround", "tab:blue")):
            values = [r.get(f"{who}_{f}") for r in rows]
            spread = [r.get(f"{who}_{f}_sd") for r in rows]
            v = np.array([np.nan if a is None else a for a in values], dtype=float)
            e = np.array([0.0 if a is None else a for a in spread], dtype=float)
            if f == "var":  # show the SD: the variance's own spread is in unit^2 and dwarfs the bars
                e = np.zeros_like(v)
                v = np.sqrt(v)
            ax.bar(x + shift, v, width=0.4, yerr=e, color=color, alpha=0.8, capsize=3,
                   label="lesion" if who == "lesion" else "surrounding tissue")
        ax.set_xticks(x, bands, fontsize=8)
        ax.set_ylabel(label, fontsize=9)
        ax.axhline(0.0, color="black", linewidth=0.5)
        if n == 0:
            ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    return _png(fig)


def plot_layer_ratios(summary: Mapping[str, Mapping[str, float]], title: str = "") -> bytes:
    """
    Bar chart of the lesion / background response ratio per stage (:py:func:`bundle.experiments.analysis.responses.layer_responses`).

    Args:
        summary: stage name -> ``{"ratio", ...}``.
        title: figure title.
    """
    fig = _new_figure(6.4, 3.4)
    ax = fig.add_subplot(1, 1, 1)
    names = list(summary)
    ax.bar(names, [summary[k]["ratio"] for k in names], color="tab:purple", alpha=0.8)
    ax.axhline(1.0, color="black", linewidth=0.8, linestyle="--")
    ax.set_ylabel("lesion / background response", fontsize=9)
    ax.set_title(title, fontsize=10)
    return _png(fig)


def _bounding_box(region: np.ndarray, margin: int = 4) -> tuple[slice, ...]:
    """Slices of the bounding box of ``region``'s nonzero pixels plus ``margin``; the whole array when empty."""
    nonzero = np.nonzero(region)
    if len(nonzero[0]) == 0:
        return tuple(slice(None) for _ in region.shape)
    return tuple(slice(max(int(i.min()) - margin, 0), int(i.max()) + margin + 1) for i in nonzero)


def plot_layer_maps(
    image: np.ndarray, maps: Mapping[str, np.ndarray], mask: np.ndarray, title: str = "", aspect: float = 1.0,
    crop: np.ndarray | None = None, panel_inches: float = 3.0, palette: bool = False,
) -> bytes:
    """
    The slice and each stage's response map on it (each map scaled to its own 0..99th percentile), lesion outline
    in cyan.

    Args:
        image: 2D slice in display orientation.
        maps: stage name -> 2D response map of the same shape.
        mask: 2D lesion mask of the same shape.
        title: figure title.
        aspect: pixel aspect (row spacing / column spacing). Defaults to 1.
        crop: optional 2D region of the same shape (e.g. the body); every panel shows only its bounding box and
            the percentile is taken over the region's pixels. Defaults to None (the whole slice).
        panel_inches: width of one panel at 100 dpi. Defaults to 3.
        palette: save with a 256-colour palette (smaller file). Defaults to False.
    """
    region = np.ones(image.shape, dtype=bool)
    if crop is not None:
        box = _bounding_box(crop)
        image, mask, region = image[box], mask[box], np.asarray(crop, dtype=bool)[box]
        maps = {k: v[box] for k, v in maps.items()}
        region = region if region.any() else np.ones(image.shape, dtype=bool)
    n = len(maps) + 1
    ncols = min(4, n)
    nrows = math.ceil(n / ncols)
    fig = _new_figure(panel_inches * ncols, (panel_inches + 0.1) * nrows + 0.3)
    panels = [("image", image, "gray")] + [(k, v, "inferno") for k, v in maps.items()]
    for i, (name, values, cmap) in enumerate(panels):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        hi = float(np.percentile(values[region], 99)) or 1.0
        ax.imshow(values, cmap=cmap, vmin=0.0 if cmap != "gray" else 0.0, vmax=hi if cmap != "gray" else 1.0,
                  aspect=aspect)
        if mask.any():
            ax.contour(mask.astype(np.float32), levels=[0.5], colors="cyan", linewidths=0.7)
        ax.set_title(name, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize=10)
    return _png(fig, palette)


def plot_screening(scores: Sequence[float], positive: Sequence[bool], auc: float | None, title: str = "") -> bytes:
    """
    Histograms of the screening score for windows with and without lesions.

    Args:
        scores: score per window.
        positive: True for windows with lesion voxels.
        auc: ROC AUC to print (None: undefined).
        title: figure title.
    """
    s, p = np.asarray(scores, dtype=float), np.asarray(positive, dtype=bool)
    fig = _new_figure(6.4, 3.4)
    ax = fig.add_subplot(1, 1, 1)
    bins = np.linspace(0.0, 1.0, 41)
    ax.hist(s[~p], bins=bins, alpha=0.6, density=True, label=f"no lesion (n={int((~p).sum())})", color="tab:blue")
    ax.hist(s[p], bins=bins, alpha=0.6, density=True, label=f"lesion (n={int(p.sum())})", color="tab:red")
    ax.set_xlabel("screening score", fontsize=9)
    ax.set_ylabel("density", fontsize=9)
    ax.legend(fontsize=8)
    ax.set_title(f"{title} ROC AUC {'undefined' if auc is None else f'{auc:.3f}'}", fontsize=10)
    return _png(fig)
