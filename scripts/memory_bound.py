"""Measure the peak memory (RSS) of the main job on one large synthetic CT volume.

Usage (from the bundle root)::

    python -m scripts.memory_bound --shape "[512, 512, 600]" --spacing "[0.8, 0.8, 1.0]"

Writes a synthetic CT (air, body, two lungs, a few nodules, noise; int16 HU) as an uncompressed NIfTI in a
temporary folder, runs ``python -m monai.bundle run --config_file configs/inference.json`` on it in a child process
(shipped weights, default routing: screen + lung-mask gate, as the product runs), and prints one JSON line: the
child's peak resident memory (``getrusage(RUSAGE_CHILDREN).ru_maxrss``), the input and resampled sizes, the seconds
taken and the exit status. While the child runs, its peak (``VmHWM``) is sampled every ``poll_s`` seconds; with
``timeout_s`` a child still running at the limit is stopped and the result says ``"complete": false`` with the peak
reached so far (a lower bound of the bound, not the bound).
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

import fire
import nibabel as nib
import numpy as np

ROOT = Path(__file__).resolve().parents[1]


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


def _peak_mib(pid: int) -> float | None:
    """The ``VmHWM`` (peak resident size) of process ``pid`` in MiB, None once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return float(line.split()[1]) / 1024.0  # kB
    except OSError:
        pass
    return None


def _run_child(command: list[str], env: dict[str, str], timeout_s: float | None, poll_s: float) -> dict:
    """Run ``command``, sampling its peak RSS; stop it at ``timeout_s``. Returns returncode, stderr tail, the
    last sampled peak and whether it finished."""
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(command, cwd=str(ROOT), env=env, stdout=subprocess.DEVNULL, stderr=err, text=True)
        start, sampled, complete, timeline = time.perf_counter(), 0.0, True, [[0.0, 0.0]]
        while proc.poll() is None:
            peak = _peak_mib(proc.pid) or 0.0
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


def main(
    shape: Sequence[int] = (512, 512, 600),
    spacing: Sequence[float] = (0.8, 0.8, 1.0),
    output: str | None = None,
    threads: int = 2,
    extra: Sequence[str] = (),
    timeout_s: float | None = None,
    poll_s: float = 1.0,
) -> None:
    """
    Args:
        shape: volume size (x, y, z). Defaults to 512 x 512 x 600.
        spacing: voxel spacing in mm. Defaults to 0.8 x 0.8 x 1.0 mm (a thin-slice chest CT).
        output: optional JSON file to write the result to (atomically).
        threads: torch threads of the inference (``--num_threads``). Defaults to 2.
        extra: more ``monai.bundle run`` arguments, e.g. ``["--routing", "False"]``.
        timeout_s: stop the inference after this many seconds and report the peak so far as incomplete; None
            waits for it. Defaults to None.
        poll_s: seconds between samples of the child's peak. Defaults to 1.
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
        child = _run_child(command, env, timeout_s, poll_s)
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
    line = json.dumps(result)
    print(line)
    if output:  # imported only now: torch in this process before the fork would count in the child's ru_maxrss
        sys.path.insert(0, str(ROOT))
        from bundle.io.atomic import atomic_write_text

        atomic_write_text(output, json.dumps(result, indent=4) + "\n")  # the Model Zoo's JSON format


if __name__ == "__main__":
    fire.Fire(main)
