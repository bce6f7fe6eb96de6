"""The lesion gallery of a synthetic-lesion data set: a PNG of lesions of different kinds and sizes in their real
surroundings, for ``docs/data.md``.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import nibabel as nib
import numpy as np

from bundle.data.datalist import load_datalist

__all__ = ["plot_lesion_gallery"]

logger = logging.getLogger(__name__)

_SPLITS = ("training", "validation")


def plot_lesion_gallery(datalist_path: str | os.PathLike, out_path: str | os.PathLike, n_columns: int = 8) -> Path:
    """Save a PNG of lesions of different kinds and sizes in their real surroundings (for ``docs/data.md``).

    Columns: one lesion each (chosen to cover kinds, shapes, locations and sizes; the real tumour when present).
    Rows: the axial slice through the lesion center, the same with the label outline (red), and the next slice
    (partial volume across thick slices). Chest CT in the window [-1000, 400] HU, head CT in the brain window
    [0, 80] HU, MR from the head's 1st percentile to 1.5 times its 99th. Anterior is up, patient right on the left.

    Args:
        datalist_path: a datalist written by :py:func:`bundle.data.synthetic.build.build_dataset`.
        out_path: PNG to write.
        n_columns: lesions to show. Defaults to 8.

    Returns:
        the written path.

    Raises:
        ValueError: when the datalist holds no lesion.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    items = [(e, les) for key in _SPLITS for e in _safe_load(datalist_path, key) for les in e.get("lesions", [])]
    if not items:
        raise ValueError(f"datalist {datalist_path} holds no lesion to show.")
    header = json.loads(Path(datalist_path).read_text())
    ct = header.get("modality", {}).get("0", "CT") == "CT"
    brain_ct = ct and header.get("organ") == "brain"
    wanted = [
        lambda r: not r.get("synthetic", True),
        lambda r: r["kind"] in ("solid", "hyper", "hyperdense") and r["location"] in ("isolated", "deep")
        and 3.5 <= r["diameter_mm"] < 6,
        lambda r: r["kind"] in ("solid", "hyper", "hyperdense") and r["shape"] == "spherical"
        and 8 <= r["diameter_mm"] < 15,
        lambda r: r["shape"] == "spiculated" and r["kind"] == "solid" and r["diameter_mm"] >= 12
        and r["location"] != "juxta-pleural",
        lambda r: r["kind"] in ("ggo", "hypo", "hypodense") and r["location"] in ("isolated", "deep")
        and r["diameter_mm"] >= 8,
        lambda r: r["kind"] == "hypodense" and 4 <= r["diameter_mm"] < 8,
        lambda r: r["kind"] == "part-solid" and r["diameter_mm"] >= 12,
        lambda r: r["location"] in ("juxta-pleural", "border") and r["diameter_mm"] >= 10,
        lambda r: r["location"] == "juxta-vascular" and 6 <= r["diameter_mm"] < 12,
        lambda r: r["shape"] == "lobulated" and r["diameter_mm"] >= 8,
        lambda r: r["diameter_mm"] >= 20,
    ]
    chosen: list = []
    for pred in wanted:
        for e, r in items:
            if len(chosen) < n_columns and pred(r) and all(r is not c[1] for c in chosen):
                chosen.append((e, r))
                break
    fig, axes = plt.subplots(3, len(chosen), figsize=(1.9 * len(chosen), 6.3), squeeze=False)
    loaded: dict = {}
    for col, (e, r) in enumerate(chosen):
        if e["image"] not in loaded:
            loaded.clear()
            image_data = nib.load(e["image"]).get_fdata(dtype=np.float32)
            loaded[e["image"]] = (image_data, np.asarray(nib.load(e["label"]).dataobj))
        img, lab = loaded[e["image"]]
        if brain_ct:
            vmin, vmax = 0.0, 80.0
        elif ct:
            vmin, vmax = -1000.0, 400.0
        else:  # head foreground percentiles; headroom above white matter so bright lesions keep their texture
            fg = img[img > 0.1 * np.percentile(img, 99)]
            vmin, vmax = float(np.percentile(fg, 1)), 1.5 * float(np.percentile(fg, 99))
        header_img = nib.load(e["image"])
        spacing = np.asarray(header_img.header.get_zooms()[:3], dtype=float)
        # rows run along the array's second axis: put anterior at the top whatever the axis' direction
        origin = "lower" if header_img.affine[1, 1] > 0 else "upper"
        c = np.round(r["center_voxel"]).astype(int)
        half = np.ceil(max(r["diameter_mm"] * 1.3, 18.0) / spacing[:2]).astype(int)
        x0, x1 = max(c[0] - half[0], 0), min(c[0] + half[0], img.shape[0])
        y0, y1 = max(c[1] - half[1], 0), min(c[1] + half[1], img.shape[1])
        k1 = min(c[2] + 1, img.shape[2] - 1)
        for row, (k, outline) in enumerate(((c[2], False), (c[2], True), (k1, False))):
            ax = axes[row, col]
            ax.imshow(img[x0:x1, y0:y1, k].T, cmap="gray", vmin=vmin, vmax=vmax, origin=origin,
                      aspect=spacing[1] / spacing[0], interpolation="nearest")
            if outline:
                ax.contour(lab[x0:x1, y0:y1, k].T > 0, [0.5], colors="r", linewidths=0.6, origin=origin)
            ax.set_xticks([])
            ax.set_yticks([])
        real = "REAL " if not r.get("synthetic", True) else ""
        axes[0, col].set_title(f"{real}{r['kind']} {r['shape']}\n{r['location']} {r['diameter_mm']:.1f} mm", fontsize=7)
    axes[0, 0].set_ylabel("center slice", fontsize=7)
    axes[1, 0].set_ylabel("label", fontsize=7)
    axes[2, 0].set_ylabel("next slice", fontsize=7)
    fig.tight_layout()
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path, dpi=72)
    plt.close(fig)
    return out_path


def _safe_load(path: str | os.PathLike, key: str) -> list[dict]:
    try:
        return load_datalist(path, key)
    except ValueError as e:
        logger.warning("%s", e)
        return []
