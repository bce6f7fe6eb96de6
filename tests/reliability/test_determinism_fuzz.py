"""Determinism (same input, weights and seed give identical outputs), property-based checks of preprocessing and
post-processing, and a fuzz run over the readers: mutated NIfTI and DICOM files give a clean one-line error that
names the file, or a finite image, never anything else."""

from __future__ import annotations

import tempfile
import unittest
from pathlib import Path

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from monai.data import MetaTensor

from bundle.data.dataset import SafeDataset
from bundle.inferers import RoutedSlidingWindowInferer
from bundle.networks import GhostCAUNet
from bundle.transforms.array import ReplaceNonFinite
from bundle.lesions.find import find_lesions
from tests.reliability import inputs as I
from tests.reliability.test_catalogue import inference_loading


class TestDeterminism(unittest.TestCase):
    def test_same_input_weights_seed_give_identical_logits(self):
        image = torch.rand(1, 1, 40, 36, 20, generator=torch.Generator().manual_seed(0))
        outputs = []
        for _ in range(2):
            torch.manual_seed(0)
            net = GhostCAUNet(features=(8, 16, 32, 64)).eval()
            inferer = RoutedSlidingWindowInferer(roi_size=(32, 32, 16), sw_batch_size=2, overlap=0.25)
            with torch.no_grad():
                outputs.append(inferer(image, net))
        self.assertTrue(torch.equal(outputs[0], outputs[1]))

    def test_same_file_gives_identical_preprocessing(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = I.good_nifti(Path(tmp))
            pipeline = inference_loading()
            a, b = (SafeDataset([{"image": str(path)}], pipeline)[0]["image"] for _ in range(2))
        self.assertTrue(torch.equal(a.as_tensor(), b.as_tensor()))


class TestProperties(unittest.TestCase):
    @settings(max_examples=30, deadline=None)
    @given(st.lists(st.sampled_from([0.0, 1.0, -1e30, 1e30, float("nan"), float("inf"), -float("inf")]),
                    min_size=8, max_size=8))  # fmt: skip
    def test_replace_non_finite_leaves_only_finite(self, values):
        out = ReplaceNonFinite(value=-1000.0)(torch.tensor(values).reshape(1, 2, 2, 2))
        self.assertTrue(torch.isfinite(out).all())
        finite = torch.isfinite(torch.tensor(values)).reshape(1, 2, 2, 2)
        self.assertTrue(torch.equal(out[finite], torch.tensor(values).reshape(1, 2, 2, 2)[finite]))

    @settings(max_examples=25, deadline=None)
    @given(st.integers(0, 2**31 - 1), st.floats(0.05, 0.95))
    def test_find_lesions_bounded(self, seed, threshold):
        prob = np.random.default_rng(seed).random((12, 10, 6)).astype(np.float32) ** 4
        lesions, labels = find_lesions(prob, np.diag([2.0, 2.0, 5.0, 1.0]), threshold=threshold, return_label_map=True)
        self.assertEqual(labels.shape, prob.shape)
        for lesion in lesions:
            self.assertGreaterEqual(lesion["score"], threshold - 1e-6)
            self.assertLessEqual(lesion["score"], 1.0)
            self.assertTrue(all(0 <= c <= n - 1 for c, n in zip(lesion["center_voxel"], prob.shape)))
            self.assertGreater(lesion["volume_mm3"], 0)
        self.assertEqual([les["score"] for les in lesions], sorted((les["score"] for les in lesions), reverse=True))

    @settings(max_examples=10, deadline=None)
    @given(st.integers(0, 2**31 - 1))
    def test_preprocessing_output_finite_in_unit_interval(self, seed):
        rng = np.random.default_rng(seed)
        hu = rng.uniform(-3000, 3000, (1, 10, 9, 4)).astype(np.float32)
        from bundle.transforms import ct_preprocessing

        image = MetaTensor(torch.from_numpy(hu), affine=np.diag([2.0, 2.0, 5.0, 1.0]))
        out = ct_preprocessing(pixdim=None, load=False, normalize="window")({"image": image})["image"]
        self.assertTrue(torch.isfinite(out).all())
        self.assertGreaterEqual(float(out.min()), 0.0)
        self.assertLessEqual(float(out.max()), 1.0)


def _mutate(raw: bytes, rng: np.random.Generator) -> bytes:
    """Flip, zero, cut or splice bytes, as disk and transfer faults do."""
    data = bytearray(raw)
    kind = int(rng.integers(4))
    if kind == 0:  # flip a few random bytes
        for i in rng.integers(0, len(data), 8):
            data[i] ^= int(rng.integers(1, 256))
    elif kind == 1:  # zero a block
        start = int(rng.integers(0, len(data)))
        data[start : start + 64] = bytes(len(data[start : start + 64]))
    elif kind == 2:  # cut the tail
        data = data[: int(rng.integers(0, len(data)))]
    else:  # repeat a block in the middle
        start = int(rng.integers(0, len(data)))
        data[start:start] = data[start : start + 100]
    return bytes(data)


class TestReaderFuzz(unittest.TestCase):
    def test_mutated_files_give_clean_errors(self):
        pipeline = inference_loading()
        rng = np.random.default_rng(0)
        outcomes = {"error": 0, "read": 0}
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            sources = {"nii.gz": I.good_nifti(root).read_bytes(), "nii": I.good_nifti(root, "g.nii").read_bytes()}
            series = I.dicom_good(root)
            slices = sorted(series.iterdir())
            for i in range(24):
                if i % 3 == 2:  # a DICOM series with one mutated slice
                    target = root / f"fuzz_series_{i}"
                    target.mkdir()
                    for k, s in enumerate(slices):
                        raw = s.read_bytes()
                        (target / s.name).write_bytes(_mutate(raw, rng) if k == 1 else raw)
                else:
                    suffix = "nii.gz" if i % 3 == 0 else "nii"
                    target = root / f"fuzz_{i}.{suffix}"
                    target.write_bytes(_mutate(sources[suffix], rng))
                out = SafeDataset([{"image": str(target), "case": target.name}], pipeline)[0]
                if "error" in out:
                    outcomes["error"] += 1
                    self.assertIn(str(target), out["error"])
                    self.assertNotIn("\n", out["error"])
                else:
                    outcomes["read"] += 1
                    self.assertTrue(torch.isfinite(out["image"]).all(), target.name)
        self.assertGreater(outcomes["error"], 0)  # the mutations do break files
