from __future__ import annotations

import json
import tempfile
import unittest
from pathlib import Path

import numpy as np
import torch

from bundle.lesions.rescore import (
    FEATURE_NAMES,
    CandidateRescorer,
    candidate_features,
    rescore_lesions,
)
from bundle.metrics.outputs import LesionListsOutputTransform, case_lesion_lists

SPACING = (1.0, 1.0, 2.5)
AFFINE = np.diag([*SPACING, 1.0])


def sphere_and_tube(shape=(64, 64, 26)) -> np.ndarray:
    """A bright 3 mm-radius sphere at voxel (20, 20, 12) and a bright 2 mm-radius tube along z through (44, 44)."""
    x, y, z = np.meshgrid(*[np.arange(n) * s for n, s in zip(shape, SPACING)], indexing="ij")
    img = np.zeros(shape, np.float32)
    img[(x - 20) ** 2 + (y - 20) ** 2 + (z - 30) ** 2 <= 9] = 1.0
    img[(x - 44) ** 2 + (y - 44) ** 2 <= 4] = 1.0
    return img


def column(name: str) -> int:
    return FEATURE_NAMES.index(name)


CANDIDATES = [
    {"center_voxel": [20, 20, 12], "center_mm": [20.0, 20.0, 30.0], "score": 0.9},
    {"center_voxel": [44, 44, 12], "center_mm": [44.0, 44.0, 30.0], "score": 0.9},
]


class TestCandidateFeatures(unittest.TestCase):
    def test_blob_separates_a_sphere_from_a_tube_in_anisotropic_voxels(self):
        img = sphere_and_tube()
        f = candidate_features(img, img, CANDIDATES, AFFINE)
        self.assertEqual(f.shape, (2, len(FEATURE_NAMES)))
        for s in ("1.5", "3"):
            self.assertGreater(f[0, column(f"blob_{s}")], 0.8)  # sphere: three equal eigenvalues
            self.assertLess(f[1, column(f"blob_{s}")], 0.1)  # tube: one eigenvalue near zero
            self.assertGreater(f[1, column(f"tube_{s}")], 0.9)
            self.assertGreater(f[0, column(f"bright_{s}")], 0.0)  # bright structures: positive -Laplacian
        self.assertAlmostEqual(f[0, column("logit_score")], np.log(9.0), places=6)

    def test_air_fraction_and_contrast(self):
        lung = np.full((64, 64, 26), 0.05, np.float32)  # air-filled lung around a bright nodule
        lung[18:23, 18:23, 11:14] = 0.8
        soft = np.full((64, 64, 26), 0.7, np.float32)  # the same nodule in soft tissue
        soft[18:23, 18:23, 11:14] = 0.8
        cand = CANDIDATES[:1]
        f_lung = candidate_features(lung, lung, cand, AFFINE)[0]
        f_soft = candidate_features(soft, soft, cand, AFFINE)[0]
        self.assertGreater(f_lung[column("air")], 0.9)
        self.assertEqual(f_soft[column("air")], 0.0)
        self.assertAlmostEqual(f_lung[column("contrast")], 0.75, places=5)
        self.assertAlmostEqual(f_soft[column("contrast")], 0.1, places=5)

    def test_candidate_at_the_volume_border_and_empty_list(self):
        img = sphere_and_tube()
        f = candidate_features(img, img, [{"center_voxel": [0, 63, 25], "score": 1.0}], AFFINE)
        self.assertTrue(np.isfinite(f).all())
        self.assertEqual(candidate_features(img, img, [], AFFINE).shape, (0, len(FEATURE_NAMES)))

    def test_shape_mismatch_is_refused(self):
        with self.assertRaisesRegex(ValueError, "one shape"):
            candidate_features(np.zeros((8, 8, 8)), np.zeros((8, 8, 7)), CANDIDATES, AFFINE)


class TestCandidateRescorer(unittest.TestCase):
    def model(self, weight_on_blob: float) -> dict:
        weights = [0.0] * len(FEATURE_NAMES)
        weights[column("blob_3")] = weight_on_blob
        n = len(FEATURE_NAMES)
        names = list(FEATURE_NAMES)
        return {"feature_names": names, "mean": [0.0] * n, "std": [1.0] * n, "weights": weights, "bias": 0.0}

    def test_rescoring_ranks_the_sphere_above_the_tube_and_logs(self):
        img = sphere_and_tube()
        with tempfile.TemporaryDirectory() as tmp:
            log = Path(tmp) / "f.jsonl"
            rescorer = CandidateRescorer(self.model(10.0), features_log=log)
            tube_first = [CANDIDATES[1], CANDIDATES[0]]
            out = rescorer(tube_first, img, img, AFFINE)
            self.assertEqual(out[0]["center_voxel"], [20, 20, 12])
            self.assertGreater(out[0]["score"], 0.99)
            self.assertLess(out[1]["score"], 0.75)
            self.assertEqual(out[0]["cnn_score"], 0.9)
            lines = log.read_text().splitlines()
            self.assertEqual(len(lines), 1)
            self.assertEqual([c["score"] for c in json.loads(lines[0])["candidates"]], [c["score"] for c in out])

    def test_without_a_model_scores_are_kept(self):
        img = sphere_and_tube()
        out = CandidateRescorer(None)(CANDIDATES, img, img, AFFINE)
        self.assertEqual([c["score"] for c in out], [0.9, 0.9])
        self.assertEqual(len(out[0]["features"]), len(FEATURE_NAMES))

    def test_bad_model_files(self):
        with tempfile.TemporaryDirectory() as tmp:
            with self.assertRaisesRegex(ValueError, "missing.json: cannot read"):
                CandidateRescorer(Path(tmp) / "missing.json")
            other = self.model(1.0)
            other["feature_names"] = other["feature_names"][:-1]
            with self.assertRaisesRegex(ValueError, "differ from this version"):
                CandidateRescorer(other)

    def test_output_transform_rescores_and_needs_the_image(self):
        img = sphere_and_tube()
        prob = torch.from_numpy(img)[None] * 0.9
        label = torch.from_numpy((img > 0) & (np.arange(64)[:, None, None] < 32)).float()[None]  # the sphere only
        from monai.data import MetaTensor

        pred = MetaTensor(prob, affine=torch.as_tensor(AFFINE))
        rescorer = CandidateRescorer(self.model(10.0))
        with self.assertRaisesRegex(ValueError, "needs the preprocessed image"):
            case_lesion_lists(pred, label, rescorer=rescorer)
        transform = LesionListsOutputTransform(pred_key="pred", rescorer=rescorer)
        y_pred, y = transform({"pred": pred, "label": label, "image": torch.from_numpy(img)[None]})
        self.assertEqual(len(y[0]), 1)
        scores = [c["score"] for c in y_pred[0]]
        self.assertEqual(len(scores), 2)
        self.assertGreater(scores[0], 0.99)  # the sphere, which is the lesion
        self.assertLess(scores[1], 0.75)


class TestRescoreLesions(unittest.TestCase):
    def test_dropped_lesions_leave_the_label_map_and_the_rest_are_renumbered(self):
        lesions = [{"score": 0.9, "name": "a"}, {"score": 0.8, "name": "b"}, {"score": 0.7, "name": "c"}]
        labels = np.array([[[0, 1, 2, 3]]], dtype=np.uint16)
        new_scores = {"a": 0.2, "b": 0.6, "c": 0.95}  # a is dropped, c now ranks first

        def rescorer(cands, image, prob, affine):
            out = [{**c, "score": new_scores[c["name"]]} for c in cands]
            return sorted(out, key=lambda c: -c["score"])

        kept, relabelled = rescore_lesions(rescorer, lesions, None, None, None, 0.5, labels)
        self.assertEqual([c["name"] for c in kept], ["c", "b"])
        self.assertTrue(all("_label" not in c for c in kept))
        np.testing.assert_array_equal(relabelled, [[[0, 0, 2, 1]]])
        self.assertEqual(relabelled.dtype, labels.dtype)
        for bad in (1.5, -0.1, "0.5", True):
            with self.assertRaisesRegex(ValueError, "rescore_threshold"):
                rescore_lesions(rescorer, lesions, None, None, None, bad, labels)


if __name__ == "__main__":
    unittest.main()
