from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

import nibabel as nib
import numpy as np

from bundle.experiments.reevaluate import component_gaps, config_file_list, format_reference_gaps, rescore_evaluation
from bundle.engines.report import write_detection_report
from bundle.lesions.reference import label_lesions

AFFINE = np.diag([1.0, 1.0, 2.5, 1.0])
ROOT = Path(__file__).resolve().parents[2]  # the bundle root: python -m scripts.<name> runs from it


class TestRescoreEvaluation(unittest.TestCase):
    """An evaluation scored against every label component is rescored against the merged lesions."""

    def setUp(self):
        self.tmp = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, self.tmp, ignore_errors=True)
        label = np.zeros((32, 32, 12), dtype=np.uint8)
        label[8:16, 8:16, 3:7] = 1  # a lesion
        label[19:21, 10:12, 4] = 1  # a piece of it, 4 mm away
        image = label.astype(np.float32)
        for name, array in (("image", image), ("label", label)):
            nib.save(nib.Nifti1Image(array, AFFINE), self.tmp / f"{name}.nii.gz")
        self.config = self.tmp / "config.json"
        self.config.write_text(json.dumps({
            "heldout_datalist": [{"image": str(self.tmp / "image.nii.gz"), "label": str(self.tmp / "label.nii.gz")}],
            "validate": {"preprocessing": {"_target_": "Compose", "transforms": [
                {"_target_": "LoadImaged", "keys": ["image", "label"], "image_only": True},
                {"_target_": "EnsureChannelFirstd", "keys": ["image", "label"]},
            ]}},
        }))
        self.components = label_lesions(label, AFFINE, 0.0)
        centre = self.components[0]["center_mm"]  # the lesion's own centre (the largest component)
        self.eval_dir = self.tmp / "eval"
        write_detection_report([([{"center_mm": centre, "score": 0.9}], self.components)], self.eval_dir, n_params=10)

    def test_piece_no_longer_counts_as_a_missed_lesion(self):
        stored = json.loads((self.eval_dir / "metrics.json").read_text())
        self.assertEqual((stored["n_lesions"], stored["tp"], stored["fn"]), (2, 1, 1))
        results = rescore_evaluation(self.eval_dir, [str(self.config)], self.tmp / "rescored", merge_gap_mm=6.0)
        self.assertEqual((results["n_lesions"], results["tp"], results["fp"], results["fn"]), (1, 1, 0, 0))
        self.assertEqual(results["n_params"], 10)
        for name in ("metrics.json", "per_scan.json", "froc.png"):
            self.assertTrue((self.tmp / "rescored" / name).is_file(), name)

    def test_other_label_maps_are_refused(self):
        per_scan = json.loads((self.eval_dir / "per_scan.json").read_text())
        per_scan["scans"][0]["lesions"][1]["center_mm"][0] += 1.0
        (self.eval_dir / "per_scan.json").write_text(json.dumps(per_scan))
        with self.assertRaisesRegex(ValueError, "neither the label map's components nor its lesions merged at 6 mm"):
            rescore_evaluation(self.eval_dir, [str(self.config)], self.tmp / "rescored")

    def test_an_evaluation_already_merged_rescores_to_itself_and_the_config_gap_is_used(self):
        first = rescore_evaluation(self.eval_dir, [str(self.config)], self.tmp / "once", merge_gap_mm=6.0)
        again = rescore_evaluation(self.tmp / "once", [str(self.config)], self.tmp / "twice", merge_gap_mm=6.0)
        self.assertEqual((again["n_lesions"], again["tp"], again["fn"]), (first["n_lesions"], 1, 0))
        # no gap given: the config's merge_gap_mm decides (0 here: the piece stays a lesion of its own)
        config = json.loads(self.config.read_text())
        self.config.write_text(json.dumps({**config, "merge_gap_mm": 0.0}))
        self.assertEqual(rescore_evaluation(self.eval_dir, [str(self.config)], self.tmp / "zero")["n_lesions"], 2)

    def test_scan_count_and_gap_are_checked(self):
        config = json.loads(self.config.read_text())
        config["heldout_datalist"] *= 2
        self.config.write_text(json.dumps(config))
        with self.assertRaisesRegex(ValueError, "1 scans, but the config lists 2 cases"):
            rescore_evaluation(self.eval_dir, [str(self.config)], self.tmp / "rescored")
        with self.assertRaisesRegex(ValueError, "merge_gap_mm must be a finite number"):
            rescore_evaluation(self.eval_dir, [str(self.config)], self.tmp / "rescored", merge_gap_mm="abc")

    def test_never_overwrites_the_evaluation_and_needs_its_files(self):
        with self.assertRaisesRegex(ValueError, "must not overwrite"):
            rescore_evaluation(self.eval_dir, [str(self.config)], self.eval_dir)
        with self.assertRaisesRegex(FileNotFoundError, "per_scan.json"):
            rescore_evaluation(self.tmp / "nowhere", [str(self.config)], self.tmp / "rescored")


class TestScripts(unittest.TestCase):
    """The command-line entry points fail with one line naming the file and the problem, and exit 1."""

    def run_script(self, module: str, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, timeout=300,
                              cwd=ROOT)

    def test_rescore_eval_without_an_evaluation(self):
        done = self.run_script("scripts.reevaluate", "--eval_dir", "runs/no_such_eval", "--output_dir", "/tmp/x")
        self.assertEqual(done.returncode, 1)
        self.assertEqual(done.stderr.strip().splitlines(), [
            "rescore_eval: FileNotFoundError: runs/no_such_eval/per_scan.json: no such file (run the evaluation first)."
        ])

    def test_rescore_eval_without_a_config_file(self):
        done = self.run_script("scripts.reevaluate", "--eval_dir", "runs/no_such_eval", "--output_dir", "/tmp/x",
                               "--config_file", "configs/train.json,configs/no_such.json")
        self.assertEqual(done.returncode, 1)
        self.assertEqual(done.stderr.strip().splitlines(), ["rescore_eval: configs/no_such.json: no such config file."])

    def test_reference_gaps_without_a_datalist(self):
        done = self.run_script("scripts.reference_gaps", "--dataset_dir", "/no/such/dir")
        self.assertEqual(done.returncode, 1)
        self.assertIn("reference_gaps: ValueError: datalist file /no/such/dir/datalist.json does not exist.",
                      done.stderr.strip().splitlines()[-1])


class TestComponentGaps(unittest.TestCase):
    def test_pieces_and_gaps(self):
        label = np.zeros((48, 32, 16), dtype=bool)
        label[10:19, 10:19, 4:8] = True  # a lesion, centre (14, 14, 5.5)
        label[21:23, 12:14, 5] = True  # a piece 3 mm away
        label[12:14, 12:14, 9] = True  # a piece one empty slice (5 mm) above
        label[31:34, 10:13, 5:7] = True  # a second lesion, 13 mm from the first
        listed = [{"center_mm": [14.0, 14.0, 5.5 * 2.5], "diameter_mm": 12.0},
                  {"center_mm": [32.0, 11.0, 5.5 * 2.5], "diameter_mm": 3.0}]
        # the upper piece's centre (12.5, 12.5, 22.5 mm) lies 9.0 mm from the first lesion's: outside its 6 mm radius
        rows = component_gaps(label, np.diag([1.0, 1.0, 2.5, 1.0]), listed)
        self.assertEqual([r["piece"] for r in rows], [False, True, True, False])  # ndimage.label's scan order
        self.assertEqual([r["gap_mm"] for r in rows], [3.0, 5.0, 3.0, 9.0])  # body, upper piece, side piece, nodule
        self.assertEqual([r["lesion_gap_mm"] for r in rows], [13.0, 5.0, 3.0, 13.0])
        self.assertAlmostEqual(rows[3]["to_lesion_centre_mm"], 0.0)
        self.assertIsNone(component_gaps(label, np.diag([1.0, 1.0, 2.5, 1.0]), listed, search_mm=2.0)[0]["gap_mm"])

    def test_a_lesion_split_near_its_centre_is_one_lesion_and_one_piece(self):
        label = np.zeros((30, 12, 6), dtype=bool)
        label[4:10, 4:8, 2:4] = label[12:18, 4:8, 2:4] = True  # two halves 3 mm apart, both within the radius
        listed = [{"center_mm": [10.5, 5.5, 2.5], "diameter_mm": 16.0}]
        rows = component_gaps(label, np.eye(4), listed)
        self.assertEqual(sorted(r["piece"] for r in rows), [False, True])
        self.assertEqual([r["lesion_gap_mm"] for r in rows if r["piece"]], [3.0])
        self.assertEqual([r["lesion_gap_mm"] for r in rows if not r["piece"]], [None])  # no other listed lesion


class TestCommandLineHelpers(unittest.TestCase):
    def test_config_file_list(self):
        self.assertEqual(config_file_list("a.json,b.json"), ["a.json", "b.json"])
        self.assertEqual(config_file_list(("a.json",)), ["a.json"])
        self.assertEqual(config_file_list([str(ROOT / "configs" / "train.json")], must_exist=True),
                         [str(ROOT / "configs" / "train.json")])
        with self.assertRaisesRegex(FileNotFoundError, r"^/no/b.json: no such config file.$"):
            config_file_list(f"{ROOT / 'configs' / 'train.json'},/no/b.json", must_exist=True)

    def test_format_reference_gaps(self):
        result = {"cases": 2, "components": 3, "pieces": [{"case": "a", "piece": True, "gap_mm": 3.04, "n": 4}],
                  "piece_gaps_mm": [3.04], "lesion_gaps_mm": [float(g) for g in range(20, 8, -1)][::-1]}
        self.assertEqual(format_reference_gaps(result).splitlines(), [
            '{"case": "a", "piece": true, "gap_mm": 3.0, "n": 4}',
            "2 cases, 3 label components, 1 pieces",
            "piece gaps (mm): [3.0]",
            "gaps between lesions (mm, smallest 10): [9.0, 10.0, 11.0, 12.0, 13.0, 14.0, 15.0, 16.0, 17.0, 18.0]",
        ])  # fmt: skip


if __name__ == "__main__":
    unittest.main()
