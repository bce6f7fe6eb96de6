"""The child-process side of the stage profile (:mod:`bundle.experiments.profile_stages`), run as a script by path
(``python <this file> measure|profile ...``) with the measured tree's root as the working directory.

- ``measure``: runs a command in a child and waits for it with :py:func:`os.wait4`: wall seconds, CPU seconds and
  the peak resident size of that child alone (its own ``ru_maxrss``, not the ``RUSAGE_CHILDREN`` maximum that all
  children of one parent share), the load average at its start and the CPU seconds other processes used meanwhile
  (``/proc/stat``). This process is a fresh, small interpreter, so a parent that imported torch never counts in
  the child's peak (Linux carries the pre-``exec`` peak over).
- ``profile``: puts the tree's root first on ``sys.path``, runs monai.bundle's ``run`` (what
  ``python -m monai.bundle run`` runs) under :py:mod:`cProfile` -- imports included, so they count as start-up --
  dumps the statistics and writes the ``(co_filename, co_firstlineno, co_name)`` keys of the candidate functions
  resolved in that tree. Meanwhile a :py:class:`StackSampler` records which candidate functions enclose which
  (cProfile keeps one caller level only, so a function called both inside and outside another, such as
  ``Orientation.__call__`` in preprocessing and again inside ``Invertd``, cannot be split from its statistics).

Only the standard library is imported at module level: the script also runs against older trees (release 0.6.0),
whose own ``bundle`` package must be the one imported.
"""

from __future__ import annotations

import argparse
import cProfile
import importlib
import inspect
import json
import os
import platform
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

__all__ = ["code_key", "StackSampler", "machine_cpu_seconds", "measure", "profile_run", "main"]

_HERE = os.path.dirname(os.path.abspath(__file__))


def code_key(dotted: str) -> tuple[str, int, str] | None:
    """The :py:mod:`pstats` key ``(co_filename, co_firstlineno, co_name)`` of a function named by its dotted path.

    Args:
        dotted: e.g. ``"monai.transforms.LoadImage.__call__"`` or ``"bundle.lesions.extract.extract_lesions"``: the
            longest importable module prefix, then attributes.

    Returns:
        the key of the (unwrapped) function, or None when no prefix imports, an attribute is missing or the object
        has no Python code (a builtin).
    """
    parts = dotted.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:cut]))
        except Exception:  # ImportError, or a module that fails while importing: either way it does not resolve
            continue
        try:
            for name in parts[cut:]:
                obj = getattr(obj, name)
        except AttributeError:
            return None
        code = getattr(inspect.unwrap(obj) if callable(obj) else obj, "__code__", None)
        return None if code is None else (code.co_filename, code.co_firstlineno, code.co_name)
    return None


class StackSampler(threading.Thread):
    """Samples the Python stack of one thread every ``interval`` seconds, keeping only the frames whose function
    name is in ``names`` (outermost first), counted per distinct stack.

    Args:
        names: the ``co_name`` of the functions of interest (e.g. ``"__call__"``, ``"extract_lesions"``).
        interval: seconds between samples. Defaults to 0.005.
        thread_id: the sampled thread; defaults to the one creating the sampler.
    """

    def __init__(self, names: Sequence[str], interval: float = 0.005, thread_id: int | None = None) -> None:
        super().__init__(daemon=True)
        self.names, self.interval = frozenset(names), interval
        self.thread_id = threading.get_ident() if thread_id is None else thread_id
        self.counts: dict[tuple, int] = {}
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.wait(self.interval):
            frame = sys._current_frames().get(self.thread_id)
            stack = []
            while frame is not None:
                if frame.f_code.co_name in self.names:
                    stack.append(frame.f_code)
                frame = frame.f_back
            key = tuple(reversed(stack))
            self.counts[key] = self.counts.get(key, 0) + 1

    def stop(self) -> None:
        """Stop sampling and wait for the thread."""
        self._done.set()
        self.join()

    def stacks(self, keep: set[tuple[str, int, str]]) -> list[list[Any]]:
        """``[count, [key, ...]]`` per distinct stack of the functions whose :py:func:`code_key` is in ``keep``."""
        merged: dict[tuple, int] = {}
        for codes, count in self.counts.items():
            key = tuple(k for k in ((c.co_filename, c.co_firstlineno, c.co_name) for c in codes) if k in keep)
            merged[key] = merged.get(key, 0) + count
        return [[count, [list(k) for k in key]] for key, count in merged.items()]


def machine_cpu_seconds() -> float | None:
    """CPU seconds the whole machine has been busy since boot (``/proc/stat``: user, nice, system, irq, softirq,
    steal), or None where unknown."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
        user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[1:9])
        return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def measure(argv: Sequence[str], cwd: str, log: str) -> dict[str, Any]:
    """Run ``argv`` in a child with ``cwd`` (``PYTHONPATH`` removed), its output to ``log``, and measure it. Call it
    from a small process (this script's ``measure``): Linux counts the caller's peak at the child's ``exec`` in the
    child's peak.

    Returns:
        ``{"returncode", "seconds", "cpu_s", "peak_rss_mb", "load_avg_start", "others_cpu_s"}``: ``others_cpu_s`` is
        the machine's busy CPU seconds during the run minus the child's own (None where ``/proc/stat`` is missing).
    """
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the tree's own packages, nothing else
    load = list(os.getloadavg())
    busy = machine_cpu_seconds()
    start = time.perf_counter()
    with open(log, "wb") as out:
        proc = subprocess.Popen(list(argv), cwd=cwd, stdout=out, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    cpu = usage.ru_utime + usage.ru_stime
    busy_after = machine_cpu_seconds()
    others = None if busy is None or busy_after is None else max(0.0, busy_after - busy - cpu)
    return {
        "returncode": proc.returncode,
        "seconds": seconds,
        "cpu_s": cpu,
        "peak_rss_mb": usage.ru_maxrss / 1024.0,  # Linux reports KiB
        "load_avg_start": load,
        "others_cpu_s": others,
    }


def profile_run(
    root: str, config_file: str, output_dir: str, num_threads: int, prof: str, candidates: Sequence[str]
) -> dict[str, Any]:
    """Run ``monai.bundle.scripts.run(config_file=..., output_dir=..., num_threads=...)`` under cProfile with ``root``
    first on ``sys.path``, dump the statistics to ``prof`` and resolve ``candidates`` in this tree.

    Returns:
        ``{"total_s", "exit_code", "keys", "samples", "sample_interval_s", "versions"}``: ``total_s`` is the profiled
        wall time (monai's import included), ``keys`` maps each candidate to its :py:func:`code_key` (None: does not
        resolve here), ``samples`` holds the sampled stacks of the resolved candidates (:py:meth:`StackSampler.stacks`).
    """
    here = os.path.normcase(_HERE)
    sys.path[:] = [p for p in sys.path if os.path.normcase(os.path.abspath(p or os.curdir)) != here]
    sys.path.insert(0, os.path.abspath(root))
    exit_code: Any = 0
    profiler = cProfile.Profile()
    sampler = StackSampler([c.rsplit(".", 1)[-1] for c in candidates])
    sampler.start()
    start = time.perf_counter()
    profiler.enable()
    try:
        from monai.bundle.scripts import run

        run(config_file=config_file, output_dir=output_dir, num_threads=num_threads)
    except SystemExit as exc:  # configs/inference.json exits with the failure line when cases failed
        exit_code = exc.code
    finally:
        profiler.disable()
        sampler.stop()
    total = time.perf_counter() - start
    profiler.dump_stats(prof)
    keys = {c: code_key(c) for c in candidates}
    versions = {"python": platform.python_version()}
    versions.update({name: getattr(sys.modules.get(name), "__version__", None) for name in ("torch", "monai")})
    return {
        "total_s": total,
        "exit_code": exit_code if exit_code is None or isinstance(exit_code, int) else str(exit_code),
        "keys": keys,
        "samples": sampler.stacks({k for k in keys.values() if k is not None}),
        "sample_interval_s": sampler.interval,
        "versions": versions,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """The command line: ``measure --out OUT --log LOG -- COMMAND...`` or ``profile --root ... --out OUT``; each
    writes its result as JSON to ``OUT``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    m = sub.add_parser("measure")
    m.add_argument("--out", required=True)
    m.add_argument("--log", required=True)
    m.add_argument("command", nargs=argparse.REMAINDER)
    p = sub.add_parser("profile")
    p.add_argument("--out", required=True)
    p.add_argument("--root", required=True)
    p.add_argument("--config_file", required=True)
    p.add_argument("--output_dir", required=True)
    p.add_argument("--num_threads", type=int, required=True)
    p.add_argument("--prof", required=True)
    p.add_argument("--candidates", required=True, help="a JSON list of dotted function paths")
    args = parser.parse_args(argv)
    if args.mode == "measure":
        command = args.command[1:] if args.command[:1] == ["--"] else args.command
        result = measure(command, os.getcwd(), args.log)
    else:
        result = profile_run(
            args.root, args.config_file, args.output_dir, args.num_threads, args.prof, json.loads(args.candidates)
        )
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
