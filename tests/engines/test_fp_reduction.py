"""bundle.engines.fp_reduction: fit the rescorer on logged runs and preview it, as scripts/fit_rescorer.py does."""

from __future__ import annotations

import json
import tempfile
import unittest
from pathlib import Path

import numpy as np

from bundle.engines.fp_reduction import fit_rescorer, format_fit, load_logged_run, preview_rescorer
from bundle.lesions.rescore import FEATURE_NAMES
from bundle.metrics import evaluate_detection


def write_run(folder: Path, seed: int = 0) -> None:
    """A logged evaluation of 2 scans: hits have a large first feature, false positives a small one."""
    rng = np.random.default_rng(seed)
    log, scans = [], []
    for s in range(2):
        lesions = [{"center_mm": [10.0 * s, 0.0, 0.0], "diameter_mm": 6.0, "ignore": False, "score": 0.6}]
        cands, logged = [], []
        for i in range(6):
            hit = i == 0
            center = lesions[0]["center_mm"] if hit else [50.0 + 10 * i, 40.0, 0.0]
            features = rng.normal(size=len(FEATURE_NAMES)).tolist()
            features[0] = 3.0 + rng.normal() if hit or i == 1 else -3.0 + rng.normal()  # one fp looks like a hit
            status, lesion = ("tp", 0) if hit else ("fp", -1)
            cands.append({"center_mm": center, "score": 0.6, "status": status, "lesion": lesion})
            logged.append({"center_mm": center, "score": 0.6, "features": features})
        scans.append({"scan": s, "candidates": cands, "lesions": lesions})
        log.append(json.dumps({"candidates": logged}))
    folder.mkdir(parents=True)
    (folder / "features.jsonl").write_text("\n".join(log) + "\n")
    (folder / "per_scan.json").write_text(json.dumps({"scans": scans}))


class TestFpReduction(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self.tmp.cleanup)
        self.root = Path(self.tmp.name)
        write_run(self.root / "a")
        write_run(self.root / "b", seed=1)

    def test_load(self):
        x, y, scans = load_logged_run(self.root / "a")
        self.assertEqual((x.shape, int(y.sum()), len(scans)), ((12, len(FEATURE_NAMES)), 2, 2))
        with self.assertRaisesRegex(FileNotFoundError, r"c/features.jsonl: no such file \(evaluate with"):
            load_logged_run(self.root / "c")
        (self.root / "a" / "features.jsonl").write_text("")
        with self.assertRaisesRegex(ValueError, r"^.*/a: .*features.jsonl: 0 scans logged"):
            load_logged_run(self.root / "a")

    def test_fit_and_preview(self):
        output = self.root / "model.json"
        model = fit_rescorer([str(self.root / "a"), str(self.root / "b")], output, l2=1.0)
        self.assertEqual(json.loads(output.read_text()), json.loads(json.dumps(model)))
        self.assertEqual((model["n_fit"], model["n_positive"]), (24, 4))
        self.assertEqual(model["fitted_on"], [str(self.root / "a"), str(self.root / "b")])
        self.assertEqual(fit_rescorer(str(self.root / "a"), output)["fitted_on"], [str(self.root / "a")])
        lines = format_fit(model, output).splitlines()
        self.assertEqual(lines[0], f"fitted on 24 candidates (4 hits) of {model['fitted_on']}; wrote {output}")
        self.assertEqual(len(lines), 1 + len(FEATURE_NAMES))
        self.assertTrue(lines[1].startswith(f"  {FEATURE_NAMES[0]:12s} +"))  # the largest weight first
        before, after = preview_rescorer(self.root / "b", output, threshold=0.5)
        scans = json.loads((self.root / "b" / "per_scan.json").read_text())["scans"]
        expected = evaluate_detection([([{"center_mm": c["center_mm"], "score": c["score"]} for c in s["candidates"]],
                                         s["lesions"]) for s in scans], 0.5)
        self.assertEqual(json.dumps(before, default=str), json.dumps(expected, default=str))
        self.assertLess(after["fp"], before["fp"])  # the rescorer drops the false positives that look like ones

    def test_ill_arg(self):
        (self.root / "one_class").mkdir()
        with self.assertRaisesRegex(ValueError, "cannot read the rescorer model"):
            preview_rescorer(self.root / "a", self.root / "none.json")
        with self.assertRaisesRegex(FileNotFoundError, "no such file"):
            fit_rescorer([str(self.root / "a"), str(self.root / "one_class")], self.root / "m.json")


if __name__ == "__main__":
    unittest.main()
