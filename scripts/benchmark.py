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

import logging
import shlex
import sys

import fire

from bundle.experiments.benchmark_report import run_benchmark


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
    return run_benchmark(
        threads, repeats, output_dir, weights, roi_size, pixdim, skip_end_to_end, rows, list_rows, reuse_onnx,
        command=shlex.join(["python", "-m", "scripts.benchmark", *sys.argv[1:]]),
    )


if __name__ == "__main__":
    fire.Fire(main)
