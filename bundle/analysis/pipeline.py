"""Run the analyses on a data set and write their tables (JSON + markdown) and figures atomically.

The network comes from ``network_def`` of ``configs/inference.json`` with the weights of ``models/model.pt``; the
image/label preprocessing is ``preprocessing`` of ``configs/train.json`` (what the shipped model was trained on),
so the windows the analyses feed the network are the ones it was trained and run on.
"""

from __future__ import annotations

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

from bundle.analysis import figures
from bundle.analysis.explain import lesion_gradcam, render_explanation, world_to_voxel
from bundle.analysis.features import lesion_features, summarize_by_band
from bundle.analysis.responses import attention_gain, layer_responses, response_map, screening_auc, stage_modules
from bundle.analysis.responses import capture_outputs
from bundle.analysis.windows import grid_windows, lesion_windows
from bundle.data.datalist import load_datalist
from bundle.io.writers import atomic_write_bytes, atomic_write_text

__all__ = [
    "load_network",
    "load_preprocessing",
    "dataset_entries",
    "run_features",
    "run_layers",
    "run_attention",
    "explain_case",
]

logger = logging.getLogger(__name__)

FEATURE_COLUMNS = [("band", "size band (mm)"), ("n", "lesions"), ("lesion_mean", "lesion mean"),
                   ("surround_mean", "surround mean"), ("diff_mean", "contrast"), ("lesion_var", "lesion var"),
                   ("surround_var", "surround var"), ("ratio_var", "var ratio"), ("lesion_gradient", "edge grad"),
                   ("surround_gradient", "surround grad"), ("ratio_gradient", "grad ratio"),
                   ("p_gradient", "p (grad)")]


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


def load_network(config_file: str | os.PathLike, ckpt: str | os.PathLike) -> nn.Module:
    """
    ``network_def`` of a bundle config with a state dict loaded (``weights_only=True``), in eval mode on CPU.

    Raises:
        ValueError: when the checkpoint file does not exist or does not fit the network (message names it).
    """
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(config_file))
    net = parser.get_parsed_content("network_def")
    if not Path(ckpt).is_file():
        raise ValueError(f"ckpt must be an existing weights file, got {ckpt}.")
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    state = state.get("model", state) if isinstance(state, dict) else state
    try:
        net.load_state_dict(state)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"{ckpt}: weights do not fit network_def of {config_file} ({str(e).splitlines()[0]}).") from e
    return net.eval()


def load_preprocessing(config_file: str | os.PathLike, key: str = "preprocessing") -> Callable:
    """The ``key`` component of a bundle config (e.g. ``preprocessing`` of ``configs/train.json``)."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(config_file))
    return parser.get_parsed_content(key)


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
    table = figures.markdown_table(rows, FEATURE_COLUMNS, digits=2)
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
    table = figures.markdown_table(rows, [("stage", "stage"), ("lesion", "lesion response"),
                                          ("background", "background response"), ("ratio", "ratio"),
                                          ("median_window_ratio", "median window ratio"), ("n_windows", "windows")])
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
    table = figures.markdown_table(rows, [("where", "measured at"), ("lesion_gain", "lesion gain"),
                                          ("background_gain", "background gain"),
                                          ("contrast_before", "lesion/background before"),
                                          ("contrast_after", "lesion/background after"),
                                          ("contrast_gain", "contrast gain")])
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


def explain_case(
    net: nn.Module, preprocessing: Callable, case_dir: str | os.PathLike, roi: Sequence[int] = (64, 64, 32),
    max_lesions: int | None = None, target_layer: str = "net.decoder.2",
) -> list[Path]:
    """
    Write ``explain_<k>.png`` (k = 1, 2, ... as numbered in ``overlay.png``) into ``case_dir`` for the lesions of
    its ``lesions.json``, from the image the file names, preprocessed like the inference.

    Raises:
        ValueError: when ``case_dir`` has no readable ``lesions.json`` or the image cannot be read (naming it).
    """
    case_dir = Path(case_dir)
    path = case_dir / "lesions.json"
    try:
        found = json.loads(path.read_text())
        image_path, lesions = found["image"], found["lesions"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path}: cannot read the lesions file ({type(e).__name__}: {e}).") from e
    try:
        data = preprocessing({"image": image_path})
    except Exception as e:  # MONAI wraps reader errors in RuntimeError
        raise ValueError(f"{image_path}: cannot read or preprocess the image ({' '.join(str(e).split())[:300]}).") from e
    image = torch.as_tensor(data["image"]).float()
    affine = np.asarray(data["image"].affine, dtype=np.float64)
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    written = []
    for k, lesion in enumerate(lesions[:max_lesions] if max_lesions else lesions, start=1):
        center = world_to_voxel(lesion["center_mm"], affine)
        result = lesion_gradcam(net, image, center, float(lesion["diameter_mm"]) / 2, spacing, roi, target_layer)
        title = f"{found.get('case', case_dir.name)} #{k}: {float(lesion['diameter_mm']):.1f} mm, score {lesion['score']}"
        written.append(atomic_write_bytes(case_dir / f"explain_{k}.png", render_explanation(result, title, spacing),
                                          protected=[image_path]))
    return written
