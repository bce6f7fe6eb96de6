"""Measure the peak memory (RSS) of the main job on one large synthetic CT volume.

Usage (from the bundle root)::

    python scripts/memory_bound.py --shape "[512, 512, 600]" --spacing "[0.8, 0.8, 1.0]"

Writes a synthetic CT (air, body, two lungs, a few nodules, noise; int16 HU) as an uncompressed NIfTI in a
temporary folder, runs ``python -m monai.bundle run --config_file configs/inference.json`` on it in a child process
(shipped weights, default routing), and prints one JSON line: the child's peak resident memory
(``getrusage(RUSAGE_CHILDREN).ru_maxrss``), the input and resampled sizes, the seconds taken and the exit status.
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


def main(
    shape: Sequence[int] = (512, 512, 600),
    spacing: Sequence[float] = (0.8, 0.8, 1.0),
    output: str | None = None,
    threads: int = 2,
    extra: Sequence[str] = (),
) -> None:
    """
    Args:
        shape: volume size (x, y, z). Defaults to 512 x 512 x 600.
        spacing: voxel spacing in mm. Defaults to 0.8 x 0.8 x 1.0 mm (a thin-slice chest CT).
        output: optional JSON file to write the result to.
        threads: torch threads of the inference (``--num_threads``). Defaults to 2.
        extra: more ``monai.bundle run`` arguments, e.g. ``["--routing", "False"]``.
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
        proc = subprocess.run(command, cwd=str(ROOT), env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - start
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # Linux: KiB, the largest child
    resampled = [round(n * s / p) for n, s, p in zip(shape, spacing, (1.0, 1.0, 2.5))]
    result = {
        "shape": shape,
        "spacing_mm": spacing,
        "input_mib": round(int(np.prod(shape)) * 2 / 2**20, 1),
        "resampled_shape": resampled,
        "resampled_float32_mib": round(int(np.prod(resampled)) * 4 / 2**20, 1),
        "peak_rss_mib": round(peak_kib / 1024, 1),
        "seconds": round(seconds, 1),
        "returncode": proc.returncode,
        "command": " ".join(command[1:]),
    }
    if proc.returncode != 0:
        result["stderr_tail"] = proc.stderr[-2000:]
    line = json.dumps(result)
    print(line)
    if output:
        Path(output).write_text(line + "\n")



if __name__ == "__main__":
    fire.Fire(main)
