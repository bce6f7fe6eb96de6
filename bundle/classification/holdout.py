"""Lesion / no-lesion slice classification: train on one host's cases, test on the other host's, per network.

The slice set comes from :func:`bundle.classification.ct_slices.build_slice_dataset` (``train/`` = the
training host's cases, ``test/`` = the held-out host's). Every network trains through
``configs/classification/train.json`` (:func:`~bundle.classification.engine.train_with_config`) with the same
budget, with the fixed CT window kept (:data:`~bundle.classification.ct_slices.WINDOW_OVERRIDE`). A few
training *cases* (all their slices) are held back as the validation set that picks the "best" checkpoint;
the test host is never looked at before the final scoring. Both the last-epoch network and the best-on-validation
checkpoint are scored on the test slices; the AUC interval is a cluster bootstrap over test cases, since the
slices of one scan are not independent.
"""

from __future__ import annotations

import logging
import os
import platform
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bundle.classification.compare import NETWORKS, write_markdown_block
from bundle.classification.ct_slices import CLASS_NAMES, WINDOW_OVERRIDE, slice_datalist
from bundle.classification.engine import DEFAULT_TRAIN_CONFIG, predict, train_with_config
from bundle.classification.figures import plot_prediction_grid
from bundle.classification.metrics import (
    bootstrap_auc_ci,
    count_parameters,
    latency_ms_per_image,
    model_size_mb,
    roc_auc,
)
from bundle.classification.transforms import classification_transforms
from bundle.classification.networks import load_pretrained_weights

__all__ = ["split_by_case", "holdout_evaluate", "holdout_markdown", "compare_on_slices"]

logger = logging.getLogger(__name__)

_INTENSITY_RANGE = (0.0, 255.0)  # the PNG grey levels of the slice set hold the HU window


def split_by_case(
    items: Sequence[dict[str, Any]], n_val_cases: int, seed: int = 0
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """
    Hold back every slice of ``n_val_cases`` randomly chosen cases (seeded) as a validation set.

    Returns:
        ``(train, val)`` in the order of ``items``.

    Raises:
        ValueError: when ``n_val_cases`` is < 1 or leaves no training case, or an item has no ``"case"``.
    """
    if any("case" not in d for d in items):
        raise ValueError("items must all have a 'case' key (use slice_datalist).")
    cases = sorted({str(d["case"]) for d in items})
    if not 1 <= n_val_cases < len(cases):
        raise ValueError(f"n_val_cases must be in [1, {len(cases) - 1}] for {len(cases)} cases, got {n_val_cases}.")
    val_cases = set(np.random.default_rng(seed).choice(cases, size=n_val_cases, replace=False).tolist())
    return [d for d in items if d["case"] not in val_cases], [d for d in items if d["case"] in val_cases]


def _scores(items: Sequence[dict[str, Any]], probs: np.ndarray, n_bootstrap: int, seed: int) -> dict[str, Any]:
    """Accuracy, AUC, case-cluster bootstrap interval and the AUC without the real lesion's slices."""
    y = np.asarray([d["label"] for d in items])
    cases = [d["case"] for d in items]
    low, high, _ = bootstrap_auc_ci(y, probs, n_bootstrap=n_bootstrap, seed=seed, groups=cases)
    synthetic = np.asarray([not (d["label"] == 1 and d.get("real_lesion", False)) for d in items])
    pred = probs.argmax(1)
    return {
        "n": int(y.size), "accuracy": float((pred == y).mean()), "auc": roc_auc(y, probs), "auc_ci": [low, high],
        "sensitivity": float((pred[y == 1] == 1).mean()), "specificity": float((pred[y == 0] == 0).mean()),
        "auc_synthetic_only": roc_auc(y[synthetic], probs[synthetic]), "n_real_lesion_slices": int((~synthetic).sum()),
    }


def holdout_evaluate(
    dataset_dir: str | os.PathLike,
    network: str,
    epochs: int = 4,
    batch_size: int = 8,
    spatial_size: Sequence[int] = (256, 128),
    n_val_cases: int = 4,
    seed: int = 0,
    threads: int = 1,
    work_dir: str | os.PathLike = "data/classification",
    n_bootstrap: int = 1000,
    config_file: str | os.PathLike = DEFAULT_TRAIN_CONFIG,
) -> dict[str, Any]:
    """
    Train one network on the ``train`` slices (less ``n_val_cases`` validation cases) and score it on ``test``.

    Args:
        dataset_dir: a :func:`~bundle.classification.ct_slices.build_slice_dataset` folder.
        network: a key of :data:`bundle.classification.compare.NETWORKS`.
        epochs: training epochs (early stopping off). Defaults to 4.
        batch_size: training batch size. Defaults to 8.
        spatial_size: network input (H, W); the slices are 512 x 251 (rows x columns). Defaults to (256, 128).
        n_val_cases: training cases held back to choose the best checkpoint. Defaults to 4.
        seed: seed of the validation cases and of training. Defaults to 0.
        threads: torch CPU threads for training. Defaults to 1.
        work_dir: checkpoints and histories go to ``<work_dir>/<set>/<network>``. Defaults to
            ``"data/classification"``.
        n_bootstrap: resamples of the AUC interval. Defaults to 1000.
        config_file: the train config. Defaults to ``configs/classification/train.json``.

    Returns:
        ``{"network", "last", "best" (see ``_scores``: accuracy, auc, auc_ci, sensitivity, specificity,
        auc_synthetic_only, ...), "probs_last", "items" (test datalist), "images" (test inputs), "history"
        (markdown), "train_seconds", "size_mb", "params", "latency_ms", "n_train", "n_val"}``.

    Raises:
        ValueError: when ``network`` is unknown or the slice set is missing (see ``slice_datalist``).
    """
    if network not in NETWORKS:
        raise ValueError(f"network must be one of {sorted(NETWORKS)}, got network={network!r}.")
    spec, root = NETWORKS[network], Path(dataset_dir)
    train, val = split_by_case(slice_datalist(root, "train"), n_val_cases, seed=seed)
    test = slice_datalist(root, "test")
    size_tag = "x".join(str(int(v)) for v in spatial_size)
    cache_dir = Path(work_dir) / "cache" / f"{root.name}_c{spec['in_channels']}_{size_tag}"
    datasets = {
        f"{part}#dataset": {"_target_": "PersistentDataset", "data": f"$@split[{j}]",
                            "transform": f"@{part}#preprocessing", "cache_dir": str(cache_dir)}
        for j, part in enumerate(("train", "validate"))
    }
    out_dir = Path(work_dir) / root.name / network
    start = time.perf_counter()
    net, history, _ = train_with_config(
        config_file, dataset_dir=str(root / "train"), output_dir=str(out_dir), split=[train, val],
        network_def=dict(spec["network_def"]), in_channels=spec["in_channels"], learning_rate=spec["learning_rate"],
        epochs=epochs, patience=epochs + 1, batch_size=batch_size, spatial_size=list(spatial_size), seed=seed,
        num_threads=threads, **dict(WINDOW_OVERRIDE), **datasets,
    )
    train_seconds = time.perf_counter() - start
    transform = classification_transforms(False, spatial_size=spatial_size, in_channels=spec["in_channels"],
                                          intensity_range=_INTENSITY_RANGE)
    last = predict(net, test, transform, cache_dir=cache_dir)
    result: dict[str, Any] = {"network": network, "probs_last": last["probs"], "items": test, "images": last["images"]}
    result["last"] = _scores(test, last["probs"], n_bootstrap, seed)
    load_pretrained_weights(net, out_dir / "model.pt")  # best accuracy on the validation cases
    result["best"] = _scores(test, predict(net, test, transform, cache_dir=cache_dir)["probs"], n_bootstrap, seed)
    x_shape = (1, spec["in_channels"], *(int(v) for v in spatial_size))
    result.update(
        history=history.markdown(), train_seconds=train_seconds, size_mb=model_size_mb(net),
        params=count_parameters(net), latency_ms=latency_ms_per_image(net, x_shape, threads=1, repeats=20),
        n_train=len(train), n_val=len(val),
    )
    logger.info("%s on %s: test accuracy %.3f, AUC %.3f", network, root, result["last"]["accuracy"],
                result["last"]["auc"])
    return result


def holdout_markdown(results: Sequence[dict[str, Any]]) -> str:
    """Side-by-side table of :func:`holdout_evaluate` results (test slices, last epoch and best-on-validation)."""
    lines = [
        "| network | test acc (last epoch) | sens / spec | test AUC [95 % CI, by case] | AUC, synthetic-lesion "
        "positives only | acc / AUC, checkpoint best on validation cases | size MB | ms / image (1 thread) "
        "| params | train s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        last, best = r["last"], r["best"]
        lines.append(
            f"| {NETWORKS[r['network']]['label']} | {last['accuracy']:.2f} | {last['sensitivity']:.2f} / "
            f"{last['specificity']:.2f} | {last['auc']:.2f} [{last['auc_ci'][0]:.2f}, {last['auc_ci'][1]:.2f}] "
            f"| {last['auc_synthetic_only']:.2f} | {best['accuracy']:.2f} / {best['auc']:.2f} | {r['size_mb']:.1f} "
            f"| {r['latency_ms']:.0f} | {r['params'] / 1e6:.2f} M | {r['train_seconds']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def compare_on_slices(
    dataset_dir: str | os.PathLike = "data/classification/ct_slices",
    networks: Sequence[str] = ("mobilenet_v2", "resnet18", "ghost_ca"),
    epochs: int = 4,
    batch_size: int = 8,
    spatial_size: Sequence[int] = (256, 128),
    n_val_cases: int = 4,
    seed: int = 0,
    threads: int = 1,
    work_dir: str | os.PathLike = "data/classification",
    markdown_path: str | os.PathLike | None = "docs/classification.md",
    figure_path: str | os.PathLike | None = "docs/figures/classification_ct_slices_grid.png",
    command: str = "",
) -> list[dict[str, Any]]:
    """
    :func:`holdout_evaluate` for every network; writes the table into the ``ct_slices`` block of
    ``markdown_path`` and a grid of test predictions of the first network (3 slices of each class from each
    of the first test cases) to ``figure_path``. Arguments as in :func:`holdout_evaluate`; None skips an output.

    Returns:
        the :func:`holdout_evaluate` results, in order.
    """
    torch.set_num_threads(threads)
    start = time.perf_counter()
    results = [
        holdout_evaluate(dataset_dir, n, epochs=epochs, batch_size=batch_size, spatial_size=spatial_size,
                         n_val_cases=n_val_cases, seed=seed, threads=threads, work_dir=work_dir)
        for n in networks
    ]
    total = time.perf_counter() - start
    if figure_path is not None:
        first = results[0]
        items, probs = first["items"], first["probs_last"]
        picks = [i for c in (1, 0) for i in [j for j, d in enumerate(items) if d["label"] == c][:9]]
        plot_prediction_grid([first["images"][i] for i in picks], [items[i]["label"] for i in picks],
                             probs[picks].argmax(1).tolist(), CLASS_NAMES, figure_path,
                             probs=probs[picks].max(1).tolist(), n_columns=9, panel_inches=1.25,
                             title=f"test slices (held-out host), {NETWORKS[first['network']]['label']}")
    if markdown_path is not None:
        counts = {s: len(slice_datalist(dataset_dir, s)) for s in ("train", "test")}
        load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
        header = (
            f"Command: `{command or 'python -m scripts.classify_compare ct_slices'}`\n\n"
            f"Machine: {os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), torch "
            f"{torch.__version__}, {threads} thread(s); load average at the end {load[0]:.1f} (shared cores: "
            f"times are upper bounds). Total {total / 60:.1f} min. {counts['train']} training-host slices "
            f"({results[0]['n_train']} trained on, {results[0]['n_val']} from {n_val_cases} held-back cases for "
            f"choosing the best checkpoint), {counts['test']} test slices of the held-out host; {epochs} epochs, "
            f"batch {batch_size}, input {spatial_size[0]}x{spatial_size[1]}, Adam + cosine annealing, rotation "
            f"±15° and left-right flip (p = 0.5), seed {seed}.\n\n"
        )
        write_markdown_block(markdown_path, header + holdout_markdown(results), name="ct_slices")
    return results
