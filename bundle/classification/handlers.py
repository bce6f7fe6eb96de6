"""Ignite handlers for the classification configs: a per-epoch history table and an evaluation report writer.

Both expect engines built with ``decollate=False`` (batch tensors in ``engine.state.output``), as the
classification configs do, so ignite metrics see (B, num_classes) logits and (B,) labels.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from ignite.engine import Engine, Events

from bundle.classification.figures import gradcam_maps, plot_gradcam_grid, plot_prediction_grid
from bundle.classification.metrics import (
    classification_metrics,
    count_parameters,
    latency_ms_per_image,
    model_size_mb,
)

__all__ = ["EpochHistory", "ClassificationReport"]

logger = logging.getLogger(__name__)


def _number(value: Any) -> float:
    if isinstance(value, torch.Tensor):
        value = value.item()
    return float(value) if value is not None else float("nan")


def _fmt(value: float, digits: int = 4) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


class EpochHistory:
    """
    Record one row per training epoch: learning rate, training loss and accuracy (``trainer.state.metrics``)
    and validation loss and accuracy (``validator.state.metrics``); log each row and, at the end, write
    ``history.csv`` and ``history.md`` to ``output_dir``.

    Attach it to the trainer AFTER the ``ValidationHandler`` so that the validation of the epoch has run.

    Args:
        validator: the evaluator whose metrics to read; None records training metrics only. Defaults to None.
        output_dir: folder for the tables; None keeps them in memory only. Defaults to None.
        train_metrics: names in ``trainer.state.metrics``. Defaults to ``("train_loss", "train_acc")``.
        val_metrics: names in ``validator.state.metrics``. Defaults to ``("val_loss", "val_acc")``.
        best_metric: validation metric (higher is better) whose best epoch is marked. Defaults to ``"val_acc"``.
    """

    def __init__(
        self,
        validator: Engine | None = None,
        output_dir: str | os.PathLike | None = None,
        train_metrics: Sequence[str] = ("train_loss", "train_acc"),
        val_metrics: Sequence[str] = ("val_loss", "val_acc"),
        best_metric: str = "val_acc",
    ) -> None:
        self.validator = validator
        self.output_dir = None if output_dir is None else Path(output_dir)
        self.train_metrics = tuple(train_metrics)
        self.val_metrics = tuple(val_metrics)
        self.best_metric = best_metric
        self.rows: list[dict[str, float]] = []
        self._lr = float("nan")

    def attach(self, engine: Engine) -> None:
        """Register on ``engine`` (the trainer): EPOCH_STARTED, EPOCH_COMPLETED and COMPLETED."""
        engine.add_event_handler(Events.STARTED, self._reset)
        engine.add_event_handler(Events.EPOCH_STARTED, self._epoch_started)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)
        engine.add_event_handler(Events.COMPLETED, self._completed)

    def _reset(self, engine: Engine) -> None:
        self.rows = []

    def _epoch_started(self, engine: Engine) -> None:
        optimizer = getattr(engine, "optimizer", None)
        self._lr = float(optimizer.param_groups[0]["lr"]) if optimizer is not None else float("nan")

    def __call__(self, engine: Engine) -> None:
        row: dict[str, float] = {"epoch": float(engine.state.epoch), "lr": self._lr}
        for name in self.train_metrics:
            row[name] = _number(engine.state.metrics.get(name))
        for name in self.val_metrics:
            row[name] = _number(self.validator.state.metrics.get(name)) if self.validator is not None else float("nan")
        self.rows.append(row)
        logger.info("epoch %d: %s", int(row["epoch"]),
                    ", ".join(f"{k}={_fmt(v, 6 if k == 'lr' else 4)}" for k, v in row.items() if k != "epoch"))

    def best_epoch(self) -> int | None:
        """
        The epoch with the highest ``best_metric``, the last of ties (as ``CheckpointSaver`` with
        ``key_metric_greater_or_equal=True`` keeps it); None if the metric was never measured.
        """
        values = [(r.get(self.best_metric, float("nan")), int(r["epoch"])) for r in self.rows]
        values = [v for v in values if not math.isnan(v[0])]
        return max(values)[1] if values else None

    def markdown(self) -> str:
        """The history as a markdown table; the best epoch is marked with ``*``."""
        if not self.rows:
            return ""
        keys = list(self.rows[0])
        best = self.best_epoch()
        lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
        for r in self.rows:
            cells = [f"{int(r['epoch'])}{' *' if int(r['epoch']) == best else ''}"]
            cells += [_fmt(r[k], 6 if k == "lr" else 4) for k in keys[1:]]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"

    def _completed(self, engine: Engine) -> None:
        if self.output_dir is None or not self.rows:
            return
        self.output_dir.mkdir(parents=True, exist_ok=True)
        with open(self.output_dir / "history.csv", "w", newline="") as stream:
            writer = csv.DictWriter(stream, fieldnames=list(self.rows[0]))
            writer.writeheader()
            writer.writerows(self.rows)
        (self.output_dir / "history.md").write_text(self.markdown())
        logger.info("per-epoch history written to %s", self.output_dir / "history.md")


class ClassificationReport:
    """
    Collect an evaluator's predictions and, when it completes, write ``predictions.csv`` (path, true and predicted
    class, probabilities) and, when labels are known, ``metrics.json`` (accuracy, AUC with a bootstrap 95 %
    interval, confusion matrix), ``report.md``, a prediction grid ``grid.png`` and Grad-CAM maps ``gradcam.png``.
    With a ``network``, its size (MB), parameter count and CPU latency per image are added to ``metrics.json``.

    Args:
        output_dir: the output folder.
        class_names: one name per class.
        network: the classifier, for Grad-CAM; None skips it. Defaults to None.
        target_layer: Grad-CAM layer; None uses ``network.cam_layer``. Defaults to None.
        path_key: batch key holding the image paths (a list per batch). Defaults to ``"path"``.
        n_bootstrap: resamples of the AUC interval. Defaults to 1000.
        seed: bootstrap seed. Defaults to 0.
        max_figure_images: images kept for the figures. Defaults to 12.
        figures: write the PNG figures. Defaults to True.
        latency_threads: CPU threads for the latency measurement; 0 skips it. Defaults to 2.
    """

    def __init__(
        self,
        output_dir: str | os.PathLike,
        class_names: Sequence[str],
        network: nn.Module | None = None,
        target_layer: str | None = None,
        path_key: str = "path",
        n_bootstrap: int = 1000,
        seed: int = 0,
        max_figure_images: int = 12,
        figures: bool = True,
        latency_threads: int = 2,
    ) -> None:
        self.output_dir = Path(output_dir)
        self.class_names = [str(c) for c in class_names]
        self.network = network
        self.target_layer = target_layer
        self.path_key = path_key
        self.n_bootstrap = n_bootstrap
        self.seed = seed
        self.max_figure_images = max_figure_images
        self.figures = figures
        self.latency_threads = latency_threads
        self.metrics: dict[str, Any] = {}
        self._reset()

    def _reset(self, engine: Engine | None = None) -> None:
        self.probs: list[np.ndarray] = []
        self.labels: list[int] = []
        self.paths: list[str] = []
        self.images: list[torch.Tensor] = []

    def attach(self, engine: Engine) -> None:
        """Register on ``engine`` (an evaluator): EPOCH_STARTED, ITERATION_COMPLETED and COMPLETED."""
        engine.add_event_handler(Events.EPOCH_STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect)
        engine.add_event_handler(Events.COMPLETED, self)

    def _collect(self, engine: Engine) -> None:
        output, batch = engine.state.output, engine.state.batch
        logits = torch.as_tensor(output["pred"]).detach().float().cpu()  # (B, num_classes)
        self.probs.extend(torch.softmax(logits, dim=1).numpy())
        label = output.get("label") if isinstance(output, dict) else None
        if label is not None:
            self.labels.extend(int(v) for v in torch.as_tensor(label).reshape(-1).tolist())
        paths = batch.get(self.path_key) if isinstance(batch, dict) else None
        if paths is None:
            paths = [""] * logits.shape[0]
        self.paths.extend(str(p) for p in paths)
        room = self.max_figure_images - len(self.images)
        if room > 0:
            self.images.extend(torch.as_tensor(output["image"]).detach().float().cpu()[:room])

    def __call__(self, engine: Engine) -> None:
        self.write()

    def write(self) -> dict[str, Any]:
        """Write the outputs of the collected predictions; returns the metrics (empty without labels)."""
        self.output_dir.mkdir(parents=True, exist_ok=True)
        probs = np.stack(self.probs) if self.probs else np.zeros((0, len(self.class_names)))
        pred = probs.argmax(1) if len(probs) else np.zeros(0, dtype=int)
        has_labels = len(self.labels) == len(probs) and len(probs) > 0
        with open(self.output_dir / "predictions.csv", "w", newline="") as stream:
            writer = csv.writer(stream)
            writer.writerow(["path", "true", "pred"] + [f"p_{c}" for c in self.class_names])
            for i in range(len(probs)):
                true = self.class_names[self.labels[i]] if has_labels else ""
                writer.writerow([self.paths[i], true, self.class_names[pred[i]]] + [f"{p:.6f}" for p in probs[i]])
        self.metrics = {}
        if has_labels:
            self.metrics = classification_metrics(
                self.labels, probs, self.class_names, n_bootstrap=self.n_bootstrap, seed=self.seed
            )
        if self.network is not None:
            self.metrics.update(self._model_stats(self.network))
        if has_labels:
            (self.output_dir / "metrics.json").write_text(json.dumps(self.metrics, indent=2))
            (self.output_dir / "report.md").write_text(self._markdown())
            logger.info("accuracy %.4f, AUC %.4f [%.4f, %.4f] on %d images", self.metrics["accuracy"],
                        self.metrics["auc"], *self.metrics["auc_ci"], self.metrics["n"])
        if self.figures and self.images:
            k = len(self.images)
            plot_prediction_grid(self.images, self.labels[:k] if has_labels else None, pred[:k].tolist(),
                                 self.class_names, self.output_dir / "grid.png", probs=probs[:k].max(1).tolist())
            if self.network is not None:
                device = next(self.network.parameters()).device
                maps = gradcam_maps(self.network, torch.stack(self.images).to(device), self.target_layer)
                titles = [self.class_names[self.labels[i]] if has_labels else "" for i in range(k)]
                plot_gradcam_grid(self.images, [list(maps)], ["Grad-CAM"], self.output_dir / "gradcam.png", titles)
        logger.info("classification outputs written to %s", self.output_dir)
        return self.metrics

    def _model_stats(self, network: nn.Module) -> dict[str, Any]:
        stats: dict[str, Any] = {"size_mb": model_size_mb(network), "params": count_parameters(network)}
        if self.latency_threads > 0 and self.images and next(network.parameters()).device.type == "cpu":
            shape = (1,) + tuple(self.images[0].shape)
            stats["latency_ms"] = latency_ms_per_image(network, shape, threads=self.latency_threads)
            stats["latency_threads"] = self.latency_threads
        return stats

    def _markdown(self) -> str:
        m = self.metrics
        lines = [
            f"images: {m['n']}",
            f"accuracy: {m['accuracy']:.4f}",
            f"AUC (macro one-vs-rest): {m['auc']:.4f}, 95 % bootstrap interval [{m['auc_ci'][0]:.4f}, "
            f"{m['auc_ci'][1]:.4f}] from {m['auc_ci_resamples']} of {self.n_bootstrap} resamples",
            "",
            "confusion matrix (rows true, columns predicted):",
            "",
            "| | " + " | ".join(self.class_names) + " |",
            "|---|" + "---|" * len(self.class_names),
        ]
        for name, row in zip(self.class_names, m["confusion_matrix"]):
            lines.append(f"| {name} | " + " | ".join(str(v) for v in row) + " |")
        if "size_mb" in m:
            lines += ["", f"model: {m['params']} parameters, {m['size_mb']:.2f} MB (state dict)"]
        if "latency_ms" in m:
            lines.append(f"latency: {m['latency_ms']:.1f} ms per image (CPU, {m['latency_threads']} threads, batch 1)")
        return "\n".join(lines) + "\n"
