"""Measure the peak memory (RSS) of the main job on one large synthetic CT volume.

Usage (from the bundle root)::

    python -m scripts.memory_bound --shape "[512, 512, 600]" --spacing "[0.8, 0.8, 1.0]"

Writes a synthetic CT (air, body, two lungs, a few nodules, noise; int16 HU) as an uncompressed NIfTI in a
temporary folder, runs ``python -m monai.bundle run --config_file configs/inference.json`` on it in a child process
(shipped weights, default routing: screen + lung-mask gate, as the product runs), and prints one JSON line: the
child's peak resident memory (``getrusage(RUSAGE_CHILDREN).ru_maxrss``), the input and resampled sizes, the seconds
taken and the exit status. While the child runs, its peak (``VmHWM``) is sampled every ``poll_s`` seconds; with
``timeout_s`` a child still running at the limit is stopped and the result says ``"complete": false`` with the peak
reached so far (a lower bound of the bound, not the bound). See :py:mod:`bundle.experiments.memory_bound`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import fire

from bundle.experiments.memory_bound import measure_memory_bound, write_memory_bound


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
    result = measure_memory_bound(shape, spacing, threads, extra, timeout_s, poll_s)
    print(json.dumps(result))
    if output:
        write_memory_bound(output, result)


if __name__ == "__main__":
    fire.Fire(main)
