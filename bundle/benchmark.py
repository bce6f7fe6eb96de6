"""CPU benchmark of the bundle against MONAI reference networks, side by side in one run.

Every measurement runs in its own Python subprocess (:py:func:`run_worker`) so that its peak memory (``ru_maxrss``)
belongs to that measurement alone and one model's allocator state cannot slow the next. Each worker sets the same
thread count, warms up once and reports the minimum and the median of ``repeats`` runs.

Measured:
- ``slice``: one forward of a 512 x 512 slice through the 2-D configuration of each network;
- ``volume``: sliding-window inference over one preprocessed chest CT volume (3-D configuration, same window,
  overlap and blending for all networks), for GhostCAUNet with routing on and off and for the MONAI references;
- ``end_to_end``: the bundle's whole inference command (read DICOM, preprocess, routed inference, lesions,
  outputs) on the embedded chest CT, routing on and off.
"""

from __future__ import annotations

import json
import logging
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

logger = logging.getLogger(__name__)

__all__ = ["build_network", "time_call", "run_worker", "worker", "markdown_table"]

NETWORKS = ("GhostCAUNet", "UNet", "BasicUNet", "SegResNet")


def build_network(name: str, spatial_dims: int, weights: str | None = None) -> torch.nn.Module:
    """The bundle's network or a MONAI reference at the settings the benchmark compares (2 output channels).

    Raises:
        ValueError: for an unknown ``name``.
    """
    from monai.networks.nets import BasicUNet, SegResNet, UNet

    from bundle.networks import GhostCAUNet

    if name == "GhostCAUNet":
        net: torch.nn.Module = GhostCAUNet(spatial_dims=spatial_dims)
        if weights:
            net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    elif name == "UNet":  # the spleen bundle's configuration
        net = UNet(spatial_dims, 1, 2, channels=(16, 32, 64, 128, 256), strides=(2, 2, 2, 2), num_res_units=2, norm="batch")
    elif name == "BasicUNet":
        net = BasicUNet(spatial_dims, 1, 2)
    elif name == "SegResNet":
        net = SegResNet(spatial_dims, init_filters=16, in_channels=1, out_channels=2)
    else:
        raise ValueError(f"name must be one of {NETWORKS}, got name={name!r}.")
    return net.eval()


def time_call(fn: Callable[[], Any], repeats: int = 5, warmup: int = 1) -> dict[str, float]:
    """Minimum and median wall-clock seconds of ``fn()`` over ``repeats`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return {"min_s": min(times), "median_s": statistics.median(times)}


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


def worker(task: dict[str, Any]) -> dict[str, Any]:
    """Run one measurement described by ``task`` in this process and return its numbers."""
    torch.set_num_threads(int(task["threads"]))
    kind = task["kind"]
    out: dict[str, Any] = dict(task)
    with torch.no_grad():
        if kind == "slice":
            net = build_network(task["network"], 2)
            x = torch.rand(1, 1, 512, 512)
            out.update(time_call(lambda: net(x), repeats=task["repeats"]))
            out["params"] = sum(p.numel() for p in net.parameters())
        elif kind == "volume":
            from bundle.inferers import RoutedSlidingWindowInferer

            net = build_network(task["network"], 3, task.get("weights"))
            volume = torch.load(task["volume"], weights_only=True)[None]  # (1, 1, X, Y, Z)
            inferer = RoutedSlidingWindowInferer(
                roi_size=task["roi_size"], sw_batch_size=4, overlap=0.25, mode="gaussian", routing=task["routing"]
            )
            out.update(time_call(lambda: inferer(volume, net), repeats=task["repeats"]))
            stats = inferer.last_stats
            out["windows"] = {t: stats.get(f"num_{t}") for t in ("high", "medium", "low")}
            out["skipped_fraction"] = stats.get("skipped_fraction")
            out["params"] = sum(p.numel() for p in net.parameters())
            out["volume_shape"] = list(volume.shape[2:])
        elif kind == "end_to_end":
            with tempfile.TemporaryDirectory() as tmp:
                cmd = [
                    sys.executable, "-m", "monai.bundle", "run", "--config_file", "configs/inference.json",
                    "--output_dir", tmp, "--routing", str(task["routing"]), "--num_threads", str(task["threads"]),
                ]
                times = []
                for _ in range(task["repeats"]):
                    start = time.perf_counter()
                    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=task["bundle_root"])
                    times.append(time.perf_counter() - start)
                    if proc.returncode != 0:
                        raise RuntimeError(f"inference command failed: {proc.stderr[-500:]}")
                summary = json.loads((Path(tmp) / "summary.json").read_text())
            out.update({"min_s": min(times), "median_s": statistics.median(times)})
            out["case_seconds"] = summary["totals"].get("seconds")
            out["windows"] = summary["totals"].get("windows")
            out["skipped_fraction"] = summary["totals"].get("skipped_fraction")
            out["peak_rss_mb_child"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0
        else:
            raise ValueError(f"unknown task kind {kind!r}.")
    out["peak_rss_mb"] = _peak_rss_mb()
    return out


def run_worker(task: dict[str, Any], bundle_root: str | Path) -> dict[str, Any]:
    """Run :py:func:`worker` in a fresh Python process and parse its JSON answer.

    Raises:
        RuntimeError: when the worker fails (its stderr tail is in the message).
    """
    code = "import json,sys; from bundle.benchmark import worker; print('@@'+json.dumps(worker(json.loads(sys.argv[1]))))"
    env = dict(os.environ, PYTHONPATH=str(bundle_root), PYTHONWARNINGS="ignore")
    proc = subprocess.run(
        [sys.executable, "-c", code, json.dumps(task)], capture_output=True, text=True, cwd=str(bundle_root), env=env
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("@@")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"benchmark task {task} failed: {proc.stderr[-800:]}")
    return json.loads(lines[-1][2:])


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str]]) -> str:
    """Markdown table of ``rows`` with ``columns`` given as (key, header); floats get 3 significant digits."""

    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.3g}"
        if isinstance(v, dict):
            return "/".join(str(v.get(k)) for k in ("high", "medium", "low"))
        return "" if v is None else str(v)

    lines = ["| " + " | ".join(h for _, h in columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r.get(k)) for k, _ in columns) + " |" for r in rows]
    return "\n".join(lines)
