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
- ``detector``: MONAI's RetinaNet detectors of the ablation (:py:data:`bundle.experiments.comparison.DETECTORS`, untrained
  weights) on the same whole preprocessed volume, in one pass (no sliding window);
- ``end_to_end``: the bundle's whole inference command (read DICOM, preprocess, routed inference, lesions,
  outputs) on the embedded chest CT, routing on and off.

Backends. ``slice``, ``volume`` and ``end_to_end`` tasks take ``backend`` ``"torch"`` (default) or
``"onnxruntime"``: the latter runs the graphs written by :py:func:`export_benchmark_onnx` through
:py:class:`bundle.networks.runtime.OnnxRuntimeNetwork` (CPU, ``intra_op_num_threads`` = the task's ``threads``, the same
count torch gets). That network has the PyTorch network's ``forward(x, enhancement=...)`` and ``screen``, so the
routed inferer routes it exactly as it routes the PyTorch network (gates included).

Rows. :py:func:`bundle.experiments.benchmark_plan.plan_tasks` lists every measurement as a named row
(``"volume/GhostCAUNet/plain, onnxruntime"``); :py:func:`bundle.experiments.benchmark_plan.select_rows` picks a subset by glob
pattern so that one comparison can be run alone; :py:func:`bundle.experiments.benchmark_report.run_benchmark` runs
the chosen rows and writes the report.
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

from bundle.experiments.benchmark_plan import BACKENDS, LIGHT_NETWORK, NETWORKS, RELEASE_NETWORK
from bundle.experiments.memory import memory_probe
from bundle.tiers import TIER_REPORT_ORDER

logger = logging.getLogger(__name__)

__all__ = [
    "build_network",
    "export_benchmark_onnx",
    "end_to_end_command",
    "time_call",
    "run_worker",
    "worker",
]


SHIPPED_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "inference.json"


def shipped_network_kwargs(spatial_dims: int = 3) -> dict[str, Any]:
    """The arguments of the shipped network (``network_def`` of ``configs/inference.json``, all literals), for
    ``spatial_dims`` (a 2-D network takes the in-plane part of a per-axis ``stem_stride``)."""
    kwargs = {k: v for k, v in json.loads(SHIPPED_CONFIG.read_text())["network_def"].items() if k != "_target_"}
    kwargs["spatial_dims"] = spatial_dims
    if isinstance(kwargs.get("stem_stride"), list):
        kwargs["stem_stride"] = kwargs["stem_stride"][:spatial_dims]
    return kwargs


def build_network(name: str, spatial_dims: int, weights: str | None = None) -> torch.nn.Module:
    """The bundle's network or a MONAI reference at the settings the benchmark compares (2 output channels):
    ``"GhostCAUNet"`` is the shipped layout (:py:func:`shipped_network_kwargs`), ``"GhostCAUNet-0.6.0"`` release
    0.6.0's (the class defaults), ``"GhostCAUNet-light"`` the light experiment's (``LIGHT_LAYOUT``).

    Raises:
        ValueError: for an unknown ``name``.
    """
    from monai.networks.nets import BasicUNet, SegResNet, SwinUNETR, UNet

    from bundle.networks import GhostCAUNet

    if name in ("GhostCAUNet", RELEASE_NETWORK, LIGHT_NETWORK):
        from bundle.experiments.model_stats import LIGHT_LAYOUT

        kwargs = shipped_network_kwargs(spatial_dims) if name == "GhostCAUNet" else {"spatial_dims": spatial_dims}
        if name == LIGHT_NETWORK:
            kwargs.update(LIGHT_LAYOUT, stem_stride=LIGHT_LAYOUT["stem_stride"][:spatial_dims])
        net: torch.nn.Module = GhostCAUNet(**kwargs)
        if weights:
            net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    elif name == "UNet":  # the spleen bundle's configuration
        net = UNet(spatial_dims, 1, 2, channels=(16, 32, 64, 128, 256), strides=(2, 2, 2, 2), num_res_units=2, norm="batch")
    elif name == "BasicUNet":
        net = BasicUNet(spatial_dims, 1, 2)
    elif name == "SegResNet":
        net = SegResNet(spatial_dims, init_filters=16, in_channels=1, out_channels=2)
    elif name == "SwinUNETR":  # the ablation's CNN-Transformer hybrid, smallest feature size
        net = SwinUNETR(in_channels=1, out_channels=2, feature_size=12, spatial_dims=spatial_dims)
    else:
        raise ValueError(f"name must be one of {(*NETWORKS, RELEASE_NETWORK, LIGHT_NETWORK)}, got name={name!r}.")
    return net.eval()


def export_benchmark_onnx(
    filepath: str | Path,
    spatial_dims: int,
    roi_size: Sequence[int],
    weights: str | None = None,
    variants: Sequence[str] = ("full", "basic", "screen"),
) -> dict[str, float]:
    """Export GhostCAUNet (``spatial_dims``, optional ``weights``) to ONNX for the ``onnxruntime`` rows.

    Args:
        filepath: the full graph's file; the ``basic``/``screen`` graphs go next to it
            (:py:func:`bundle.networks.runtime.onnx_variant_paths`).
        spatial_dims: 2 for the slice rows, 3 for the volume rows.
        roi_size: the input size the graphs are fixed to (the slice, or the sliding window).
        weights: state dict file; None keeps the initial weights (latency only).
        variants: which graphs to export. Defaults to all three (the routed inferer needs them).

    Returns:
        ``{variant: max abs difference ONNX Runtime vs PyTorch}`` (the export checks it is at most 1e-4).
    """
    from bundle.export import export_onnx

    torch.manual_seed(0)  # the untrained 2-D network of the slice rows: the same graph on every run
    net = build_network("GhostCAUNet", spatial_dims, weights)
    return export_onnx(net, filepath, list(roi_size), variants=tuple(variants))


def _runtime_network(task: dict[str, Any], spatial_dims: int) -> tuple[torch.nn.Module, int]:
    """The network a slice/volume task times (PyTorch, or ONNX Runtime for ``backend="onnxruntime"``) and the
    parameter count of its PyTorch network.

    Raises:
        ValueError: for an unknown ``backend``, or ``onnxruntime`` without ``onnx_path`` or with ``fold_batchnorm``.
    """
    backend = task.get("backend", "torch")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got backend={backend!r}.")
    net = build_network(task["network"], spatial_dims, task.get("weights"))
    params = sum(p.numel() for p in net.parameters())
    if backend == "torch":
        return net, params
    if not task.get("onnx_path"):
        raise ValueError("backend='onnxruntime' needs onnx_path (see export_benchmark_onnx), got none.")
    if task.get("fold_batchnorm"):
        raise ValueError("fold_batchnorm applies to the torch backend only, got backend='onnxruntime'.")
    from bundle.networks.runtime import OnnxRuntimeNetwork

    return OnnxRuntimeNetwork(task["onnx_path"], num_threads=int(task["threads"])), params


def time_call(fn: Callable[[], Any], repeats: int = 5, warmup: int = 1) -> dict[str, float]:
    """Minimum and median wall-clock seconds of ``fn()`` over ``repeats`` calls after ``warmup`` calls, and the
    minimum CPU seconds of this process (all its threads, :py:func:`time.process_time`) in one call.

    CPU seconds are what a call costs when other jobs share the cores (wall time then also counts waiting for a
    core); thread pools that spin while waiting for work add to them.
    """
    for _ in range(warmup):
        fn()
    times, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return {"min_s": min(times), "median_s": statistics.median(times), "cpu_s": min(cpu)}


def _inference(fn: Callable[[], Any]) -> Callable[[], Any]:
    def run() -> Any:
        with torch.inference_mode():
            return fn()

    return run


def save_foreground(logits: torch.Tensor, path: str | Path) -> None:
    """Save a sliding window's foreground probability (softmax channel 1 of (1, 2, *spatial) logits, sigmoid of one
    channel) as float16, for :py:func:`bundle.experiments.benchmark_report.add_agreement`."""
    logits = torch.as_tensor(logits).float()
    prob = torch.softmax(logits, 1)[0, 1] if logits.shape[1] > 1 else torch.sigmoid(logits[0, 0])
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    torch.save(prob.to(torch.float16), path)


def _volume_inferer(task: dict[str, Any]) -> Any:
    from bundle.inferers import RoutedSlidingWindowInferer, SuspicionRouter

    router = SuspicionRouter(tissue_threshold=task.get("tissue_threshold"))
    return RoutedSlidingWindowInferer(
        roi_size=task["roi_size"], sw_batch_size=int(task.get("sw_batch_size", 4)), overlap=0.25, mode="gaussian",
        router=router, routing=bool(task["routing"]), fold_batchnorm=bool(task.get("fold_batchnorm", False)),
    )


def worker(task: dict[str, Any]) -> dict[str, Any]:
    """Run one measurement described by ``task`` in this process and return its numbers.

    ``task`` keys: ``kind`` (``"slice"``, ``"volume"``, ``"end_to_end"``), ``threads``, ``repeats``, optional
    ``backend`` (``"torch"``, the default, or ``"onnxruntime"``, which needs ``onnx_path``: the full graph written
    by :py:func:`export_benchmark_onnx`); for slice: ``network``, optional ``size`` (default 512) and
    ``fold_batchnorm``; for volume: ``network``, ``volume`` (path of a saved (1, *spatial) tensor), ``roi_size``,
    ``routing``, optional ``weights``, ``mask`` (path of a saved mask tensor, passed as the inferer's ``mask``),
    ``tissue_threshold``, ``fold_batchnorm``, ``sw_batch_size``, ``output_path`` (where the last call's foreground
    probability goes, :py:func:`save_foreground`); for window: ``kwargs`` (GhostCAUNet arguments),
    ``roi_size``, optional ``sw_batch_size`` (windows per call, default 4); for detector: ``network`` (a RetinaNet of
    :py:data:`bundle.experiments.comparison.DETECTORS`), ``volume``; for end_to_end: ``routing``, ``bundle_root``.

    Raises:
        ValueError: for an unknown ``kind`` or ``backend``, or ``onnxruntime`` without ``onnx_path`` or with
            ``fold_batchnorm``.
    """
    torch.set_num_threads(int(task["threads"]))
    kind = task["kind"]
    out: dict[str, Any] = dict(task)
    # networks and data are built with autograd on; only the timed calls run under inference_mode
    if kind == "slice":
        from bundle.networks.bn_folding import fold_batchnorm

        net, out["params"] = _runtime_network(task, 2)
        run_net = fold_batchnorm(net) if task.get("fold_batchnorm") else net
        size = int(task.get("size", 512))
        x = torch.rand(1, 1, size, size)
        probe = memory_probe()
        out.update(time_call(_inference(lambda: run_net(x)), repeats=task["repeats"]))
        out.update(probe())
    elif kind == "volume":
        net, out["params"] = _runtime_network(task, 3)
        volume = torch.load(task["volume"], weights_only=True)[None]  # (1, 1, X, Y, Z)
        mask = torch.load(task["mask"], weights_only=True) if task.get("mask") else None
        inferer = _volume_inferer(task)
        kwargs = {"mask": mask} if mask is not None else {}
        probe = memory_probe()
        last: dict[str, torch.Tensor] = {}

        def infer() -> None:
            last["output"] = inferer(volume, net, **kwargs)

        out.update(time_call(_inference(infer), repeats=task["repeats"]))
        out.update(probe())
        if task.get("output_path"):  # the last call's foreground probability, for the agreement columns
            save_foreground(last["output"], task["output_path"])
        stats = inferer.last_stats
        out["windows"] = {t: stats.get(f"num_{t}") for t in (*TIER_REPORT_ORDER, "gated")}
        out["skipped_fraction"] = stats.get("skipped_fraction")
        out["seconds_per_window"] = stats.get("seconds_per_window")
        out["volume_shape"] = list(volume.shape[2:])
    elif kind == "window":  # one layout's forward and screen per window, BatchNorm folded, untrained weights
        from bundle.networks import GhostCAUNet
        from bundle.networks.bn_folding import fold_batchnorm

        net = GhostCAUNet(**task["kwargs"]).eval()
        out["params"] = sum(p.numel() for p in net.parameters())
        folded = fold_batchnorm(net)
        batch = int(task.get("sw_batch_size", 4))
        x = torch.rand(batch, 1, *task["roi_size"])
        out.update(time_call(_inference(lambda: folded(x)), repeats=task["repeats"]))
        screen = time_call(_inference(lambda: folded.screen(x)), repeats=task["repeats"])
        out["ms_per_window"] = 1000.0 * out["min_s"] / batch
        out["screen_ms_per_window"] = 1000.0 * screen["min_s"] / batch
    elif kind == "detector":
        from bundle.experiments.comparison import build_detector

        detector = build_detector(task["network"])
        detector.eval()
        out["params"] = sum(p.numel() for p in detector.network.parameters())
        volume = torch.load(task["volume"], weights_only=True)  # (1, X, Y, Z)
        probe = memory_probe()
        out.update(time_call(_inference(lambda: detector([volume], use_inferer=False)), repeats=task["repeats"]))
        out.update(probe())
        out["volume_shape"] = list(volume.shape[1:])
    elif kind == "end_to_end":
        out.update(_end_to_end(task))
    else:
        raise ValueError(
            f"unknown task kind {kind!r}, expected 'slice', 'volume', 'window', 'detector' or 'end_to_end'."
        )
    return out


def end_to_end_command(task: dict[str, Any], output_dir: str | Path) -> list[str]:
    """The inference command an ``end_to_end`` task times (``--backend onnxruntime --onnx_path ...`` for the
    ``onnxruntime`` backend).

    Raises:
        ValueError: for an unknown ``backend``, or ``onnxruntime`` without ``onnx_path``.
    """
    backend = task.get("backend", "torch")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got backend={backend!r}.")
    cmd = [
        sys.executable, "-m", "monai.bundle", "run", "--config_file", "configs/inference.json",
        "--output_dir", str(output_dir), "--routing", str(task["routing"]), "--num_threads", str(task["threads"]),
    ]  # fmt: skip
    if backend == "onnxruntime":
        if not task.get("onnx_path"):
            raise ValueError("backend='onnxruntime' needs onnx_path (see export_benchmark_onnx), got none.")
        cmd += ["--backend", backend, "--onnx_path", str(task["onnx_path"])]
    return cmd


def _end_to_end(task: dict[str, Any]) -> dict[str, Any]:
    """Time the bundle's inference command in a child process; its peak memory is the children's ``ru_maxrss``."""
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        cmd = end_to_end_command(task, tmp)
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
    code = "import json,sys; from bundle.experiments.benchmark import worker; print('@@'+json.dumps(worker(json.loads(sys.argv[1]))))"
    env = dict(os.environ, PYTHONPATH=str(bundle_root), PYTHONWARNINGS="ignore")
    proc = subprocess.run(
        [sys.executable, "-c", code, json.dumps(task)], capture_output=True, text=True, cwd=str(bundle_root), env=env
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("@@")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"benchmark task {task} failed: {proc.stderr[-800:]}")
    return json.loads(lines[-1][2:])
