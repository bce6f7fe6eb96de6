"""bundle.engines.candidate_classifier: the CNN false-positive-reduction stage, its training data and its fit."""

from __future__ import annotations

import json
import tempfile
import unittest
from pathlib import Path

import numpy as np
import torch
from monai.data import MetaTensor

from bundle.engines.candidate_classifier import (
    CandidateClassifier,
    collect_patches,
    fit_candidate_net,
    save_candidate_net,
)
from bundle.lesions.extract import extract_lesions
from bundle.networks.nets.candidate_net import CandidateNet

SHAPE = (8, 8, 4)


def blobs_and_tubes(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two-scale patches (n, 2, 8, 8, 4): a bright ball at the centre (label 1) or a bright tube along x (label 0)."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.arange(s) - s / 2 + 0.5 for s in SHAPE], indexing="ij"))
    x = rng.normal(0.2, 0.05, size=(n, 2, *SHAPE)).astype(np.float32)
    y = np.arange(n) % 2
    for i in range(n):
        r = 1.5 + rng.random()
        inside = (grid**2).sum(0) <= r**2 if y[i] else (grid[1] ** 2 + grid[2] ** 2) <= r**2
        x[i, :, inside] += 0.6
    return x, y


class TestCandidateClassifier(unittest.TestCase):
    def test_learns_blob_against_tube_and_round_trips(self):
        x, y = blobs_and_tubes(64, seed=0)
        net, history = fit_candidate_net(x, y, channels=(4, 8, 8), epochs=12, batch_size=16, learning_rate=3e-3)
        self.assertEqual(len(history), 12)
        x_test, y_test = blobs_and_tubes(40, seed=1)
        with torch.no_grad():
            accuracy = ((net(torch.as_tensor(x_test)) > 0).numpy() == y_test).mean()
        self.assertGreaterEqual(accuracy, 0.9)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "net.pt"
            save_candidate_net(net, {"channels": [4, 8, 8], "shape": list(SHAPE), "scales": [1, 2]}, path)
            stage = CandidateClassifier(path)
            np.testing.assert_allclose(stage.probability(x_test),
                                       torch.sigmoid(net(torch.as_tensor(x_test))).detach().numpy(), rtol=1e-5)

    def test_stage_rescores_and_sorts_like_the_rescorer(self):
        torch.manual_seed(0)
        net = CandidateNet(channels=(4, 8, 8)).eval()
        image = np.zeros((30, 30, 12), dtype=np.float32)
        image[8:12, 8:12, 4:7] = 1.0
        prob = np.zeros_like(image)
        prob[8:12, 8:12, 4:7] = 0.9
        prob[20:23, 20:23, 5:7] = 0.4
        with tempfile.TemporaryDirectory() as tmp:
            save_candidate_net(net, {"channels": [4, 8, 8], "shape": list(SHAPE), "scales": [1, 2]}, Path(tmp) / "n.pt")
            stage = CandidateClassifier(Path(tmp) / "n.pt")
            affine = np.diag([1.0, 1.0, 2.5, 1.0])
            found = extract_lesions(prob, affine, {"threshold": 0.2}, rescorer=stage, image=image,
                                    rescore_threshold=None)
            self.assertEqual(len(found), 2)
            np.testing.assert_allclose(sorted(c["cnn_score"] for c in found), [0.4, 0.9], rtol=1e-6)
            self.assertGreaterEqual(found[0]["score"], found[1]["score"])
            self.assertEqual(stage([], image, prob, affine), [])
            geometric = CandidateClassifier(Path(tmp) / "n.pt", combine="geometric")(found, image, prob, affine)
            for c in geometric:
                self.assertAlmostEqual(c["score"], (c["cnn_score"] * c["classifier_score"]) ** 0.5, places=6)
            with self.assertRaisesRegex(ValueError, "combine"):
                CandidateClassifier(Path(tmp) / "n.pt", combine="mean")
            # a mass above max_diameter_mm keeps the network's score; the nodule is rescored
            sized = [{**c, "score": c["cnn_score"], "diameter_mm": d} for c, d in zip(found, (45.0, 6.0))]
            guarded = CandidateClassifier(Path(tmp) / "n.pt", max_diameter_mm=30.0)(sized, image, prob, affine)
            by_size = {c["diameter_mm"]: c for c in guarded}
            self.assertEqual(by_size[45.0]["score"], by_size[45.0]["cnn_score"])
            self.assertEqual(by_size[6.0]["score"], by_size[6.0]["classifier_score"])
            self.assertNotEqual(by_size[45.0]["classifier_score"], by_size[45.0]["cnn_score"])
            with self.assertRaisesRegex(ValueError, "max_diameter_mm"):
                CandidateClassifier(Path(tmp) / "n.pt", max_diameter_mm=0)

    def test_bad_checkpoint_names_the_file(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "broken.pt"
            path.write_text("not a checkpoint")
            with self.assertRaisesRegex(ValueError, "broken.pt"):
                CandidateClassifier(path)
            torch.save({"weights": 1}, path)
            with self.assertRaisesRegex(ValueError, "broken.pt: not a candidate"):
                CandidateClassifier(path)
            with self.assertRaisesRegex(ValueError, "missing.pt"):
                CandidateClassifier(Path(tmp) / "missing.pt")

    def test_fit_needs_both_classes(self):
        x, _ = blobs_and_tubes(8, seed=0)
        with self.assertRaisesRegex(ValueError, "both classes"):
            fit_candidate_net(x, np.ones(8), epochs=1)


class TestCollectPatches(unittest.TestCase):
    def test_candidates_and_lesions_become_labelled_patches(self):
        affine = np.diag([1.0, 1.0, 2.5, 1.0])
        affine[:3, 3] = [-10.0, 5.0, 0.0]
        volume = np.arange(40 * 40 * 20, dtype=np.float32).reshape(1, 40, 40, 20)

        def preprocess(data):
            return {"image": MetaTensor(torch.as_tensor(volume), affine=torch.as_tensor(affine))}

        def mm(ijk):
            return (affine @ np.r_[ijk, 1.0])[:3].tolist()

        scan = {
            "scan": 0,
            "candidates": [
                {"center_mm": mm([10, 10, 5]), "score": 0.9, "status": "tp", "lesion": 0},
                {"center_mm": mm([30, 30, 10]), "score": 0.7, "status": "fp", "lesion": -1},
                {"center_mm": mm([20, 5, 5]), "score": 0.3, "status": "ignored", "lesion": 1},
            ],
            "lesions": [
                {"center_mm": mm([10, 11, 5]), "diameter_mm": 6.0, "ignore": False, "score": 0.9},
                {"center_mm": mm([20, 5, 5]), "diameter_mm": 2.0, "ignore": True, "score": None},
            ],
        }
        with tempfile.TemporaryDirectory() as tmp:
            per_scan = Path(tmp) / "per_scan.json"
            per_scan.write_text(json.dumps({"scans": [scan]}))
            data = collect_patches([{"image": "a.nii.gz", "label": "a_seg.nii.gz"}], per_scan, preprocess, shape=SHAPE, scales=(1,))
            self.assertEqual(data["patches"].shape, (3, 1, *SHAPE))
            np.testing.assert_array_equal(data["labels"], [1, 0, 1])
            np.testing.assert_array_equal(data["kind"], ["candidate", "candidate", "lesion"])
            np.testing.assert_array_equal(data["diameter_mm"], [6.0, 0.0, 6.0])
            # the false positive's patch is centred on voxel (30, 30, 10)
            np.testing.assert_array_equal(data["patches"][1, 0], volume[0, 26:34, 26:34, 8:12].astype(np.float16))
            with self.assertRaisesRegex(ValueError, "1 scans, but 2 datalist entries"):
                collect_patches([{"image": "a"}, {"image": "b"}], per_scan, preprocess, shape=SHAPE)

            def broken(data):
                raise RuntimeError("applying transform LoadVolumed") from KeyError("label")

            with self.assertRaisesRegex(ValueError, "a.nii.gz: cannot preprocess"):
                collect_patches([{"image": "a.nii.gz"}], per_scan, broken, shape=SHAPE)


if __name__ == "__main__":
    unittest.main()


class TestFitCandidateCnnScript(unittest.TestCase):
    """scripts/fit_candidate_cnn.py: bad input ends in one line naming the file and a non-zero exit."""

    def test_missing_inputs(self):
        import subprocess
        import sys

        root = Path(__file__).resolve().parents[2]
        with tempfile.TemporaryDirectory() as tmp:
            datalist = Path(tmp) / "datalist.json"
            datalist.write_text(json.dumps({"validation": []}))
            for args, name in (
                (["collect", "--datalist", str(datalist), "--run", str(Path(tmp) / "norun"), "--output",
                  str(Path(tmp) / "out.npz")], "per_scan.json"),
                (["fit", "--data", str(Path(tmp) / "missing.npz"), "--output", str(Path(tmp) / "n.pt")], "missing.npz"),
            ):
                done = subprocess.run([sys.executable, "-m", "scripts.fit_candidate_cnn", *args], cwd=root,
                                      capture_output=True, text=True, timeout=120)
                self.assertNotEqual(done.returncode, 0)
                last = done.stderr.strip().splitlines()[-1]
                self.assertTrue(last.startswith("fit_candidate_cnn: ") and name in last, last)
                self.assertFalse((Path(tmp) / "out.npz").exists() or (Path(tmp) / "n.pt").exists())


class TestSampledNegatives(unittest.TestCase):
    def test_bright_voxels_of_the_mask_away_from_lesions(self):
        affine = np.diag([1.0, 1.0, 2.5, 1.0])
        image = np.zeros((1, 30, 30, 10), dtype=np.float32)
        image[0, :, :15] = 0.8  # bright half
        mask = np.zeros_like(image)
        mask[0, :20] = 1  # the mask covers rows 0-19
        lesion = {"center_mm": [5.0, 5.0, 12.5], "diameter_mm": 4.0, "ignore": False, "score": None}

        def preprocess(data):
            return {"image": MetaTensor(torch.as_tensor(image), affine=torch.as_tensor(affine)),
                    "lung_mask": torch.as_tensor(mask)}

        with tempfile.TemporaryDirectory() as tmp:
            per_scan = Path(tmp) / "per_scan.json"
            per_scan.write_text(json.dumps({"scans": [{"scan": 0, "candidates": [], "lesions": [lesion]}]}))
            data = collect_patches([{"image": "a"}], per_scan, preprocess, shape=SHAPE, lesions=False,
                                   negatives_per_scan=200)
        self.assertEqual(len(data["labels"]), 200)
        self.assertTrue(np.all(data["labels"] == 0) and np.all(data["kind"] == "sampled"))
        ijk = data["center_voxel"]
        self.assertTrue(np.all(ijk[:, 0] < 20) and np.all(ijk[:, 1] < 15))  # inside the mask, on the bright half
        distance = np.sqrt(((ijk * [1.0, 1.0, 2.5] - [5.0, 5.0, 12.5]) ** 2).sum(1))
        self.assertGreater(distance.min(), 2.0 + 5.0)
        self.assertEqual(len(np.unique(ijk, axis=0)), 200)  # drawn without replacement
