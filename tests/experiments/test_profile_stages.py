"""bundle.experiments.profile_stages and its driver: stage attribution from pstats (hand-made and a small real cProfile
run), the Markdown section, the marked-section replacement, code keys and the per-child measurement. No inference."""

from __future__ import annotations

import cProfile
import functools
import json
import pstats
import sys
import tempfile
import time
import unittest
from pathlib import Path
from unittest import mock

from bundle.experiments import profile_driver, profile_stages
from bundle.experiments.profile_stages import (
    BEGIN,
    END,
    LOOP,
    OTHER,
    STARTUP,
    TOTAL,
    Stage,
    attribute_stages,
    candidates,
    profile_markdown,
    replace_marked_section,
)

HERE = __name__  # "tests.experiments.test_profile_stages": the dotted prefix of the functions below


def _spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def stage_a() -> None:
    _spin(0.05)


def stage_b() -> None:
    _spin(0.01)
    stage_a()  # nested: counts for b only


def inner() -> None:
    _spin(0.04)


def outer() -> None:
    inner()


def lone() -> None:
    _spin(0.005)


def case_loop() -> None:
    stage_a()
    stage_b()
    outer()
    lone()
    _spin(0.01)


def _decorated(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return fn(*args, **kwargs)

    return wrapper


@_decorated
def wrapped() -> None:
    pass


# hand-made pstats: root -> loop (10 s) -> A (3 s) and B (4 s); B -> A (1 s); A is also called outside the loop (2 s)
ROOT, LOOP_K, A, B = ("~", 0, "<root>"), ("f.py", 1, "loop"), ("f.py", 10, "a"), ("f.py", 20, "b")
STATS = {
    ROOT: (1, 1, 0.5, 14.5, {}),
    LOOP_K: (1, 1, 3.0, 10.0, {ROOT: (1, 1, 3.0, 10.0)}),
    A: (3, 3, 6.0, 6.0, {LOOP_K: (1, 1, 3.0, 3.0), B: (1, 1, 1.0, 1.0), ROOT: (1, 1, 2.0, 2.0)}),
    B: (1, 1, 3.0, 4.0, {LOOP_K: (1, 1, 3.0, 4.0)}),
}
KEYS = {"m.loop": LOOP_K, "m.a": list(A), "m.b": B, "m.gone": None, "m.never": ("f.py", 99, "never")}
# stack samples every 10 ms, outermost first: the same times as STATS
SAMPLES = [(200, []), (300, [LOOP_K, A]), (300, [LOOP_K, B]), (100, [LOOP_K, B, A]), (200, [A]), (300, [LOOP_K])]


def _report(**overrides) -> dict:
    def tree(label, version, s):
        stages = [{"stage": STARTUP, "seconds": 2.0 * s, "functions": []},
                  {"stage": "read", "seconds": 1.0 * s, "functions": ["m.read"]},
                  {"stage": "lung mask", "seconds": None if version == "0.6.0" else 0.5, "functions": []},
                  {"stage": OTHER, "seconds": 1.0, "functions": []},
                  {"stage": LOOP, "seconds": 2.0 * s + 0.5, "functions": ["m.loop"]},
                  {"stage": TOTAL, "seconds": 4.0 * s + 0.5, "functions": []}]  # fmt: skip
        return {"label": label, "version": version, "stages": stages, "wall_s": 3.0 * s, "peak_rss_mb": 1000.0,
                "import_bundle_s": 0.04, "cli_startup_s": 5.0, "load_avg_start": [0.5, 0.4, 0.3],
                "others_cpu_s": 1.5, "profiled_run": {"others_cpu_s": None},
                "versions": {"python": "3.11.7", "torch": "2.0", "monai": "1.6"}}  # fmt: skip

    report = {"command": "python -m scripts.benchmark --profile", "repeats": 1, "threads": 2,
              "machine": {"cpu": "Some CPU", "logical_cpus": 2},
              "trees": [tree("release 0.6.0 (059af1c)", "0.6.0", 2.0), tree("now: 0.6.1 (abc1234)", "0.6.1", 1.0)]}
    return {**report, **overrides}  # fmt: skip


class TestAttribution(unittest.TestCase):
    def test_hand_made_stats(self):
        """Nested calls count for the outer stage, calls outside the loop for start-up; the rows add up."""
        stages = [Stage("a", (("m.a",),)), Stage("b", (("m.b",),)), Stage("missing", (("m.gone",),)),
                  Stage("unused", (("m.gone", "m.never"),))]  # fmt: skip
        rows = {r["stage"]: r for r in attribute_stages(STATS, KEYS, 14.5, stages, ("m.loop",), SAMPLES)}
        self.assertAlmostEqual(rows["a"]["seconds"], 3.0)  # 6 s in all: 2 outside the loop, 1 inside b
        self.assertAlmostEqual(rows["b"]["seconds"], 4.0)
        self.assertIsNone(rows["missing"]["seconds"])  # n/a: nothing resolves
        self.assertEqual(rows["unused"]["seconds"], 0.0)  # resolves, never called
        self.assertEqual(rows["unused"]["functions"], ["m.never (not called)"])
        self.assertAlmostEqual(rows[STARTUP]["seconds"], 4.5)
        self.assertAlmostEqual(rows[OTHER]["seconds"], 3.0)
        self.assertAlmostEqual(rows[LOOP]["seconds"], 10.0)
        self.assertEqual(rows[TOTAL]["seconds"], 14.5)

    def test_samples_split_a_shared_caller(self):
        """O runs in the preprocessing and again inside INV, both through the shared T (as Orientation runs in the
        preprocessing and inside Invertd, both through MONAI's apply_transform): the sampled stacks split it."""
        loop, fwd, inv, t, o_inv, o = (("g.py", i, n) for i, n in enumerate(("loop", "fwd", "inv", "t", "oinv", "o")))
        stats = {
            loop: (1, 1, 0.0, 12.0, {}),
            fwd: (1, 1, 0.0, 8.0, {loop: (1, 1, 0.0, 8.0)}),
            inv: (1, 1, 0.0, 2.0, {loop: (1, 1, 0.0, 2.0)}),
            t: (2, 2, 5.0, 10.0, {fwd: (1, 1, 5.0, 8.0), inv: (1, 1, 1.0, 2.0)}),
            o_inv: (1, 1, 0.0, 1.0, {t: (1, 1, 0.0, 1.0)}),
            o: (2, 2, 4.0, 4.0, {t: (1, 1, 3.0, 3.0), o_inv: (1, 1, 1.0, 1.0)}),
        }
        keys = {"loop": loop, "inv": inv, "o": o}
        stages = [Stage("o", (("o",),)), Stage("inv", (("inv",),))]
        unsampled = {r["stage"]: r["seconds"] for r in attribute_stages(stats, keys, 12.0, stages, ("loop",))}
        self.assertAlmostEqual(unsampled["o"], 4.0)  # no sample holds it: counted in full
        samples = [(600, [list(loop), list(o)]), (200, [list(loop), list(inv), list(o)]), (100, [list(loop)])]
        rows = {r["stage"]: r["seconds"] for r in attribute_stages(stats, keys, 12.0, stages, ("loop",), samples)}
        self.assertAlmostEqual(rows["o"], 3.0)
        self.assertAlmostEqual(rows["inv"], 2.0)
        self.assertAlmostEqual(rows[OTHER], 7.0)

    def test_first_called_alternative_and_no_loop(self):
        """A part times its first alternative that was called; without a case loop, start-up and other are n/a."""
        rows = attribute_stages(STATS, KEYS, 14.5, [Stage("x", (("m.never", "m.b", "m.a"),))], ("m.gone",))
        by_name = {r["stage"]: r for r in rows}
        self.assertEqual(by_name["x"]["functions"], ["m.b"])
        self.assertAlmostEqual(by_name["x"]["seconds"], 4.0)  # the roots are the outer bound
        self.assertIsNone(by_name[STARTUP]["seconds"])
        self.assertIsNone(by_name[OTHER]["seconds"])
        self.assertEqual([r["stage"] for r in rows], [STARTUP, "x", OTHER, LOOP, TOTAL])

    def test_real_cprofile_run(self):
        """A small cProfile run: the stages and start-up add up to the total, b holds the nested a, the two parts of
        one stage add, a missing candidate gives n/a."""
        names = ["stage_a", "stage_b", "outer", "lone", "inner", "case_loop", "nothing", "no_such_function"]
        sampler = profile_driver.StackSampler(names, interval=0.001)
        profiler = cProfile.Profile()
        sampler.start()
        start = time.perf_counter()
        profiler.enable()
        _spin(0.01)  # "start-up"
        case_loop()
        profiler.disable()
        total = time.perf_counter() - start
        sampler.stop()
        stats = pstats.Stats(profiler).stats
        stages = [Stage("a", ((f"{HERE}.stage_a",),)), Stage("b", ((f"{HERE}.stage_b",),)),
                  Stage("two parts", ((f"{HERE}.outer",), (f"{HERE}.lone",))), Stage("nested", ((f"{HERE}.inner",),)),
                  Stage("missing", (("no_such_module.nothing", f"{HERE}.no_such_function"),))]  # fmt: skip
        keys = {p: profile_driver.code_key(p) for p in candidates(stages, (f"{HERE}.case_loop",))}
        self.assertIsNone(keys[f"{HERE}.no_such_function"])
        samples = sampler.stacks({tuple(k) for k in keys.values() if k})
        a, b, loop = (keys[f"{HERE}.{n}"] for n in ("stage_a", "stage_b", "case_loop"))
        self.assertIn([list(loop), list(b), list(a)], [stack for _, stack in samples])
        rows = {r["stage"]: r["seconds"] for r in attribute_stages(stats, keys, total, stages, (f"{HERE}.case_loop",),
                                                                   samples)}  # fmt: skip
        self.assertIsNone(rows["missing"])
        named = sum(v for k, v in rows.items() if k not in (LOOP, TOTAL) and v is not None)
        self.assertAlmostEqual(named, total, places=6)
        self.assertAlmostEqual(rows[STARTUP] + rows[LOOP], total, places=6)
        self.assertAlmostEqual(rows["b"], stats[b][3], places=9)  # its own 0.01 s and the nested a
        self.assertGreater(rows["a"], 0.1 * stats[a][3])  # the direct call only, about half (sampling noise allowed)
        self.assertLess(rows["a"], 0.9 * stats[a][3])
        self.assertLess(rows["nested"], 0.5 * stats[keys[f"{HERE}.inner"]][3])  # inside outer ("two parts")
        ct = {name: stats[keys[f"{HERE}.{name}"]][3] for name in ("outer", "lone")}
        self.assertAlmostEqual(rows["two parts"], ct["outer"] + ct["lone"], places=6)

    def test_candidates_cover_the_table(self):
        paths = candidates()
        self.assertEqual(paths[0], "bundle.engines.evaluator.LesionInferenceEvaluator.run")
        self.assertEqual(len(paths), len(set(paths)))
        self.assertIn("bundle.transforms.lesion.find_lesions", paths)  # release 0.6.0


class TestDriver(unittest.TestCase):
    def test_code_key(self):
        key = profile_driver.code_key(f"{HERE}.stage_a")
        self.assertEqual(key, (stage_a.__code__.co_filename, stage_a.__code__.co_firstlineno, "stage_a"))
        self.assertEqual(profile_driver.code_key(f"{HERE}.wrapped")[2], "wrapped")  # unwrapped
        self.assertEqual(profile_driver.code_key("bundle.experiments.profile_stages.Stage.__init__")[2], "__init__")
        self.assertIsNone(profile_driver.code_key("no_such_module.f"))
        self.assertIsNone(profile_driver.code_key(f"{HERE}.Missing.__call__"))
        self.assertIsNone(profile_driver.code_key("time.perf_counter"))  # a builtin has no Python code

    def test_measure_one_child_at_a_time(self):
        """Through the driver script (a fresh, small interpreter, as the profile runs it), each child's peak is its
        own: a small child after a big one does not report the big one's peak, nor this test process's torch."""
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            fill = "b = bytearray(300 * 2**20); b[::4096] = b'x' * len(b[::4096])"
            big = profile_stages._measure(sys.executable, work, [sys.executable, "-c", fill], work, "big")
            small = profile_stages._measure(sys.executable, work, [sys.executable, "-c", "pass"], work, "small")
            with self.assertRaisesRegex(RuntimeError, "exited with 3"):
                profile_stages._measure(sys.executable, work, [sys.executable, "-c", "raise SystemExit(3)"], work, "f")
        self.assertGreater(big["peak_rss_mb"], 300)
        self.assertLess(small["peak_rss_mb"], 100)
        self.assertGreater(small["seconds"], 0)
        self.assertEqual(len(small["load_avg_start"]), 3)

    def test_main_writes_json(self):
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "m.json"
            with mock.patch("os.getcwd", return_value=tmp):
                profile_driver.main(["measure", "--out", str(out), "--log", str(Path(tmp) / "log"), "--",
                                     sys.executable, "-c", "print('hi')"])  # fmt: skip
            self.assertEqual(json.loads(out.read_text())["returncode"], 0)
            self.assertEqual((Path(tmp) / "log").read_text().strip(), "hi")


class TestReport(unittest.TestCase):
    def test_markdown(self):
        md = profile_markdown(_report())
        lines = md.splitlines()
        self.assertEqual(lines[0], "## Main command, stage by stage (release 0.6.0 vs now)")
        self.assertEqual(lines[2], "Command: `python -m scripts.benchmark --profile`  ")
        self.assertIn("measured under cProfile", md)
        self.assertIn("un-profiled", md)
        self.assertIn("| stage (seconds unless stated) | release 0.6.0 (059af1c) | % of total | now: 0.6.1 (abc1234) | "
                      "% of total | now - release |", lines)  # fmt: skip
        self.assertIn("| read | 2 | 24% | 1 | 22% | -1 |", lines)
        self.assertIn("| lung mask | n/a |  | 0.5 | 11% | n/a |", lines)  # n/a: nothing resolves in the release
        self.assertIn("| total (profiled) | 8.5 |  | 4.5 |  | -4 |", lines)
        self.assertIn("| wall, un-profiled (min of 1) | 6 |  | 3 |  | -3 |", lines)
        self.assertIn('| bundle CLI start-up (the command with `--run "[]"`) | 5 |  | 5 |  | 0 |', lines)
        self.assertIn("- read: `m.read`", lines)
        self.assertNotIn("- lung mask", md)  # no function timed in either tree

    def test_markdown_one_tree(self):
        report = _report()
        report["trees"] = report["trees"][1:]
        md = profile_markdown(report)
        self.assertTrue(md.startswith("## Main command, stage by stage\n"))
        self.assertNotIn("now - release", md)

    def test_marked_section_replaced_on_rerun(self):
        with tempfile.TemporaryDirectory() as tmp:
            docs = Path(tmp) / "benchmark.md"
            docs.write_text("# Benchmark\n\nintro\n")
            docs.write_text(replace_marked_section(docs.read_text(), "## Section\n\nfirst\n"))
            self.assertEqual(docs.read_text(), f"# Benchmark\n\nintro\n\n{BEGIN}\n## Section\n\nfirst\n{END}\n")
            docs.write_text(docs.read_text() + "\n## Later\n\nkept\n")  # text after the section
            docs.write_text(replace_marked_section(docs.read_text(), "## Section\n\nsecond"))
            self.assertEqual(
                docs.read_text(), f"# Benchmark\n\nintro\n\n{BEGIN}\n## Section\n\nsecond\n{END}\n\n## Later\n\nkept\n"
            )
        self.assertEqual(replace_marked_section("", "s"), f"{BEGIN}\ns\n{END}\n")
        for broken in (f"{BEGIN}\nx\n", f"{END}\n{BEGIN}\n", f"{BEGIN}\n{END}\n{BEGIN}\n{END}\n"):
            with self.assertRaises(ValueError):
                replace_marked_section(broken, "s")

    def test_run_stage_profile_writes_the_reports(self):
        """The orchestration with the measurements mocked: profile.json, profile.md and the docs section."""

        def fake_measure(python, root, argv, work, name):
            if name == "profiled":
                profiler = cProfile.Profile()
                profiler.runcall(sum, range(3))
                profiler.dump_stats(str(work / "main.prof"))
                (work / "profile.json").write_text(json.dumps(
                    {"total_s": 2.0, "exit_code": 0, "keys": {}, "samples": [[3, []]], "sample_interval_s": 0.005,
                     "versions": {"python": "3"}}))  # fmt: skip
            return {"returncode": 0, "seconds": 1.0, "cpu_s": 1.0, "peak_rss_mb": 10.0, "load_avg_start": [0, 0, 0],
                    "others_cpu_s": 0.0}  # fmt: skip

        with tempfile.TemporaryDirectory() as tmp:
            base, now = Path(tmp) / "base", Path(tmp) / "now"
            for root, version in ((base, "0.6.0"), (now, "0.6.1")):
                (root / "configs").mkdir(parents=True)
                (root / "configs" / "metadata.json").write_text(json.dumps({"version": version}))
            docs = Path(tmp) / "docs.md"
            docs.write_text("keep\n")
            with mock.patch.object(profile_stages, "_measure", side_effect=fake_measure) as measure:
                path = profile_stages.run_stage_profile(Path(tmp) / "out", base, 2, 2, docs_file=docs, current_root=now,
                                                        command=f"python -m scripts.benchmark --baseline_root {base}")
            self.assertEqual(measure.call_count, 2 * 2 + 2 + 2 * 2 * 2)  # runs, profiled runs, import + CLI
            md = Path(path).read_text()
            self.assertIn("(release 0.6.0 vs now)", md)
            self.assertIn("| read | n/a |  | n/a |  | n/a |", md)
            self.assertEqual(docs.read_text(), f"keep\n\n{BEGIN}\n{md}{END}\n")
            report = json.loads((Path(tmp) / "out" / "profile.json").read_text())
            self.assertEqual([t["version"] for t in report["trees"]], ["0.6.0", "0.6.1"])
            self.assertEqual(report["trees"][1]["root"], ".")  # no machine-specific path of the current tree
            self.assertEqual(report["trees"][0]["root"], "../base")  # nor of the release tree
            self.assertIn("--baseline_root ../base`", md)


if __name__ == "__main__":
    unittest.main()
