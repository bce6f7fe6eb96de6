"""Process memory as the kernel reports it: the resident-size lines of ``/proc/<pid>/status`` and the peak-memory
probe of a benchmark measurement. No torch import here: :py:mod:`bundle.experiments.memory_bound` measures a child
process, and torch loaded in the parent before the fork would count in the child's peak."""

from __future__ import annotations

import resource
from collections.abc import Callable
from pathlib import Path

__all__ = ["status_mb", "memory_probe"]


def status_mb(field: str, pid: int | str = "self") -> float | None:
    """A ``VmRSS``/``VmHWM`` line of ``/proc/<pid>/status`` in MB (MiB), or None where it does not exist (not Linux,
    or the process is gone).

    Args:
        field: the line's name, e.g. ``"VmHWM"`` (the peak resident size).
        pid: a process id, or ``"self"`` (this process). Defaults to ``"self"``.
    """
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return float(line.split()[1]) / 1024.0  # kB
    except OSError:
        pass
    return None


def memory_probe() -> Callable[[], dict[str, float | None]]:
    """Start a peak-memory measurement; call the returned function at its end.

    Returns:
        a function returning ``{"peak_rss_mb", "added_peak_mb"}``: the process's peak resident size since the
        probe started (since process start where the peak cannot be reset) and that peak minus the resident size
        at the start (None where unknown).
    """
    reset = False
    try:
        Path("/proc/self/clear_refs").write_text("5")  # Linux >= 4.0: resets VmHWM to the current VmRSS
        reset = True
    except OSError:
        pass
    before = status_mb("VmRSS")

    def stop() -> dict[str, float | None]:
        peak = status_mb("VmHWM") if reset else None
        if peak is None:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB
        added = peak - before if reset and before is not None else None
        return {"peak_rss_mb": peak, "added_peak_mb": added}

    return stop
