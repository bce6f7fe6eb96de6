from __future__ import annotations

import json
import os
import sys
import tempfile
import unittest
from unittest import mock

import torch
from monai.bundle import ConfigParser
from parameterized import parameterized

from bundle.experiments import ablation
from bundle.experiments.ablation import ALL_VARIANTS, LABELS, VARIANTS, ablation_table, variant_overrides


class TestAblation(unittest.TestCase):
    @parameterized.expand([[name] for name in VARIANTS])
    def test_every_variant_builds_from_train_json(self, name):
        parser = ConfigParser()
        parser.read_config("configs/train.json")
        parser.update(variant_overrides(name, num_eval_cases=2, num_train_cases=4))
        net = parser.get_parsed_content("network_def", instantiate=True).eval()
        with torch.no_grad():
            out = net(torch.rand(1, 1, 64, 64, 32))  # the training patch (SwinUNETR: multiples of 32)
        self.assertEqual(tuple(out.shape), (1, 2, 64, 64, 32))
        json.dumps(variant_overrides(name))  # the override file is written as JSON

    def test_ablation_steps_differ_as_named(self):
        ghost = {n: VARIANTS[n][0].get("ghost_levels") for n in ("unet", "ghost", "ca", "ghost_ca")}
        ca = {n: VARIANTS[n][0].get("ca_stages") for n in ("unet", "ghost", "ca", "ghost_ca")}
        self.assertEqual(ghost, {"unet": [], "ghost": [2], "ca": [], "ghost_ca": [2]})
        self.assertEqual(ca, {"unet": [], "ghost": [], "ca": [3], "ghost_ca": [3]})
        self.assertEqual(VARIANTS["ghost_ca_routed"][0], VARIANTS["ghost_ca"][0])
        self.assertTrue(VARIANTS["ghost_ca_routed"][1])
        self.assertFalse(VARIANTS["ghost_ca"][1])
        self.assertEqual(set(LABELS), set(ALL_VARIANTS))

    def test_monai_baselines_skip_screen_calibration(self):
        self.assertIn("finalize", variant_overrides("monai_unet"))
        self.assertNotIn("finalize", variant_overrides("ghost_ca"))
        self.assertIn("[:3]", variant_overrides("unet", 3)["heldout_datalist"])
        self.assertIn("'training')][:5]", variant_overrides("unet", None, 5)["train_all"])
        self.assertNotIn("train_all", variant_overrides("unet"))

    def test_detectors_run_through_their_script_with_the_data_overrides(self):
        self.assertEqual(ALL_VARIANTS[-2:], ["retinanet_resnet50", "retinanet_resnet10"])
        overrides = variant_overrides("retinanet_resnet10", 2)
        self.assertNotIn("network_def", overrides)
        self.assertIn("[:2]", overrides["heldout_datalist"])
        calls = []

        def fake_run(cmd, args, log_path, bundle_root):
            calls.append((cmd[-1], args))
            self.assertEqual(cmd[:3], [sys.executable, "-m", "scripts.detector_baseline"])  # a module of the root
            self.assertEqual(bundle_root, os.path.abspath("."))
            if cmd[-1] == "evaluate":
                os.makedirs(args["eval_dir"])
                with open(os.path.join(args["eval_dir"], "metrics.json"), "w") as f:
                    json.dump({"recall": 0.0}, f)

        with tempfile.TemporaryDirectory() as root, mock.patch.object(ablation, "_run", fake_run):
            metrics = ablation.run_variant("retinanet_resnet10", "data", root, 50, 2, time_limit_s=900)
            self.assertEqual([c[0] for c in calls], ["train", "evaluate"])
            self.assertEqual((calls[0][1]["epochs"], calls[0][1]["time_limit_s"]), (50, 900))
            with open(calls[0][1]["overrides_file"]) as f:
                written = json.load(f)
            self.assertEqual((written["seed"], os.path.basename(written["dataset_dir"])), (0, "data"))
            self.assertEqual(metrics, {"recall": 0.0, "training": None})

    def test_rescore_trains_nothing(self):
        calls = []

        def fake_bundle_run(config_files, args, log_path, root):
            calls.append(("bundle", "eval_dir" in args))
            os.makedirs(args["eval_dir"], exist_ok=True)
            with open(os.path.join(args["eval_dir"], "metrics.json"), "w") as f:
                json.dump({"recall": 0.25}, f)

        def fake_rescore(eval_dir, configs, output_dir, overrides):
            calls.append(("rescore", os.path.basename(eval_dir), os.path.basename(configs[-1])))
            os.makedirs(output_dir)
            with open(os.path.join(output_dir, "metrics.json"), "w") as f:
                json.dump({"recall": 0.75}, f)

        with tempfile.TemporaryDirectory() as root, mock.patch.object(ablation, "_bundle_run", fake_bundle_run), \
                mock.patch.object(ablation, "rescore_evaluation", fake_rescore), \
                mock.patch.object(ablation, "_run", lambda *a: calls.append(("script",) + tuple(a[0][-1:]))):
            with self.assertRaisesRegex(RuntimeError, "nothing to rescore"):
                ablation.run_variant("unet", "data", root, 50, rescore=True)
            open(os.path.join(root, "unet", "model.pt"), "w").close()
            override = os.path.join(root, "unet", "override.json")
            with open(override, "w") as f:
                f.write('{"as": "evaluated"}')  # a rescore keeps the override the variant was run with
            # weights without stored candidates: evaluated again, not trained
            self.assertEqual(ablation.run_variant("unet", "data", root, 50, rescore=True)["recall"], 0.25)
            self.assertEqual(calls, [("bundle", True)])
            # stored candidates: rescored, no network run
            open(os.path.join(root, "unet", "eval", "per_scan.json"), "w").close()
            self.assertEqual(ablation.run_variant("unet", "data", root, 50, rescore=True)["recall"], 0.75)
            self.assertEqual(calls[1:], [("rescore", "eval", "override.json")])
            with open(override) as f:
                self.assertEqual(f.read(), '{"as": "evaluated"}')
            # a detector without stored candidates: its script evaluates, never trains
            os.makedirs(os.path.join(root, "retinanet_resnet10"))
            open(os.path.join(root, "retinanet_resnet10", "model.pt"), "w").close()
            with self.assertRaises(FileNotFoundError):  # the fake script writes no metrics
                ablation.run_variant("retinanet_resnet10", "data", root, 50, rescore=True)
            self.assertEqual(calls[2:], [("script", "evaluate")])

    def test_ill_arg(self):
        with self.assertRaises(ValueError):
            variant_overrides("resnet")
        with self.assertRaises(ValueError):
            variant_overrides("unet", 0)
        with self.assertRaises(ValueError):
            variant_overrides("unet", None, 2)

    def test_table(self):
        m = {"recall": 0.5, "precision": 0.25, "f1": 1 / 3, "cpm": 0.4, "params_millions": 0.64,
             "seconds_per_volume": 12.34}
        cut = {"epochs_completed": 7, "train_seconds": 905.0, "time_limit_reached": True}
        counts = {"tp": 2, "fp": 6, "fn": 2}
        table = ablation_table({"ghost_ca": {**m, **counts, "training": {**cut, "time_limit_reached": False}},
                                "unet": {**m, "seconds_per_volume": None},
                                "swinunetr": {**m, "tp": 0, "fp": 0, "fn": 4, "precision": 1.0, "training": cut}})
        lines = table.splitlines()
        self.assertEqual(len(lines), 5)
        self.assertIn("| + Ghost + CA (bundle network) | 2 / 6 / 2 | 0.500 | 0.250 | 0.333 | 0.400 | 0.640 | 12.3 | "
                      "7 ep, 15 min |", lines)
        self.assertTrue(lines[3].startswith("| U-Net (same widths) | n/a | 0.500 | 0.250 |"))
        self.assertTrue(lines[3].endswith("| n/a | n/a |"))
        self.assertIn("| 0 / 0 / 4 | 0.500 | n/a |", lines[4])  # no candidate: precision undefined
        self.assertTrue(lines[4].endswith("| 7 ep, 15 min (time limit) |"))

    def test_rerunning_a_subset_keeps_the_other_rows_of_the_same_settings(self):
        m = {"recall": 0.5, "precision": 0.25, "f1": 1 / 3, "cpm": 0.4, "params_millions": 0.64,
             "seconds_per_volume": 1.0}
        calls = []

        def fake_run_variant(name, *args):
            calls.append((name, args[-2]))  # time_limit_s (the last one is rescore)
            self.assertFalse(args[-1])
            return {**m, "recall": 0.9}

        with tempfile.TemporaryDirectory() as root, mock.patch.object(ablation, "run_variant", fake_run_variant):
            settings = {"epochs": 3, "num_train_cases": None, "num_eval_cases": 2, "seed": 0, "merge_gap_mm": 6.0}
            with open(os.path.join(root, "ablation.json"), "w") as f:
                json.dump({**settings, "results": {"ca": m, "unet": m}, "failures": []}, f)
            results, failures = ablation.run_ablation("data", root, 3, ["swinunetr", "ca"], 2, time_limit_s=60)
            self.assertEqual(failures, [])
            self.assertEqual(list(results), ["unet", "ca", "swinunetr"])  # table order, old row kept
            self.assertEqual((results["unet"]["recall"], results["ca"]["recall"]), (0.5, 0.9))
            self.assertEqual(calls, [("swinunetr", 60), ("ca", 60)])
            with open(os.path.join(root, "ablation.json")) as f:
                self.assertEqual(list(json.load(f)["results"]), ["unet", "ca", "swinunetr"])
            # a kept row without a training record gets the one found in its folder later
            os.makedirs(os.path.join(root, "unet"))
            with open(os.path.join(root, "unet", "train_time.json"), "w") as f:
                json.dump({"epochs_completed": 50, "train_seconds": 600.0}, f)
            results, _ = ablation.run_ablation("data", root, 3, ["ca"], 2)
            self.assertEqual(results["unet"]["training"]["epochs_completed"], 50)
            self.assertIsNone(results["ca"].get("training"))
            # other settings: the old rows are not mixed in
            results, _ = ablation.run_ablation("data", root, 5, ["ghost"], 2)
            self.assertEqual(list(results), ["ghost"])
            # nor rows scored against another reference (an ablation.json from before the merge gap has none)
            with open(os.path.join(root, "ablation.json"), "w") as f:
                json.dump({**settings, "merge_gap_mm": None, "results": {"unet": m}, "failures": []}, f)
            results, _ = ablation.run_ablation("data", root, 3, ["ca"], 2)
            self.assertEqual(list(results), ["ca"])
            # the command line's comma-separated names
            calls.clear()
            ablation.run_ablation("data", root, 3, "ca, unet", 2)
            self.assertEqual([c[0] for c in calls], ["ca", "unet"])
            with self.assertRaisesRegex(ValueError, "unknown ablation variant 'nope'"):
                ablation.run_ablation("data", root, 3, "ca,nope", 2)


if __name__ == "__main__":
    unittest.main()
