"""Batch throughput of the main command with 1 and with several processes, side by side in one run.

``python -m scripts.benchmark --throughput 4`` copies the embedded chest CT ``cases`` times into
``data/throughput/scans/`` (ignored by git) and times, one after the other on the same machine:

- one process with all threads: ``python -m monai.bundle run --config_file configs/inference.json``;
- the same with ``--dataloader#num_workers 1``: the next case is read and preprocessed in a worker meanwhile;
- ``processes`` processes with ``threads // processes`` threads each: ``torchrun --standalone --nnodes=1
  --nproc_per_node=P -m monai.bundle run --config_file "['configs/inference.json','configs/multi_gpu_inference.json']"``.

Each command's wall time covers start-up (imports) too, as a user's batch sees it. Both must find the same lesions.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["measure_throughput"]

ROOT = Path(__file__).resolve().parents[2]


def _lesions(out: Path) -> dict[str, list]:
    return {p.parent.name: json.loads(p.read_text())["lesions"] for p in sorted(out.glob("*/lesions.json"))}


def measure_throughput(cases: int = 4, processes: int = 2, threads: int = 2, work_dir: str = "data/throughput") -> dict[str, Any]:
    """
    Time the main command over ``cases`` copies of the embedded CT with 1 process and with ``processes``.

    Returns:
        ``{"cases", "threads", "rows": [{"processes", "threads_each", "loader_workers", "seconds",
        "cases_per_minute"}], "same_lesions", "commands"}``.

    Raises:
        RuntimeError: when a command fails (its last output lines attached).
    """
    from bundle.io.readers import sample_dataset_dir

    if cases < 1 or processes < 2 or threads < processes:
        raise ValueError(f"need cases >= 1, processes >= 2 and threads >= processes, got {cases}, {processes}, {threads}.")
    work = ROOT / work_dir
    scans = work / "scans"
    source = Path(sample_dataset_dir()) / "Chest_CT"
    for i in range(cases):
        if not (scans / f"chest_ct_{i:02d}").is_dir():
            shutil.copytree(source, scans / f"chest_ct_{i:02d}")
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    flags = ["--dataset_dir", str(scans), "--quiet", "True"]
    one_process = [sys.executable, "-m", "monai.bundle", "run", "--config_file", "configs/inference.json", *flags,
                   "--num_threads", str(threads)]  # fmt: skip
    single = [*one_process, "--output_dir", str(work / "out_1")]
    # one process whose data loader reads and preprocesses the next case in a worker while this one is inferred
    prefetch = [*one_process, "--output_dir", str(work / "out_1w"), "--dataloader#num_workers", "1"]
    torchrun = str(Path(sys.executable).parent / "torchrun")
    configs = "['configs/inference.json','configs/multi_gpu_inference.json']"
    multi = [torchrun, "--standalone", "--nnodes=1", f"--nproc_per_node={processes}", "-m", "monai.bundle", "run",
             "--config_file", configs, *flags, "--output_dir", str(work / f"out_{processes}")]  # fmt: skip
    runs = (
        ("1", 1, single, threads, 0),
        ("1w", 1, prefetch, threads, 1),
        (str(processes), processes, multi, threads // processes, 0),
    )
    rows = []
    for name, n, command, each, workers in runs:
        shutil.rmtree(work / f"out_{name}", ignore_errors=True)
        run_env = dict(env, OMP_NUM_THREADS=str(each))
        start = time.perf_counter()
        proc = subprocess.run(command, cwd=str(ROOT), env=run_env, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{proc.stderr[-2000:]}")
        rows.append({"processes": n, "threads_each": each, "loader_workers": workers, "seconds": round(seconds, 1),
                     "cases_per_minute": round(60.0 * cases / seconds, 2)})  # fmt: skip
    found = [_lesions(work / f"out_{name}") for name, *_ in runs]
    same = all(f == found[0] for f in found[1:])
    return {"cases": cases, "threads": threads, "rows": rows, "same_lesions": same,
            "commands": [" ".join(c) for _, _, c, _, _ in runs]}  # fmt: skip
