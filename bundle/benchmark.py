"""CPU benchmark of the bundle against MONAI reference networks, side by side in one run.

Every measurement runs in its own Python subprocess (:py:func:`run_worker`) so that one model's allocator state
cannot slow the next. Each worker sets the same thread count, warms up once and reports the minimum and the median
of ``repeats`` runs.

Memory. A worker's whole resident size is dominated by the torch/MONAI import footprint, the same for every network,
so it cannot tell networks apart. After the imports and set-up, the worker therefore resets the kernel's peak-RSS
mark (``/proc/self/clear_refs``, Linux) and reports ``peak_rss_mb`` (the process's peak during the measurement
alone) and ``added_peak_mb`` (that peak minus the resident size just before the measurement: the memory the
inference itself needed). Without ``clear_refs`` (not Linux) the peak falls back to ``ru_maxrss`` (since start).
The end-to-end task reports the inference command's own peak (``RUSAGE_CHILDREN``), i.e. the whole command.

Measured:
- ``slice``: one forward of a 512 x 512 slice through the 2-D configuration of each network;
- ``volume``: sliding-window inference over one preprocessed chest CT volume (3-D configuration, same window,
  overlap and blending for all networks), for GhostCAUNet with routing off / on, with the candidate-mask gate
  (the lung envelope, as ``configs/inference.json`` computes it) or the tissue gate, with BatchNorm folding on or
  off, and for the MONAI references;
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

__all__ = ["build_network", "time_call", "memory_probe", "run_worker", "worker", "markdown_table"]

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


def _status_mb(field: str) -> float | None:
    """A ``VmRSS``/``VmHWM`` line of ``/proc/self/status`` in MB, or None where it does not exist."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return float(line.split()[1]) / 1024.0  # kB
    except OSError:
        pass
    return None


def memory_probe() -> Callable[[], dict[str, float | None]]:
    """Start a peak-memory measurement; call the returned function at its end.

    Returns:
        a function returning ``{"peak_rss_mb", "added_peak_mb"}``: the process's peak resident size since the
        probe started (since process start where the peak cannot be reset) and that peak minus the resident size
        at the start (None where unknown).
    """
    reset = False
    try:
        Path("/proc/self/clear_refs").write_text("5")  # Linux >= 4.0: resets VmHWM to the current VmRSS
        reset = True
    except OSError:
        pass
    before = _status_mb("VmRSS")

    def stop() -> dict[str, float | None]:
        peak = _status_mb("VmHWM") if reset else None
        if peak is None:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB
        added = peak - before if reset and before is not None else None
        return {"peak_rss_mb": peak, "added_peak_mb": added}

    return stop


def _inference(fn: Callable[[], Any]) -> Callable[[], Any]:
    def run() -> Any:
        with torch.inference_mode():
            return fn()

    return run


def _volume_inferer(task: dict[str, Any]) -> Any:
    from bundle.inferers import RoutedSlidingWindowInferer, SuspicionRouter

    router = SuspicionRouter(tissue_threshold=task.get("tissue_threshold"))
    return RoutedSlidingWindowInferer(
        roi_size=task["roi_size"], sw_batch_size=int(task.get("sw_batch_size", 4)), overlap=0.25, mode="gaussian",
        router=router, routing=bool(task["routing"]), fold_batchnorm=bool(task.get("fold_batchnorm", False)),
    )


def worker(task: dict[str, Any]) -> dict[str, Any]:
    """Run one measurement described by ``task`` in this process and return its numbers.

    ``task`` keys: ``kind`` (``"slice"``, ``"volume"``, ``"end_to_end"``), ``threads``, ``repeats``; for slice:
    ``network``, optional ``size`` (default 512) and ``fold_batchnorm``; for volume: ``network``, ``volume`` (path of
    a saved (1, *spatial) tensor), ``roi_size``, ``routing``, optional ``weights``, ``mask`` (path of a saved mask
    tensor, passed as the inferer's ``mask``), ``tissue_threshold``, ``fold_batchnorm``, ``sw_batch_size``; for
    end_to_end: ``routing``, ``bundle_root``.

    Raises:
        ValueError: for an unknown ``kind``.
    """
    torch.set_num_threads(int(task["threads"]))
    kind = task["kind"]
    out: dict[str, Any] = dict(task)
    # networks and data are built with autograd on; only the timed calls run under inference_mode
    if kind == "slice":
        from bundle.networks.fusion import fold_batchnorm

        net = build_network(task["network"], 2)
        out["params"] = sum(p.numel() for p in net.parameters())
        run_net = fold_batchnorm(net) if task.get("fold_batchnorm") else net
        size = int(task.get("size", 512))
        x = torch.rand(1, 1, size, size)
        probe = memory_probe()
        out.update(time_call(_inference(lambda: run_net(x)), repeats=task["repeats"]))
        out.update(probe())
    elif kind == "volume":
        net = build_network(task["network"], 3, task.get("weights"))
        volume = torch.load(task["volume"], weights_only=True)[None]  # (1, 1, X, Y, Z)
        mask = torch.load(task["mask"], weights_only=True) if task.get("mask") else None
        inferer = _volume_inferer(task)
        kwargs = {"mask": mask} if mask is not None else {}
        probe = memory_probe()
        out.update(time_call(_inference(lambda: inferer(volume, net, **kwargs)), repeats=task["repeats"]))
        out.update(probe())
        stats = inferer.last_stats
        out["windows"] = {t: stats.get(f"num_{t}") for t in ("high", "medium", "low", "gated")}
        out["skipped_fraction"] = stats.get("skipped_fraction")
        out["seconds_per_window"] = stats.get("seconds_per_window")
        out["params"] = sum(p.numel() for p in net.parameters())
        out["volume_shape"] = list(volume.shape[2:])
    elif kind == "end_to_end":
        out.update(_end_to_end(task))
    else:
        raise ValueError(f"unknown task kind {kind!r}, expected 'slice', 'volume' or 'end_to_end'.")
    return out


def _end_to_end(task: dict[str, Any]) -> dict[str, Any]:
    """Time the bundle's inference command in a child process; its peak memory is the children's ``ru_maxrss``."""
    out: dict[str, Any] = {}
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
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0
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
            return "/".join(str(v.get(k)) for k in ("high", "medium", "low", "gated") if k in v)
        return "" if v is None else str(v)

    lines = ["| " + " | ".join(h for _, h in columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r.get(k)) for k, _ in columns) + " |" for r in rows]
    return "\n".join(lines)
