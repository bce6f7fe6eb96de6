"""Stratified k-fold comparison of the bundle's classifiers on the registry image sets, under one budget.

Every fold trains through ``configs/classification/train.json`` (:func:`~bundle.classification.engine.
train_with_config`) with the same epochs, batch size, augmentation and schedule for every network; only the
network (and its learning rate: fine-tuning vs from scratch) changes. The held-out fold is scored twice:

- ``last``: the network after the last epoch. Nothing was chosen on the held-out fold, so this is the honest
  estimate (early stopping is switched off inside the comparison for the same reason);
- ``best``: the checkpoint with the best accuracy on that same fold, the seeds' protocol. It is optimistic by
  construction on sets this small, and is reported only to show how much.

Out-of-fold probabilities of all folds are pooled for the AUC and its bootstrap interval.
"""

from __future__ import annotations

import logging
import os
import platform
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import torch

from bundle.classification.engine import DEFAULT_TRAIN_CONFIG, predict, train_with_config
from bundle.classification.figures import gradcam_maps, plot_gradcam_grid, plot_prediction_grid
from bundle.classification.metrics import (
    bootstrap_auc_ci,
    count_parameters,
    latency_ms_per_image,
    model_size_mb,
    roc_auc,
)
from bundle.classification.datalists import classification_datalist
from bundle.classification.splits import stratified_kfold
from bundle.classification.transforms import classification_transforms
from bundle.io.atomic import atomic_write_text
from bundle.classification.networks import load_pretrained_weights

__all__ = ["NETWORKS", "cross_validate", "compare_classifiers", "results_markdown", "write_markdown_block"]

logger = logging.getLogger(__name__)

NETWORKS: Mapping[str, dict[str, Any]] = MappingProxyType({
    # label, network_def override, input channels, learning rate (fine-tuning vs from scratch)
    "mobilenet_v2": {
        "label": "MobileNetV2 (ImageNet, last 4 blocks + head trained)",
        "network_def": {"_target_": "bundle.classification.networks.mobilenet_v2_classifier",
                        "num_classes": "@num_classes", "pretrained": True, "trainable_blocks": 4},
        "in_channels": 3,
        "learning_rate": 3e-4,
    },
    "resnet18": {
        "label": "ResNet-18 (from scratch)",
        "network_def": {"_target_": "bundle.classification.networks.resnet18_classifier",
                        "num_classes": "@num_classes"},
        "in_channels": 3,
        "learning_rate": 1e-3,
    },
    "ghost_ca": {
        "label": "GhostCAClassifier (from scratch, 1 channel)",
        "network_def": {"_target_": "bundle.classification.networks.GhostCAClassifier", "spatial_dims": 2,
                        "in_channels": 1, "num_classes": "@num_classes"},
        "in_channels": 1,
        "learning_rate": 1e-3,
    },
})  # read-only; cross_validate copies the network_def it overrides with


def _fold_metrics(y: np.ndarray, probs: np.ndarray) -> tuple[float, float]:
    return float((probs.argmax(1) == y).mean()), roc_auc(y, probs)


def cross_validate(
    source: str,
    network: str,
    n_splits: int = 4,
    seed: int = 0,
    epochs: int = 10,
    batch_size: int = 4,
    spatial_size: Sequence[int] = (224, 224),
    work_dir: str | os.PathLike = "data/classification",
    threads: int = 1,
    config_file: str | os.PathLike = DEFAULT_TRAIN_CONFIG,
) -> dict[str, Any]:
    """
    Stratified k-fold training and scoring of one network on one image set.

    Args:
        source: a registry set (``"pneumonia"``, ``"brain_tumor"``) or a class-folder tree.
        network: a key of :data:`NETWORKS`.
        n_splits: folds. Defaults to 4.
        seed: split and training seed. Defaults to 0.
        epochs: epochs per fold (early stopping off). Defaults to 10.
        batch_size: training batch size. Defaults to 4.
        spatial_size: network input (H, W). Defaults to (224, 224).
        work_dir: folder for per-fold checkpoints and histories. Defaults to ``"data/classification"``.
        threads: torch CPU threads for training. Defaults to 1.
        config_file: the train config. Defaults to ``configs/classification/train.json``.

    Returns:
        ``{"source", "network", "class_names", "labels", "probs_last", "probs_best" (out-of-fold, (N, C)),
        "fold_acc_last", "fold_acc_best", "fold_auc_last", "cams" (per image (H, W) map of the last-epoch model),
        "images" (N, C, H, W), "histories" (markdown per fold), "train_seconds", "size_mb", "params",
        "latency_ms" ({1: ms, 2: ms} per thread count)}``.

    Raises:
        ValueError: when ``network`` is not a key of :data:`NETWORKS`.
    """
    if network not in NETWORKS:
        raise ValueError(f"network must be one of {sorted(NETWORKS)}, got network={network!r}.")
    spec = NETWORKS[network]
    datalist, class_names = classification_datalist(source)
    y = np.asarray([d["label"] for d in datalist])
    n, c = len(datalist), len(class_names)
    out: dict[str, Any] = {
        "source": str(source), "network": network, "class_names": class_names, "labels": y,
        "probs_last": np.zeros((n, c)), "probs_best": np.zeros((n, c)), "fold_acc_last": [], "fold_acc_best": [],
        "fold_auc_last": [], "cams": [None] * n, "images": [None] * n, "histories": [], "train_seconds": 0.0,
    }
    eval_transform = classification_transforms(False, spatial_size=spatial_size, in_channels=spec["in_channels"])
    # preprocessed images are cached on disk once per set, channel count and size, and shared by all folds
    size_tag = "x".join(str(int(v)) for v in spatial_size)
    cache_dir = Path(work_dir) / "cache" / f"{Path(str(source)).name}_c{spec['in_channels']}_{size_tag}"
    datasets = {
        part: {"_target_": "PersistentDataset", "data": f"$@split[{j}]", "transform": f"@{part}#preprocessing",
               "cache_dir": str(cache_dir)}
        for j, part in enumerate(("train", "validate"))
    }
    for k, (train_idx, val_idx) in enumerate(stratified_kfold(y.tolist(), n_splits=n_splits, seed=seed)):
        fold_dir = Path(work_dir) / Path(str(source)).name / network / f"fold{k}"
        start = time.perf_counter()
        net, history, _ = train_with_config(
            config_file,
            dataset_dir=str(source), output_dir=str(fold_dir), split=[[datalist[i] for i in train_idx],
                                                                      [datalist[i] for i in val_idx]],
            network_def=dict(spec["network_def"]), in_channels=spec["in_channels"],
            learning_rate=spec["learning_rate"], epochs=epochs, patience=epochs + 1, batch_size=batch_size,
            spatial_size=list(spatial_size), seed=seed + k, num_threads=threads,
            **{"train#dataset": datasets["train"], "validate#dataset": datasets["validate"]},
        )
        out["train_seconds"] += time.perf_counter() - start
        val = [datalist[i] for i in val_idx]
        last = predict(net, val, eval_transform, cache_dir=cache_dir)
        out["probs_last"][val_idx] = last["probs"]
        for j, i in enumerate(val_idx):
            out["images"][i] = last["images"][j]
        cams = gradcam_maps(net, last["images"])
        for j, i in enumerate(val_idx):
            out["cams"][i] = cams[j]
        load_pretrained_weights(net, fold_dir / "model.pt")  # the checkpoint chosen on this fold's accuracy
        best = predict(net, val, eval_transform, cache_dir=cache_dir)
        out["probs_best"][val_idx] = best["probs"]
        acc, auc = _fold_metrics(y[val_idx], last["probs"])
        out["fold_acc_last"].append(acc)
        out["fold_auc_last"].append(auc)
        out["fold_acc_best"].append(_fold_metrics(y[val_idx], best["probs"])[0])
        out["histories"].append(history.markdown())
        logger.info("%s %s fold %d: last-epoch accuracy %.3f, AUC %.3f; best-epoch accuracy %.3f",
                    source, network, k, acc, auc, out["fold_acc_best"][-1])
    probe = classification_transforms(False, spatial_size=spatial_size, in_channels=spec["in_channels"])
    x_shape = (1,) + tuple(probe(datalist[0])["image"].shape)
    out["size_mb"] = model_size_mb(net)
    out["params"] = count_parameters(net)
    # 1 and 2 threads: on a shared machine, 2 threads can be slower than 1 (threads wait for each other)
    out["latency_ms"] = {t: latency_ms_per_image(net, x_shape, threads=t, repeats=20) for t in (1, 2)}
    return out


def _mean_sd(values: Sequence[float]) -> str:
    v = np.asarray([x for x in values if not np.isnan(x)], dtype=float)
    return "n/a" if v.size == 0 else f"{v.mean():.2f} ± {v.std(ddof=1) if v.size > 1 else 0.0:.2f}"


def results_markdown(results: Sequence[dict[str, Any]], n_bootstrap: int = 1000, seed: int = 0) -> str:
    """
    Side-by-side table of :func:`cross_validate` results: fold accuracy mean ± sd (last and best epoch), pooled
    out-of-fold accuracy and AUC with a 95 % bootstrap interval, size, latency and parameters.
    """
    lines = [
        "| set | network | acc, last epoch (fold mean ± sd) | acc, best epoch on the test fold (optimistic) "
        "| pooled OOF acc | pooled OOF AUC [95 % CI] | size MB | ms / image, 1 / 2 threads | params | train s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        y, p = r["labels"], r["probs_last"]
        low, high, _ = bootstrap_auc_ci(y, p, n_bootstrap=n_bootstrap, seed=seed)
        lines.append(
            f"| {Path(r['source']).name} (n={len(y)}) | {NETWORKS[r['network']]['label']} "
            f"| {_mean_sd(r['fold_acc_last'])} | {_mean_sd(r['fold_acc_best'])} "
            f"| {float((p.argmax(1) == y).mean()):.2f} | {roc_auc(y, p):.2f} [{low:.2f}, {high:.2f}] "
            f"| {r['size_mb']:.1f} | {r['latency_ms'][1]:.0f} / {r['latency_ms'][2]:.0f} | {r['params'] / 1e6:.2f} M "
            f"| {r['train_seconds']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def write_markdown_block(path: str | os.PathLike, block: str, name: str = "classify_compare") -> Path:
    """Replace the text between the ``<!-- <name>:begin/end -->`` markers of ``path`` (append if absent)."""
    path = Path(path)
    text = path.read_text() if path.is_file() else ""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    new = f"{begin}\n{block.rstrip()}\n{end}"
    if begin in text and end in text:
        text = re.sub(re.escape(begin) + r".*?" + re.escape(end), lambda _: new, text, flags=re.S)
    else:
        text = text.rstrip() + ("\n\n" if text else "") + new + "\n"
    atomic_write_text(path, text)
    return path


def _pick_columns(labels: np.ndarray, per_class: int) -> list[int]:
    """Up to ``per_class`` image indices of every class, in class order."""
    return [int(i) for c in np.unique(labels) for i in np.flatnonzero(labels == c)[:per_class]]


def compare_classifiers(
    sources: Sequence[str] = ("pneumonia", "brain_tumor"),
    networks: Sequence[str] = ("mobilenet_v2", "resnet18", "ghost_ca"),
    n_splits: int = 4,
    seed: int = 0,
    epochs: int = 10,
    batch_size: int = 4,
    spatial_size: Sequence[int] = (224, 224),
    threads: int = 1,
    work_dir: str | os.PathLike = "data/classification",
    markdown_path: str | os.PathLike | None = "docs/classification.md",
    figure_dir: str | os.PathLike | None = "docs/figures",
    command: str = "",
) -> list[dict[str, Any]]:
    """
    Cross-validate every network on every set, then write the table (into the marked block of
    ``markdown_path``) and, per set, ``classification_<set>_grid.png`` (out-of-fold predictions of the first
    network) and ``classification_<set>_gradcam.png`` (Grad-CAM of every network on 1-2 images per class).

    Args:
        sources: registry sets or class-folder trees. Defaults to ``("pneumonia", "brain_tumor")``.
        networks: keys of :data:`NETWORKS`. Defaults to all three.
        n_splits, seed, epochs, batch_size, spatial_size, threads, work_dir: see :func:`cross_validate`.
        markdown_path: file whose ``classify_compare`` block receives the table; None skips it.
            Defaults to ``"docs/classification.md"``.
        figure_dir: folder of the PNG figures; None skips them. Defaults to ``"docs/figures"``.
        command: the command line to quote in the markdown. Defaults to ``""``.

    Returns:
        the :func:`cross_validate` results, in order.
    """
    torch.set_num_threads(threads)
    start = time.perf_counter()
    results = [
        cross_validate(s, net, n_splits=n_splits, seed=seed, epochs=epochs, batch_size=batch_size,
                       spatial_size=spatial_size, work_dir=work_dir, threads=threads)
        for s in sources for net in networks
    ]
    total = time.perf_counter() - start
    if figure_dir is not None:
        for s in sources:
            rows = [r for r in results if r["source"] == str(s)]
            name, first = Path(str(s)).name, rows[0]
            y, p = first["labels"], first["probs_last"]
            plot_prediction_grid(first["images"], y.tolist(), p.argmax(1).tolist(), first["class_names"],
                                 Path(figure_dir) / f"classification_{name}_grid.png", probs=p.max(1).tolist(),
                                 n_columns=9, panel_inches=1.25,
                                 title=f"{name}: out-of-fold predictions, {NETWORKS[first['network']]['label']}")
            cols = _pick_columns(y, max(1, 4 // len(first["class_names"])))  # about 4 columns keep it < 300 KB
            plot_gradcam_grid([first["images"][i] for i in cols], [[r["cams"][i] for i in cols] for r in rows],
                              [r["network"] for r in rows], Path(figure_dir) / f"classification_{name}_gradcam.png",
                              column_titles=[first["class_names"][y[i]] for i in cols], panel_inches=1.5, dpi=80)
    if markdown_path is not None:
        load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
        header = (
            f"Command: `{command or 'python -m scripts.classify_compare'}`\n\n"
            f"Machine: {os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), torch "
            f"{torch.__version__}; training with {threads} thread(s), latency (batch 1, median of 20) with 1 and "
            f"2 threads; load average at the end {load[0]:.1f} (the cores were shared with other jobs, so times "
            f"are upper bounds). Total {total / 60:.1f} min. {n_splits}-fold stratified CV "
            f"(seed {seed}), {epochs} epochs per fold, batch {batch_size}, input {spatial_size[0]}x{spatial_size[1]}, "
            f"Adam + cosine annealing, rotation ±15° and horizontal flip (p = 0.5), no early stopping.\n\n"
        )
        write_markdown_block(markdown_path, header + results_markdown(results, seed=seed))
    return results
