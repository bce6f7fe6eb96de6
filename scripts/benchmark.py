"""CPU benchmark, side by side in one run: GhostCAUNet (routing off / on, the candidate-mask and tissue gates,
BatchNorm folding off / on, PyTorch and ONNX Runtime), MONAI UNet, BasicUNet, SegResNet, SwinUNETR and the RetinaNet
detectors (ResNet-50 and ResNet-10 feature pyramids). With ``--profile``: the main command stage by stage, release
0.6.0 (a git worktree at ``--baseline_root``) beside the current tree (:mod:`bundle.experiments.profile_stages`).

Examples (from the repository root)::

    python -m scripts.benchmark --threads 2 --output_dir docs
    python -m scripts.benchmark --list_rows
    python -m scripts.benchmark --threads 2 --output_dir runs/benchmark/network \
        --baseline_weights ../bundle-0.6.0/models/model.pt --rows "['volume/GhostCAUNet*']"
    python -m scripts.benchmark --threads 2 --output_dir runs/benchmark/onnx \\
        --rows "['*/GhostCAUNet/plain', '*/GhostCAUNet/plain, onnxruntime']"
    git worktree add ../bundle-0.6.0 059af1c   # release 0.6.0 beside this checkout, for --profile
    python -m scripts.benchmark --profile --baseline_root ../bundle-0.6.0 --threads 2 --output_dir runs/profile
    python -m scripts.benchmark --throughput 4 --threads 2   # 1 process vs 2 (torchrun) on 4 copies of the sample
"""

from __future__ import annotations

import logging
import shlex
import sys

import fire

from bundle.experiments.benchmark_report import run_benchmark


def main(
    threads: int = 2,
    repeats: int | None = None,
    output_dir: str | None = None,
    weights: str = "models/model.pt",
    roi_size: tuple = (64, 64, 32),
    pixdim: tuple = (1.0, 1.0, 2.5),
    skip_end_to_end: bool = False,
    rows: str | list | tuple | None = None,
    list_rows: bool = False,
    reuse_onnx: bool = False,
    profile: bool = False,
    baseline_root: str | None = None,
    docs_file: str = "docs/benchmark.md",
    baseline_weights: str | None = None,
    light_weights: str | None = None,
    throughput: int = 0,
) -> str:
    """Run the measurements and write ``benchmark.json`` and ``benchmark.md`` to ``output_dir`` (with ``profile``:
    ``profile.json`` and ``profile.md``, and the marked section of ``docs_file``).

    Args:
        threads: torch and ONNX Runtime threads of every measurement. Defaults to 2.
        repeats: timed repeats after one warm-up; with ``profile``, un-profiled runs of each command per tree.
            Defaults to 3 (1 with ``profile``).
        output_dir: where the report goes. Defaults to ``docs`` (``runs/profile`` with ``profile``).
        weights: the GhostCAUNet weights of the volume rows (and of the exported ONNX graphs).
        roi_size: sliding-window size. Defaults to (64, 64, 32), as in ``configs/inference.json``.
        pixdim: preprocessing spacing in mm. Defaults to (1.0, 1.0, 2.5).
        skip_end_to_end: leave out the end-to-end rows.
        rows: glob patterns of the rows to run, run in the patterns' order (``--list_rows`` prints the rows); None
            runs every row.
        list_rows: print the row names and exit.
        reuse_onnx: keep the ONNX graphs of an earlier run under ``runs/benchmark/onnx`` when they are newer than
            ``weights`` (exporting takes minutes). Defaults to False.
        profile: instead of the rows, profile ``python -m monai.bundle run --config_file configs/inference.json``
            stage by stage (:py:func:`bundle.experiments.profile_stages.run_stage_profile`).
        baseline_root: with ``profile``, the release tree measured beside this one (a git worktree of 0.6.0); None
            profiles this tree only.
        docs_file: with ``profile``, the Markdown file whose ``<!-- profile:begin -->`` ... ``<!-- profile:end -->``
            section is replaced (appended when absent); an empty string leaves the docs alone.
        baseline_weights: release 0.6.0's ``models/model.pt`` (e.g. ``../bundle-0.6.0/models/model.pt``): its
            network (0.6.0's layout) gets volume rows beside the current one.
        light_weights: weights trained with ``bundle/experiments/configs/light_network_train.json``: the light
            layout gets volume rows too.
        throughput: instead of the rows, time the main command over this many copies of the embedded CT with one
            process and with 2 (torchrun, ``configs/multi_gpu_inference.json``), ``threads`` threads in all
            (:py:func:`bundle.experiments.throughput.measure_throughput`); prints one JSON line. 0 (default): off.
    """
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    command = shlex.join(["python", "-m", "scripts.benchmark", *sys.argv[1:]])
    if throughput:
        import json

        from bundle.experiments.throughput import measure_throughput

        return json.dumps({"command": command, **measure_throughput(throughput, 2, threads)})  # fire prints it
    if profile:
        from bundle.experiments.profile_stages import run_stage_profile

        return run_stage_profile(
            output_dir or "runs/profile", baseline_root, threads, 1 if repeats is None else repeats,
            docs_file=docs_file or None, command=command,
        )  # fmt: skip
    return run_benchmark(
        threads, 3 if repeats is None else repeats, output_dir or "docs", weights, roi_size, pixdim, skip_end_to_end,
        rows, list_rows, reuse_onnx, command=command, baseline_weights=baseline_weights,
        light_weights=light_weights,
    )


if __name__ == "__main__":
    fire.Fire(main)
