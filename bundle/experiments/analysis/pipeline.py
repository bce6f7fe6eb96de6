"""Run the analyses on a data set and write their tables (JSON + markdown) and figures atomically.

The network and the preprocessing come from :py:mod:`bundle.experiments.analysis.loading`: ``network_def`` of
``configs/inference.json`` with the weights of ``models/model.pt``, and ``preprocessing`` of ``configs/train.json``
(what the shipped model was trained on), so the windows the analyses feed the network are the ones it was trained
and run on.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from bundle.experiments.analysis import figures
from bundle.engines.explain import ball_mask, read_case_outputs
from bundle.lesions.geometry import world_to_voxel
from bundle.experiments.analysis.features import lesion_features, summarize_by_band
from bundle.experiments.analysis.responses import attention_gain, layer_responses, response_map, screening_auc, stage_modules
from bundle.experiments.analysis.responses import capture_outputs, sliding_response_maps
from bundle.experiments.markdown import decimal_cell, markdown_table
from bundle.inferers.windows import grid_windows, lesion_windows
from bundle.data.datalist import load_datalist
from bundle.io.atomic import atomic_write_bytes, atomic_write_text

__all__ = [
    "dataset_entries",
    "run_features",
    "run_layers",
    "run_attention",
    "run_case_layers",
]

logger = logging.getLogger(__name__)

_DECIMALS_2 = functools.partial(decimal_cell, digits=2)  # the feature and slice tables

FEATURE_COLUMNS = [("band", "size band (mm)"), ("n", "lesions"), ("lesion_mean", "lesion mean"),
                   ("surround_mean", "surround mean"), ("diff_mean", "contrast"), ("abs_diff_mean", "abs contrast"),
                   ("lesion_var", "lesion var"), ("surround_var", "surround var"), ("ratio_var", "var ratio"),
                   ("lesion_gradient", "edge grad"), ("surround_gradient", "surround grad"),
                   ("ratio_gradient", "grad ratio"), ("p_gradient", "p (grad)")]


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return None if not math.isfinite(float(value)) else float(f"{float(value):.6g}")  # keeps tiny p-values
    if isinstance(value, np.integer):
        return int(value)
    return value


def _write(prefix: Path, result: dict, table: str, png: dict[str, bytes]) -> dict[str, Path]:
    written = {"json": atomic_write_text(prefix.with_suffix(".json"), json.dumps(_jsonable(result), indent=4) + "\n")}
    written["md"] = atomic_write_text(prefix.with_suffix(".md"), table)
    for suffix, data in png.items():
        written[suffix] = atomic_write_bytes(prefix.parent / f"{prefix.name}{suffix}.png", data)
    return written


def dataset_entries(datalist: str | os.PathLike, split: str = "validation", max_cases: int | None = None) -> list[dict]:
    """Entries of ``split`` (``"training"``, ``"validation"`` or ``"all"``), the first ``max_cases`` of them."""
    keys = ("training", "validation") if split == "all" else (split,)
    entries = [e for k in keys for e in load_datalist(datalist, k)]
    return entries if max_cases is None else entries[: int(max_cases)]


def run_features(
    datalist: str | os.PathLike, prefix: str | os.PathLike, split: str = "all", ring_mm: float = 3.0,
    max_cases: int | None = None, unit: str = "HU",
) -> dict[str, Any]:
    """
    Lesion feature statistics of every case (images as stored, in their own grid) and their summary by size band;
    writes ``<prefix>.json`` (per-lesion records and band rows), ``<prefix>.md`` (table) and ``<prefix>.png``.

    Raises:
        ValueError: naming the file when an image or label cannot be read or their shapes differ.
    """
    import nibabel as nib

    records = []
    entries = dataset_entries(datalist, split, max_cases)
    for entry in entries:
        try:
            image_nii, label_nii = nib.load(entry["image"]), nib.load(entry["label"])
            image, label = np.asarray(image_nii.dataobj, np.float32), np.asarray(label_nii.dataobj)
        except Exception as e:  # nibabel raises many types; one line naming the file
            raise ValueError(f"{entry['image']}: cannot read the image/label pair ({type(e).__name__}: {e}).") from e
        if image.shape != label.shape:
            raise ValueError(f"{entry['label']}: label shape {label.shape} differs from the image's {image.shape}.")
        spacing = np.linalg.norm(image_nii.affine[:3, :3], axis=0)
        for r in lesion_features(image, label, spacing, ring_mm):
            records.append({"case": entry.get("case", Path(entry["image"]).name), **r})
    rows = summarize_by_band(records)
    outside = sum(r["size_band"] is None for r in records)
    result = {"n_cases": len(entries), "n_lesions": len(records), "n_outside_bands": outside, "ring_mm": ring_mm,
              "unit": unit, "bands": rows, "lesions": records}
    table = markdown_table(rows, FEATURE_COLUMNS, _DECIMALS_2) + "\n"
    title = f"{Path(datalist).parent.name}: {len(records)} lesions of {len(entries)} cases ({outside} outside 3-30 mm)"
    _write(Path(prefix), result, table, {"": figures.plot_features(rows, title, unit)})
    return result


def _case_windows(entry: dict, preprocessing: Callable, roi: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    data = preprocessing({"image": entry["image"], "label": entry["label"]})
    return torch.as_tensor(data["image"]).float(), torch.as_tensor(data["label"]).float()


def _display(volume: np.ndarray, k: int) -> np.ndarray:
    return volume[:, :, k].T[::-1, ::-1]  # RAS axial slice: anterior up, patient right on the left


@torch.no_grad()
def run_layers(
    net: nn.Module, preprocessing: Callable, datalist: str | os.PathLike, prefix: str | os.PathLike,
    roi: Sequence[int] = (64, 64, 32), split: str = "validation", max_cases: int | None = None,
) -> dict[str, Any]:
    """
    Stage responses inside versus outside lesions over lesion-centred windows, plus a figure of the response maps
    on the axial slice through the largest lesion of the first case; writes ``<prefix>.json``/``.md``/``.png``
    (ratios) and ``<prefix>_maps.png``.
    """
    windows, masks, n_cases = [], [], 0
    example = None
    for entry in dataset_entries(datalist, split, max_cases):
        image, label = _case_windows(entry, preprocessing, roi)
        w, m, info = lesion_windows(image, label, roi)
        windows.append(w)
        masks.append(m)
        n_cases += 1
        if example is None and info:
            example = (w[int(np.argmax([i["n_voxels"] for i in info]))], m[int(np.argmax([i["n_voxels"] for i in info]))],
                       entry.get("case", ""))
    all_w, all_m = torch.cat(windows), torch.cat(masks)
    summary = layer_responses(net, all_w, all_m)
    rows = [{"stage": k, **v} for k, v in summary.items()]
    table = markdown_table(rows, [("stage", "stage"), ("lesion", "lesion response"),
                                  ("background", "background response"), ("ratio", "ratio"),
                                  ("median_window_ratio", "median window ratio"), ("n_windows", "windows")],
                           decimal_cell) + "\n"
    pngs = {"": figures.plot_layer_ratios(summary, f"{len(all_w)} lesion windows of {n_cases} cases")}
    if example is not None:
        w, m, case = example
        k = int(round(float(np.nonzero(m[0].sum(dim=(0, 1)).numpy())[0].mean())))
        with capture_outputs(stage_modules(net)) as outs:
            net(w[None])
            maps = {name: _display(response_map(outs[name], w.shape[1:])[0, 0].numpy(), k) for name in outs}
        pngs["_maps"] = figures.plot_layer_maps(_display(w[0].numpy(), k), maps, _display(m[0].numpy(), k),
                                                f"{case}: stage responses, axial slice {k} of a 64x64x32 window")
    result = {"n_cases": n_cases, "n_windows": int(len(all_w)), "roi": list(roi), "stages": summary}
    _write(Path(prefix), result, table, pngs)
    return result


def run_attention(
    net: nn.Module, preprocessing: Callable, datalist: str | os.PathLike, prefix: str | os.PathLike,
    roi: Sequence[int] = (64, 64, 32), split: str = "validation", max_cases: int | None = None,
) -> dict[str, Any]:
    """
    Attention gain over lesion-centred windows and screening ROC AUC over the windows tiling each case; writes
    ``<prefix>.json``/``.md`` and ``<prefix>_screening.png``.
    """
    lw, lm, gw, gp, n_cases = [], [], [], [], 0
    for entry in dataset_entries(datalist, split, max_cases):
        image, label = _case_windows(entry, preprocessing, roi)
        w, m, _ = lesion_windows(image, label, roi)
        lw.append(w)
        lm.append(m)
        tiles, positive, _ = grid_windows(image, label, roi)
        gw.append(tiles)
        gp.append(positive)
        n_cases += 1
    gain = attention_gain(net, torch.cat(lw), torch.cat(lm))
    screening = screening_auc(net, torch.cat(gw), np.concatenate(gp))
    rows = []
    for k, v in gain["stages"].items():
        rows.append({"where": f"{k} block (before -> after CA)", "lesion_gain": v["lesion_gain"],
                     "background_gain": v["background_gain"], "contrast_before": v["before"]["ratio"],
                     "contrast_after": v["after"]["ratio"], "contrast_gain": v["contrast_gain"]})
    p = gain["probability"]
    rows.append({"where": "lesion probability (basic -> full)", "lesion_gain": p["lesion_gain"],
                 "background_gain": p["background_gain"], "contrast_before": p["basic"]["ratio"],
                 "contrast_after": p["full"]["ratio"], "contrast_gain": p["contrast_gain"]})
    table = markdown_table(rows, [("where", "measured at"), ("lesion_gain", "lesion gain"),
                                  ("background_gain", "background gain"),
                                  ("contrast_before", "lesion/background before"),
                                  ("contrast_after", "lesion/background after"),
                                  ("contrast_gain", "contrast gain")], decimal_cell) + "\n"
    table += (f"\nScreening ROC AUC over {screening['n_windows']} tiled windows ({screening['n_positive']} with "
              f"lesion voxels): score {_fmt(screening['auc'])}, edge part {_fmt(screening['auc_edge'])}, semantic "
              f"part {_fmt(screening['auc_semantic'])}.\n")
    result = {"n_cases": n_cases, "n_lesion_windows": int(sum(len(w) for w in lw)), "attention": gain,
              "screening": screening}
    png = figures.plot_screening(screening["scores"], screening["positive"], screening["auc"],
                                 f"{screening['n_windows']} windows of {n_cases} cases:")
    _write(Path(prefix), result, table, {"_screening": png})
    return result


def _fmt(value: float | None) -> str:
    return "undefined" if value is None else f"{value:.3f}"


def _detection_masks(lesions: Sequence[dict], affine: np.ndarray, shape: Sequence[int]) -> list[np.ndarray]:
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    return [ball_mask(shape, world_to_voxel(r["center_mm"], affine), float(r["diameter_mm"]) / 2, spacing)
            for r in lesions]


def _portable_path(path: str | os.PathLike) -> str:
    """``path`` relative to the working directory (the bundle root) when it lies below it, else its name: reports
    that go into docs must not carry one machine's absolute paths."""
    resolved, root = Path(path).resolve(), Path.cwd().resolve()
    return resolved.relative_to(root).as_posix() if resolved.is_relative_to(root) else resolved.name


@torch.no_grad()
def run_case_layers(
    net: nn.Module, preprocessing: Callable, case_dir: str | os.PathLike, prefix: str | os.PathLike,
    lesion: int = 1, roi: Sequence[int] = (64, 64, 32), overlap: float = 0.25,
) -> dict[str, Any]:
    """
    Stage response maps over a whole axial slab of an inference case (the image of ``<case_dir>/lesions.json``,
    preprocessed like the inference), ``roi[2]`` slices centred on detection ``#lesion``, computed window by window
    (:py:func:`~bundle.experiments.analysis.responses.sliding_response_maps`). Writes ``<prefix>.png`` (the full axial slice
    through the detection and every stage's map on it, detections outlined), ``<prefix>.json`` and ``<prefix>.md``
    (per stage and per detection in the slab: mean response inside the detection's ball, mean over the rest of the
    slab's body, their ratio).

    Raises:
        ValueError: when the case cannot be read or ``lesion`` is not a detection number of the file.
    """
    case_dir = Path(case_dir)
    found, image, affine = read_case_outputs(case_dir, preprocessing)
    lesions = found["lesions"]
    if not 1 <= int(lesion) <= len(lesions):
        raise ValueError(f"{case_dir / 'lesions.json'}: lesion must be 1..{len(lesions)}, got lesion={lesion}.")
    shape = tuple(image.shape[1:])
    center = world_to_voxel(lesions[int(lesion) - 1]["center_mm"], affine)
    depth = min(int(roi[2]), shape[2])
    z0 = int(min(max(round(center[2]) - depth // 2, 0), shape[2] - depth))
    maps = sliding_response_maps(net, image[..., z0 : z0 + depth], roi, overlap)  # stage -> (X, Y, depth)
    balls = [b[..., z0 : z0 + depth] for b in _detection_masks(lesions, affine, shape)]
    body = image[0, ..., z0 : z0 + depth].numpy() > 0.05  # above about -930 HU: not air
    inside_any = np.any(balls, axis=0)
    rows, k_slab = [], int(round(center[2])) - z0
    for n, ball in enumerate(balls, start=1):
        if not ball.any():
            continue
        row: dict[str, Any] = {"detection": n, "diameter_mm": float(lesions[n - 1]["diameter_mm"])}
        for name, m in maps.items():
            v = m.numpy()
            row[name] = float(v[ball].mean()) / float(v[body & ~inside_any].mean())
        rows.append(row)
    display = {name: _display(m.numpy(), k_slab) for name, m in maps.items()}
    outline = _display(np.any(balls, axis=0).astype(np.float32), k_slab)
    case = found.get("case", case_dir.name)
    png = figures.plot_layer_maps(_display(image[0, ..., z0 : z0 + depth].numpy(), k_slab), display, outline,
                                  f"{case}: stage responses on axial slice {z0 + k_slab} (through detection "
                                  f"#{lesion}); detections outlined", crop=_display(body, k_slab),
                                  panel_inches=2.6, palette=True)
    columns = [("detection", "detection"), ("diameter_mm", "diameter mm")] + [(k, k) for k in maps]
    table = markdown_table(rows, columns, _DECIMALS_2) + "\n"
    result = {"case": case, "image": _portable_path(found["image"]), "lesion": int(lesion),
              "slab": [z0, z0 + depth], "slice": z0 + k_slab, "roi": list(roi), "overlap": overlap, "ratios": rows}
    _write(Path(prefix), result, table, {"": png})
    return result
