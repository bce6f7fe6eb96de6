"""The peak memory (RSS) of the main job on one large synthetic CT volume (``python -m scripts.memory_bound``).

:py:func:`measure_memory_bound` writes a synthetic CT (air, body, two lungs, a few nodules, noise; int16 HU) as an
uncompressed NIfTI in a temporary folder, runs ``python -m monai.bundle run --config_file configs/inference.json`` on
it in a child process (shipped weights, default routing: screen + lung-mask gate, as the product runs) and returns
the child's peak resident memory (``getrusage(RUSAGE_CHILDREN).ru_maxrss``), the input and resampled sizes, the
seconds taken and the exit status. While the child runs, its peak (``VmHWM``) is sampled every ``poll_s`` seconds;
with ``timeout_s`` a child still running at the limit is stopped and the result says ``"complete": false`` with the
peak reached so far (a lower bound of the bound, not the bound).

This module imports neither torch nor the bundle's networks: whatever this process holds when it starts the child
counts in the child's ``ru_maxrss``.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from bundle.experiments.memory import status_mb

__all__ = ["BUNDLE_ROOT", "synthetic_ct", "measure_memory_bound", "write_memory_bound"]

BUNDLE_ROOT = Path(__file__).resolve().parents[2]  # the folder holding configs/ (the child's working folder)


def synthetic_ct(shape: Sequence[int], seed: int = 0) -> np.ndarray:
    """An int16 CT-like volume in HU of ``shape`` (x, y, z), built slab by slab to keep this process small."""
    rng = np.random.default_rng(seed)
    x, y = np.meshgrid(np.linspace(-1, 1, shape[0]), np.linspace(-1, 1, shape[1]), indexing="ij")
    body = (x / 0.9) ** 2 + (y / 0.7) ** 2 < 1
    lungs = (((x - 0.4) / 0.3) ** 2 + (y / 0.45) ** 2 < 1) | (((x + 0.4) / 0.3) ** 2 + (y / 0.45) ** 2 < 1)
    plane = np.where(body, 40, -1000).astype(np.int16)
    plane[lungs] = -850
    volume = np.empty(tuple(shape), np.int16)
    for k in range(shape[2]):
        volume[:, :, k] = plane + rng.normal(0, 20, plane.shape).astype(np.int16)
    for cx, cy, cz in rng.uniform(0.2, 0.8, size=(5, 3)) * np.asarray(shape):  # a few 8-voxel nodules
        volume[int(cx) - 4 : int(cx) + 4, int(cy) - 4 : int(cy) + 4, int(cz) - 2 : int(cz) + 2] = 30
    return volume


def _run_child(command: list[str], env: dict[str, str], timeout_s: float | None, poll_s: float, cwd: Path) -> dict:
    """Run ``command``, sampling its peak RSS; stop it at ``timeout_s``. Returns returncode, stderr tail, the
    last sampled peak and whether it finished."""
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(command, cwd=str(cwd), env=env, stdout=subprocess.DEVNULL, stderr=err, text=True)
        start, sampled, complete, timeline = time.perf_counter(), 0.0, True, [[0.0, 0.0]]
        while proc.poll() is None:
            peak = status_mb("VmHWM", proc.pid) or 0.0
            if peak > timeline[-1][1] + 100.0:  # the peak grew by > 100 MiB: (seconds since start, MiB)
                timeline.append([round(time.perf_counter() - start, 1), round(peak, 1)])
            sampled = max(sampled, peak)
            if timeout_s is not None and time.perf_counter() - start > timeout_s:
                proc.terminate()
                proc.wait()
                complete = False
                break
            time.sleep(poll_s)
        err.seek(0)
        return {"returncode": proc.returncode, "stderr": err.read()[-2000:], "sampled": sampled,
                "complete": complete, "timeline": timeline[1:]}  # fmt: skip


def measure_memory_bound(
    shape: Sequence[int] = (512, 512, 600),
    spacing: Sequence[float] = (0.8, 0.8, 1.0),
    threads: int = 2,
    extra: Sequence[str] = (),
    timeout_s: float | None = None,
    poll_s: float = 1.0,
    bundle_root: str | Path = BUNDLE_ROOT,
) -> dict[str, Any]:
    """
    Run the inference command on one synthetic CT of ``shape`` and ``spacing`` and measure its peak memory.

    Args:
        shape: volume size (x, y, z). Defaults to 512 x 512 x 600.
        spacing: voxel spacing in mm. Defaults to 0.8 x 0.8 x 1.0 mm (a thin-slice chest CT).
        threads: torch threads of the inference (``--num_threads``). Defaults to 2.
        extra: more ``monai.bundle run`` arguments, e.g. ``["--routing", "False"]``.
        timeout_s: stop the inference after this many seconds and report the peak so far as incomplete; None
            waits for it. Defaults to None.
        poll_s: seconds between samples of the child's peak. Defaults to 1.
        bundle_root: the folder the inference command runs in. Defaults to this bundle's.

    Returns:
        ``shape``, ``spacing_mm``, ``input_mib``, ``resampled_shape``, ``resampled_float32_mib``, ``peak_rss_mib``,
        ``peak_sampled_mib``, ``complete``, ``peak_timeline_s_mib``, ``seconds``, ``returncode``, ``threads``,
        ``command`` and, when the command failed, ``stderr_tail``.
    """
    shape, spacing = [int(s) for s in shape], [float(s) for s in spacing]
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "scans"
        data.mkdir()
        nib.save(nib.Nifti1Image(synthetic_ct(shape), np.diag([*spacing, 1.0])), str(data / "large.nii"))
        command = [
            sys.executable, "-m", "monai.bundle", "run", "--config_file", "configs/inference.json",
            "--dataset_dir", str(data), "--output_dir", str(Path(tmp) / "out"), "--num_threads", str(threads),
            *[str(a) for a in extra],
        ]  # fmt: skip
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONWARNINGS="ignore")
        start = time.perf_counter()
        child = _run_child(command, env, timeout_s, poll_s, Path(bundle_root))
        seconds = time.perf_counter() - start
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # Linux: KiB, the largest waited-for child
    resampled = [round(n * s / p) for n, s, p in zip(shape, spacing, (1.0, 1.0, 2.5))]
    result = {
        "shape": shape,
        "spacing_mm": spacing,
        "input_mib": round(int(np.prod(shape)) * 2 / 2**20, 1),
        "resampled_shape": resampled,
        "resampled_float32_mib": round(int(np.prod(resampled)) * 4 / 2**20, 1),
        "peak_rss_mib": round(max(peak_kib / 1024, child["sampled"]), 1),
        "peak_sampled_mib": round(child["sampled"], 1),  # the child's own VmHWM (not inherited across fork/exec)
        "complete": child["complete"],
        "peak_timeline_s_mib": child["timeline"],
        "seconds": round(seconds, 1),
        "returncode": child["returncode"],
        "threads": threads,
        "command": " ".join(command[1:]),
    }
    if child["returncode"] != 0:
        result["stderr_tail"] = child["stderr"]
    return result


def write_memory_bound(output: str | os.PathLike, result: dict[str, Any]) -> None:
    """Write ``result`` to ``output`` as indented JSON (the Model Zoo's format), atomically. Call it after the
    measurement: it imports the bundle's writer, which must not be in the process while the child runs."""
    from bundle.io.atomic import atomic_write_text

    atomic_write_text(output, json.dumps(result, indent=4) + "\n")
