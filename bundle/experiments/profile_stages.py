"""The main command, stage by stage: ``python -m monai.bundle run --config_file configs/inference.json`` on the
embedded chest CT, measured for release 0.6.0 and the current tree in one run (``python -m scripts.benchmark
--profile``).

For each tree, with that tree's root as the working directory and the same interpreter:

- the command un-profiled (wall seconds, the minimum of the repeats, and the child's own peak resident size);
- the command under :py:mod:`cProfile` (:mod:`bundle.experiments.profile_driver`), its cumulative times attributed to
  the stages of :data:`STAGES` through the functions that resolve in that tree (a stage none of whose functions
  resolves is ``n/a``); time in a stage function called inside another one counts for the outer one only;
- ``python -c "import bundle"`` and the CLI start-up (the main command with ``--run "[]"``).

The report: ``profile.json`` and ``profile.md`` in the output folder, and the same section between
:data:`BEGIN` and :data:`END` in ``docs/benchmark.md`` (a rerun replaces it).
"""

from __future__ import annotations

import json
import logging
import os
import platform
import pstats
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bundle.experiments import profile_driver
from bundle.experiments.benchmark_report import BUNDLE_ROOT, cpu_name
from bundle.experiments.markdown import markdown_table, significant_cell
from bundle.io.atomic import atomic_write_text

logger = logging.getLogger(__name__)

__all__ = [
    "Stage", "STAGES", "CASE_LOOP", "BEGIN", "END", "candidates", "attribute_stages", "profile_markdown",
    "replace_marked_section", "run_stage_profile",
]  # fmt: skip

Key = tuple[str, int, str]  # a pstats function key: (co_filename, co_firstlineno, co_name)


@dataclass(frozen=True)
class Stage:
    """A stage of the main command: the sum of its ``parts``; each part is a tuple of alternative dotted function
    paths, of which the first that resolves and was called is timed (e.g. a function that moved between releases,
    or an outer function before the inner one it calls)."""

    name: str
    parts: tuple[tuple[str, ...], ...]


# the candidate table: add an alternative to a part (a function that moved) or a part to a stage (new work)
STAGES: tuple[Stage, ...] = (
    Stage("read", (("monai.transforms.LoadImage.__call__", "monai.transforms.LoadImaged.__call__"),)),
    Stage("orient + resample", (("monai.transforms.Orientation.__call__",), ("monai.transforms.Spacing.__call__",))),
    Stage("smoothing", (("bundle.transforms.array.BorderGaussianSmooth.__call__",),)),
    Stage(
        "windowing",
        (("bundle.transforms.array.WindowIntensity.__call__", "monai.transforms.ScaleIntensityRange.__call__"),),
    ),
    Stage("lung mask", (("bundle.transforms.lung.LungCandidateMask.__call__",),)),
    Stage("network (routed sliding window)", (("bundle.inferers.inferer.RoutedSlidingWindowInferer.__call__",),)),
    Stage(
        "lesion extraction",
        (
            ("bundle.lesions.extract.extract_lesions", "bundle.lesions.find.find_lesions",
             "bundle.transforms.lesion.find_lesions"),
            ("bundle.lesions.rescore.rescore_lesions", "bundle.transforms.fp_reduction.rescore_lesions"),
        ),
    ),  # fmt: skip
    Stage(
        "back to the input grid",
        (
            ("monai.transforms.Invertd.__call__",),  # release 0.6.0: the label map resampled by MONAI
            ("bundle.lesions.geometry.label_map_to_grid",),  # now: nearest neighbour inside the lesions' boxes
            ("bundle.engines.evaluator._label_boxes",),  # ... whose boxes come from lesions_to_grid
            ("bundle.lesions.geometry.lesions_to_grid", "bundle.engines.evaluator.lesions_to_grid"),
        ),
    ),
    Stage("writing", (("bundle.io.writers.write_case_outputs",), ("bundle.io.dicom.dicom_case_outputs",))),
)
CASE_LOOP: tuple[str, ...] = ("bundle.engines.evaluator.LesionInferenceEvaluator.run",)
STARTUP, OTHER, LOOP, TOTAL = "start-up (imports, config)", "other", "case loop", "total"
BEGIN, END = "<!-- profile:begin -->", "<!-- profile:end -->"
_DRIVER = Path(profile_driver.__file__).resolve()


def candidates(stages: Sequence[Stage] = STAGES, case_loop: Sequence[str] = CASE_LOOP) -> list[str]:
    """Every dotted path of ``case_loop`` and ``stages``, once each, in table order."""
    paths = [*case_loop, *(p for s in stages for part in s.parts for p in part)]
    return list(dict.fromkeys(paths))


def _choose(part: Sequence[str], keys: Mapping[str, Any], stats: Mapping[Key, Any]) -> tuple[str, Key, bool] | None:
    """(path, key, called) of the first alternative that resolves and was called, else of the first that resolves
    (called False); None when none resolves."""
    resolved = [(p, tuple(keys[p])) for p in part if keys.get(p)]
    for path, key in resolved:
        if key in stats and stats[key][1] > 0:
            return path, key, True  # type: ignore[return-value]
    return (resolved[0][0], resolved[0][1], False) if resolved else None  # type: ignore[return-value]


def _sampled_share(key: Key, samples: Sequence[tuple[int, list[Key]]], good: Key | None, bad: set[Key]) -> float:
    """The share of the sampled stacks holding ``key`` (outermost first) in which the nearest function enclosing its
    outermost call among ``{good} | bad`` is ``good`` (``good`` None: none encloses it); 1 when no stack holds it
    (it ran for less than a few sampling intervals in all)."""
    held = kept = 0
    for count, stack in samples:
        if key in stack:
            held += count
            outer = next((k for k in reversed(stack[: stack.index(key)]) if k == good or k in bad), None)
            kept += count if outer == good else 0
    return kept / held if held else 1.0


def attribute_stages(
    stats: Mapping[Key, Any],
    keys: Mapping[str, Any],
    total_s: float,
    stages: Sequence[Stage] = STAGES,
    case_loop: Sequence[str] = CASE_LOOP,
    samples: Sequence[tuple[int, Sequence[Any]]] = (),
) -> list[dict[str, Any]]:
    """
    The stage seconds of one profiled run.

    Args:
        stats: ``pstats.Stats(...).stats``: key -> ``(cc, nc, tottime, cumtime, callers)``.
        keys: dotted path -> pstats key (a list or tuple) or None where it does not resolve in the profiled tree.
        total_s: the profiled run's wall seconds.
        stages: the stages, in report order.
        case_loop: alternatives for the case loop; start-up is ``total_s`` minus its cumulative time.
        samples: ``(count, stack)`` pairs of :py:class:`bundle.experiments.profile_driver.StackSampler` (stacks of
            keys, outermost first): which timed function encloses which (cProfile's caller edges cannot tell when a
            function on the way, such as MONAI's ``apply_transform`` or the builtin ``next``, serves both sides).

    Returns:
        one ``{"stage", "seconds", "functions"}`` per row: start-up, each stage, other (the case loop minus the
        stages), the case loop and the total. ``seconds`` is None (n/a) where nothing resolves; ``functions`` lists
        the timed paths (``"... (not called)"`` for a resolved one that never ran). A stage function's time counts
        only where the nearest enclosing function among the case loop and the other timed functions is the case
        loop, so nested calls are not counted twice and calls outside the loop belong to start-up: its cumulative
        time times the share of the samples holding it where that holds (all of it when no sample holds it).
    """
    sampled = [(count, [tuple(k) for k in stack]) for count, stack in samples]
    loop = _choose(case_loop, keys, stats)
    loop_key = loop[1] if loop and loop[2] else None
    chosen = [[_choose(part, keys, stats) for part in stage.parts] for stage in stages]
    timed = {c[1] for parts in chosen for c in parts if c and c[2]}
    rows = []
    for stage, parts in zip(stages, chosen):
        seconds: float | None = None
        functions = []
        for c in parts:
            if c is None:
                continue
            path, key, called = c
            seconds = 0.0 if seconds is None else seconds
            functions.append(path if called else f"{path} (not called)")
            if called:
                seconds += stats[key][3] * _sampled_share(key, sampled, loop_key, timed - {key})  # type: ignore
        rows.append({"stage": stage.name, "seconds": seconds, "functions": functions})
    loop_s = stats[loop_key][3] if loop_key else None
    named = sum(r["seconds"] for r in rows if r["seconds"] is not None)
    loop_functions = [loop[0]] if loop_key else []
    return [
        {"stage": STARTUP, "seconds": None if loop_s is None else total_s - loop_s, "functions": []},
        *rows,
        {"stage": OTHER, "seconds": None if loop_s is None else loop_s - named, "functions": []},
        {"stage": LOOP, "seconds": loop_s, "functions": loop_functions},
        {"stage": TOTAL, "seconds": total_s, "functions": []},
    ]


def _cell(value: Any) -> str:
    """3 significant digits, whole numbers from 100 on, None as n/a."""
    if isinstance(value, float) and abs(value) >= 100:
        return f"{value:.0f}"
    return "n/a" if value is None else significant_cell(value)


def profile_markdown(report: Mapping[str, Any]) -> str:
    """The report section (no markers): heading, command, machine and load, the note on cProfile, one table with a
    seconds and a share column per tree (and the change when there are two), the functions timed.

    Args:
        report: what :py:func:`run_stage_profile` writes to ``profile.json``: ``command``, ``machine`` and
            ``trees``, each tree with ``label``, ``stages`` (rows of :py:func:`attribute_stages`), ``wall_s``,
            ``peak_rss_mb``, ``import_bundle_s``, ``cli_startup_s``, ``load_avg_start`` and ``others_cpu_s``.
    """
    trees, machine = report["trees"], report["machine"]
    base = trees[0] if len(trees) == 2 else None
    heading = "## Main command, stage by stage" + (f" (release {base['version']} vs now)" if base else "")
    columns = [("row", "stage (seconds unless stated)")]
    for i, t in enumerate(trees):
        columns += [(f"s{i}", t["label"]), (f"p{i}", "% of total")]
    if base:
        columns.append(("change", "now - release"))
    names = [r["stage"] for r in trees[0]["stages"]]
    rows: list[dict[str, Any]] = []
    for j, name in enumerate(names):
        row: dict[str, Any] = {"row": f"{name} (profiled)" if name in (LOOP, TOTAL) else name}
        for i, t in enumerate(trees):
            s, total = t["stages"][j]["seconds"], t["stages"][-1]["seconds"]
            share = "" if s is None or name == TOTAL or not total else f"{100 * s / total:.0f}%"
            row[f"s{i}"], row[f"p{i}"] = s, share
        rows.append(row)
    extra = [
        (f"wall, un-profiled (min of {report['repeats']})", "wall_s"),
        ("peak RSS MB, un-profiled", "peak_rss_mb"),
        ('import bundle (`python -c "import bundle"`)', "import_bundle_s"),
        ('bundle CLI start-up (the command with `--run "[]"`)', "cli_startup_s"),
    ]
    for label, key in extra:
        row = {"row": label}
        for i, t in enumerate(trees):
            row[f"s{i}"], row[f"p{i}"] = t.get(key), ""
        rows.append(row)
    if base:
        for row in rows:
            a, b = row["s0"], row["s1"]
            row["change"] = None if a is None or b is None else b - a
    loads = "; ".join(
        f"{t['label']}: 1-minute load average {t['load_avg_start'][0]:.2f} at its first run, CPU seconds used by "
        f"other processes {_cell(t.get('others_cpu_s'))} during its un-profiled runs and "
        f"{_cell(t['profiled_run'].get('others_cpu_s'))} during its profiled run"
        for t in trees
    )
    versions, interval_ms = trees[-1]["versions"], 1000 * trees[-1].get("sample_interval_s", 0.005)
    md = [
        heading,
        "",
        f"Command: `{report['command']}`  ",
        f"Machine: {machine['cpu']}, {machine['logical_cpus']} logical CPUs, `--num_threads {report['threads']}`, "
        f"Python {versions.get('python')}, torch {versions.get('torch')}, MONAI {versions.get('monai')}, one "
        f"interpreter for both trees, each run in its own process with the tree's root as working directory.  ",
        f"Other load: {loads}.  ",
        "Stage seconds are measured under cProfile (its overhead inflates Python-heavy stages): a stage function's "
        "cumulative time, the part spent inside another stage function counting for the outer one (split by stack "
        f"samples every {interval_ms:g} ms); 'other' is the case loop minus the named stages; start-up is the "
        "profiled total minus the case loop (imports, config parsing, network and weights). The wall, peak-memory, "
        "import and CLI start-up rows are un-profiled. n/a: no function of the stage exists in that tree.",
        "",
        markdown_table(rows, columns, _cell),
    ]
    functions = []
    for j, name in enumerate(names):
        per_tree = [", ".join(f"`{f}`" for f in t["stages"][j]["functions"]) or "none" for t in trees]
        if any(t["stages"][j]["functions"] for t in trees):
            same = all(p == per_tree[0] for p in per_tree)
            functions.append(f"- {name}: " + (per_tree[0] if same else "; ".join(
                f"{t['label']}: {p}" for t, p in zip(trees, per_tree))))  # fmt: skip
    if functions:
        md += ["", "Functions timed:", "", *functions]
    return "\n".join(md) + "\n"


def replace_marked_section(text: str, section: str, begin: str = BEGIN, end: str = END) -> str:
    """``text`` with ``section`` between the ``begin`` and ``end`` lines: in place of the marked section when there is
    one, else appended at the end; everything else is kept.

    Raises:
        ValueError: when only one marker is present, either appears twice, or ``end`` comes before ``begin``.
    """
    block = f"{begin}\n{section.rstrip()}\n{end}\n"
    counts = (text.count(begin), text.count(end))
    if counts == (0, 0):
        return text.rstrip("\n") + "\n\n" + block if text.strip() else block
    i, j = text.find(begin), text.find(end)
    if counts != (1, 1) or j < i:
        raise ValueError(f"Expected one '{begin}' line before one '{end}' line, found {counts[0]} and {counts[1]}.")
    after = text[j + len(end) :]
    return text[:i] + block + after[1:] if after.startswith("\n") else text[:i] + block + after


def _tree_info(root: Path) -> dict[str, Any]:
    """Version (configs/metadata.json), commit and whether the work tree differs from it."""

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True).stdout.strip()
        except OSError:
            return ""

    try:
        version = json.loads((root / "configs" / "metadata.json").read_text()).get("version", "?")
    except (OSError, ValueError):
        version = "?"
    commit = git("rev-parse", "HEAD")
    dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    return {"root": str(root), "version": version, "commit": commit, "dirty": dirty}


def _measure(python: str, root: Path, argv: Sequence[str], work: Path, name: str) -> dict[str, Any]:
    """One command measured by the driver's ``measure`` (a fresh interpreter around it); raises when it fails."""
    out, log = work / f"{name}.json", work / f"{name}.log"
    wrapper = [python, str(_DRIVER), "measure", "--out", str(out), "--log", str(log), "--", *argv]
    subprocess.run(wrapper, cwd=root, check=True)
    result = json.loads(out.read_text())
    if result["returncode"] != 0:
        raise RuntimeError(f"{' '.join(argv)} in {root} exited with {result['returncode']}; see {log}.")
    return result


def _profiled(python: str, root: Path, config_file: str, threads: int, work: Path) -> dict[str, Any]:
    """The main command of ``root`` under the driver's ``profile``, attributed to the stages."""
    prof, out = work / "main.prof", work / "profile.json"
    with tempfile.TemporaryDirectory(prefix="profile-out-") as tmp:
        run = _measure(python, root, [
            python, str(_DRIVER), "profile", "--out", str(out), "--root", str(root), "--config_file", config_file,
            "--output_dir", tmp, "--num_threads", str(threads), "--prof", str(prof), "--candidates",
            json.dumps(candidates())], work, "profiled")  # fmt: skip
    result = json.loads(out.read_text())
    if result["exit_code"] not in (0, None):
        raise RuntimeError(f"the profiled command in {root} exited with {result['exit_code']}; see {work}.")
    stats, samples = pstats.Stats(str(prof)).stats, result["samples"]
    return {
        "profiled_run": run, "versions": result["versions"], "keys": result["keys"],
        "stages": attribute_stages(stats, result["keys"], result["total_s"], samples=samples),
        "samples": sum(c for c, _ in samples), "sample_interval_s": result["sample_interval_s"],
    }  # fmt: skip


def run_stage_profile(
    output_dir: str | Path,
    baseline_root: str | Path | None = None,
    threads: int = 2,
    repeats: int = 1,
    config_file: str = "configs/inference.json",
    docs_file: str | Path | None = "docs/benchmark.md",
    command: str = "python -m scripts.benchmark --profile",
    current_root: str | Path = BUNDLE_ROOT,
    python: str = sys.executable,
) -> str:
    """
    Measure the main command of ``baseline_root`` (if given) and ``current_root`` side by side; write
    ``profile.json`` and ``profile.md`` to ``output_dir`` and the section to ``docs_file``.

    Args:
        output_dir: the report folder.
        baseline_root: the older tree (a git worktree of release 0.6.0); None profiles the current tree only.
        threads: ``--num_threads`` of every run. Defaults to 2.
        repeats: un-profiled runs of each command per tree (the minimum is reported); one profiled run.
        config_file: the config, relative to each root.
        docs_file: the Markdown file whose marked section is replaced (None: leave the docs alone).
        command: the command line written on top of the report.
        current_root: the current tree; the work files (logs, pstats dumps) go to its ``runs/profile_stages``.
        python: the interpreter of every run. Defaults to this one.

    Returns:
        the path of ``profile.md``.
    """
    roots = [Path(r).resolve() for r in ([baseline_root] if baseline_root else []) + [current_root]]
    work_root = Path(current_root) / "runs" / "profile_stages"
    names = ["baseline", "now"][-len(roots) :]
    trees = [{"name": n, **_tree_info(r)} for n, r in zip(names, roots)]
    for t in trees:
        state = ", ".join([t["commit"][:7]] * bool(t["commit"]) + ["modified"] * t["dirty"])
        prefix = "release " if t["name"] == "baseline" else "now: "
        t["label"] = f"{prefix}{t['version']}" + (f" ({state})" if state else "")
        t["work"] = work_root / t["name"]
        t["work"].mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "command": command, "threads": threads, "repeats": repeats, "config_file": config_file,
        "machine": {"cpu": cpu_name(), "logical_cpus": os.cpu_count(), "platform": platform.platform(),
                    "load_avg_start": list(os.getloadavg())},
        "trees": trees,
    }  # fmt: skip
    base_cmd = [python, "-m", "monai.bundle", "run", "--config_file", config_file, "--num_threads", str(threads)]
    runs: dict[str, list[dict[str, Any]]] = {t["name"]: [] for t in trees}
    for r in range(repeats):  # the trees alternate, so a change of load hits both
        for t, root in zip(trees, roots):
            logger.info("%s: the main command, un-profiled (%d of %d)", t["label"], r + 1, repeats)
            with tempfile.TemporaryDirectory(prefix="profile-out-") as tmp:
                runs[t["name"]].append(_measure(python, root, [*base_cmd, "--output_dir", tmp], t["work"], f"run{r}"))
    for t, root in zip(trees, roots):
        logger.info("%s: the main command under cProfile", t["label"])
        t.update(_profiled(python, root, config_file, threads, t["work"]))
    startup = {t["name"]: {"import": [], "cli": []} for t in trees}
    for r in range(repeats):
        for t, root in zip(trees, roots):
            logger.info("%s: import bundle and the CLI start-up (%d of %d)", t["label"], r + 1, repeats)
            startup[t["name"]]["import"].append(
                _measure(python, root, [python, "-c", "import bundle"], t["work"], f"import{r}"))
            with tempfile.TemporaryDirectory(prefix="profile-out-") as tmp:
                startup[t["name"]]["cli"].append(_measure(
                    python, root, [*base_cmd, "--output_dir", tmp, "--run", "[]"], t["work"], f"cli{r}"))  # fmt: skip
    for t in trees:
        mine = runs[t["name"]]
        t["runs"], t["startup_runs"] = mine, startup[t["name"]]
        t["wall_s"] = min(m["seconds"] for m in mine)
        t["peak_rss_mb"] = max(m["peak_rss_mb"] for m in mine)
        t["import_bundle_s"] = min(m["seconds"] for m in startup[t["name"]]["import"])
        t["cli_startup_s"] = min(m["seconds"] for m in startup[t["name"]]["cli"])
        t["load_avg_start"] = mine[0]["load_avg_start"]
        others = [m["others_cpu_s"] for m in mine]
        t["others_cpu_s"] = None if None in others else sum(others)
        t["work"] = str(t["work"])
    out_dir = Path(output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # no machine-specific paths in the reports: the trees are named relative to the current one
    current = Path(current_root).resolve()
    portable = {str(r): os.path.relpath(r, current) for r in roots}
    report["command"] = " ".join(portable.get(str(Path(w).resolve()), w) if Path(w).is_absolute() else w
                                 for w in command.split(" "))  # fmt: skip
    section = profile_markdown(report)
    text = json.dumps(report, indent=2, default=str)
    for absolute, relative in sorted(portable.items(), key=lambda kv: -len(kv[0])):
        text = text.replace(absolute, relative)
    atomic_write_text(out_dir / "profile.json", text + "\n")
    atomic_write_text(out_dir / "profile.md", section)
    if docs_file:
        docs = Path(docs_file)
        atomic_write_text(docs, replace_marked_section(docs.read_text() if docs.exists() else "", section))
    return str(out_dir / "profile.md")
