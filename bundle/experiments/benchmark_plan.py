"""The rows of the CPU benchmark (:mod:`bundle.experiments.benchmark`): which measurements a full run makes, how a subset is
picked by name and the relative columns computed from measured rows."""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "NETWORKS",
    "BACKENDS",
    "ORT",
    "GHOST_VOLUME_ROWS",
    "plan_tasks",
    "select_rows",
    "backend_suffix",
    "add_comparisons",
]

NETWORKS = ("GhostCAUNet", "UNet", "BasicUNet", "SegResNet", "SwinUNETR")
RELEASE_NETWORK = "GhostCAUNet-0.6.0"  # release 0.6.0's layout (the class defaults) with its weights, side by side
LIGHT_NETWORK = "GhostCAUNet-light"  # the light layout (bundle.experiments.model_stats.LIGHT_LAYOUT) with its weights
BACKENDS = ("torch", "onnxruntime")
ORT = ", onnxruntime"  # label suffix of the ONNX Runtime rows
INT8 = ", onnxruntime int8"  # label suffix of the ONNX Runtime rows on INT8 graphs (bundle.export.quantize)

# (label, routing, gate, fold_batchnorm, backend) of the GhostCAUNet volume rows; "plain" rows are the references of
# 'time saved' (per backend)
RELEASE_VOLUME_ROWS = (("plain", False, None, False, "torch"), ("routed + lung-mask gate", True, "mask", False, "torch"))
GHOST_VOLUME_ROWS = (
    ("plain", False, None, False, "torch"),
    ("plain, BN folded", False, None, True, "torch"),
    ("routed, screen only", True, None, False, "torch"),
    ("routed + tissue gate 0.15", True, "tissue", False, "torch"),
    ("routed + lung-mask gate", True, "mask", False, "torch"),
    ("routed + lung-mask gate, BN folded", True, "mask", True, "torch"),
    ("plain" + ORT, False, None, False, "onnxruntime"),
    ("routed + lung-mask gate" + ORT, True, "mask", False, "onnxruntime"),
    ("plain" + INT8, False, None, False, "onnxruntime"),
    ("routed + lung-mask gate" + INT8, True, "mask", False, "onnxruntime"),
)


def int8_onnx_path(volume_onnx: str | Path) -> Path:
    """The INT8 full graph beside the float one: ``model.onnx`` -> ``model_int8.onnx``."""
    path = Path(volume_onnx)
    return path.with_name(path.stem + "_int8.onnx")


def plan_tasks(
    threads: int,
    repeats: int,
    bundle_root: str | Path,
    volume: str | Path,
    mask: str | Path,
    weights: str | Path,
    roi_size: Sequence[int],
    slice_onnx: str | Path,
    volume_onnx: str | Path,
    baseline_weights: str | Path | None = None,
    light_weights: str | Path | None = None,
) -> list[dict[str, Any]]:
    """Every measurement of a full benchmark run, in table order, each a :py:func:`worker` task with a ``row`` name.

    Row names are ``"<kind>/<network>/<label>"``, e.g. ``"slice/GhostCAUNet/plain"``,
    ``"volume/GhostCAUNet/routed + lung-mask gate, onnxruntime"``, ``"end_to_end/GhostCAUNet/routing True"``.

    Args:
        threads: torch (and ONNX Runtime intra-op) threads of every worker.
        repeats: timed repeats of the GhostCAUNet rows (the MONAI references in the volume table run once).
        bundle_root: the bundle folder (end-to-end rows run its inference command).
        volume: saved preprocessed volume tensor (1, *spatial) of the volume rows.
        mask: saved candidate-mask tensor of the lung-mask-gate rows.
        weights: GhostCAUNet state dict of the volume rows (the slice rows use initial weights).
        roi_size: sliding-window size.
        slice_onnx: the 2-D graph of the ``onnxruntime`` slice row (512 x 512).
        volume_onnx: the 3-D full graph (with its ``_basic``/``_screen`` siblings) of the ``onnxruntime`` volume
            and end-to-end rows.
        baseline_weights: release 0.6.0's ``models/model.pt``: adds its network's volume rows
            (``volume/GhostCAUNet-0.6.0/...``) beside the current one. None: no such rows.
        light_weights: weights of the light layout: adds its volume rows (``volume/GhostCAUNet-light/...``).
    """
    common = {"threads": threads, "bundle_root": str(bundle_root)}
    tasks: list[dict[str, Any]] = []
    slice_rows = [("GhostCAUNet", "plain", False, "torch"), ("GhostCAUNet", "plain, BN folded", True, "torch"),
                  ("GhostCAUNet", "plain" + ORT, False, "onnxruntime")]  # fmt: skip
    for name, label, fold, backend in slice_rows + [(n, "plain", False, "torch") for n in NETWORKS[1:]]:
        task = {**common, "kind": "slice", "network": name, "label": label, "repeats": repeats,
                "fold_batchnorm": fold, "backend": backend}  # fmt: skip
        if backend == "onnxruntime":
            task["onnx_path"] = str(slice_onnx)
        tasks.append(task)
    volume_common = {**common, "kind": "volume", "volume": str(volume), "roi_size": list(roi_size)}
    ghost_rows = [(RELEASE_NETWORK, baseline_weights, *row) for row in RELEASE_VOLUME_ROWS if baseline_weights]
    ghost_rows += [(LIGHT_NETWORK, light_weights, *row) for row in RELEASE_VOLUME_ROWS if light_weights]
    ghost_rows += [("GhostCAUNet", weights, *row) for row in GHOST_VOLUME_ROWS]
    for network, network_weights, label, routing, gate, fold, backend in ghost_rows:
        task = {
            **volume_common, "network": network, "label": label, "routing": routing, "fold_batchnorm": fold,
            "repeats": repeats, "weights": str(network_weights), "mask": str(mask) if gate == "mask" else None,
            "tissue_threshold": 0.15 if gate == "tissue" else None, "backend": backend,
        }  # fmt: skip
        if backend == "onnxruntime":
            task["onnx_path"] = str(int8_onnx_path(volume_onnx) if label.endswith(INT8) else volume_onnx)
        if network == "GhostCAUNet":  # its output map, for the agreement of the ONNX Runtime rows with PyTorch
            task["output_path"] = str(Path(volume).parent / "outputs" / f"{label.replace(' ', '_').replace(',', '')}.pt")
        tasks.append(task)
    for name in NETWORKS[1:]:
        tasks.append({**volume_common, "network": name, "label": "plain", "routing": False, "repeats": 1,
                      "backend": "torch"})  # fmt: skip
    from bundle.experiments.benchmark import shipped_network_kwargs
    from bundle.experiments.model_stats import network_variants

    for name, kwargs, _ in network_variants(shipped_network_kwargs(3)):  # the layouts of docs/network.md
        tasks.append({**common, "kind": "window", "network": name, "label": "BN folded", "kwargs": kwargs,
                      "roi_size": list(roi_size), "repeats": repeats, "backend": "torch"})  # fmt: skip
    from bundle.experiments.comparison import DETECTORS

    for name in DETECTORS:
        tasks.append({**common, "kind": "detector", "network": name, "label": "whole volume", "volume": str(volume),
                      "repeats": 1, "backend": "torch"})  # fmt: skip
    for routing, backend in ((True, "torch"), (False, "torch"), (True, "onnxruntime")):
        label = f"routing {routing}" + (ORT if backend == "onnxruntime" else "")
        task = {**common, "kind": "end_to_end", "network": "GhostCAUNet", "label": label, "routing": routing,
                "repeats": repeats, "backend": backend}  # fmt: skip
        if backend == "onnxruntime":
            task["onnx_path"] = str(volume_onnx)
        tasks.append(task)
    for task in tasks:
        task["row"] = f"{task['kind']}/{task['network']}/{task['label']}"
    return tasks


def select_rows(tasks: Sequence[dict[str, Any]], patterns: Sequence[str] | None) -> list[dict[str, Any]]:
    """The tasks whose ``row`` matches one of the glob ``patterns`` (:py:mod:`fnmatch`), in the order of the patterns
    (the tasks a pattern matches in their own order; each task once).

    Args:
        tasks: the tasks of :py:func:`plan_tasks`.
        patterns: e.g. ``["volume/GhostCAUNet/plain*"]``; None or empty selects every task.

    Raises:
        ValueError: when a pattern matches no row (the message lists the rows).
    """
    if not patterns:
        return list(tasks)
    if isinstance(patterns, str):
        patterns = [patterns]
    names = [t["row"] for t in tasks]
    unmatched = [p for p in patterns if not fnmatch.filter(names, p)]
    if unmatched:
        raise ValueError(f"rows {unmatched} match no benchmark row; the rows are: {names}.")
    chosen: dict[str, dict[str, Any]] = {}
    for pattern in patterns:
        chosen.update({t["row"]: t for t in tasks if t["row"] not in chosen and fnmatch.fnmatchcase(t["row"], pattern)})
    return list(chosen.values())


def backend_suffix(row: dict[str, Any]) -> str:
    """The label suffix of an ONNX Runtime row (:data:`INT8` or :data:`ORT`; :func:`plan_tasks` names every such row
    with one); "" for a PyTorch row. Without it the row name is the PyTorch row of the same path."""
    return next((s for s in (INT8, ORT) if row["row"].endswith(s)), "")


def add_comparisons(rows: Sequence[dict[str, Any]]) -> None:
    """Add the relative columns to measured ``rows`` in place (a reference that was not run leaves them unset).

    - ``saved_vs_plain`` (GhostCAUNet volume rows): ``1 - min_s / min_s`` of the plain sliding window of the same
      network and backend;
    - ``torch_over_this`` (``onnxruntime`` rows, float or INT8): the ``min_s`` of the PyTorch row of the same kind,
      network and path divided by this row's ``min_s`` (> 1: ONNX Runtime is faster).
    """
    by_row = {r["row"]: r for r in rows if "row" in r}
    for row in rows:
        suffix = backend_suffix(row)
        if row.get("kind") == "volume" and row.get("network") in ("GhostCAUNet", RELEASE_NETWORK, LIGHT_NETWORK):
            plain = by_row.get(f"volume/{row['network']}/plain" + suffix)
            if plain is not None:
                row["saved_vs_plain"] = 1.0 - row["min_s"] / plain["min_s"]
        if row.get("backend", "torch") == "onnxruntime":
            torch_row = by_row.get(row["row"][: -len(suffix)] if suffix else "")
            if torch_row is not None:
                row["torch_over_this"] = torch_row["min_s"] / row["min_s"]
