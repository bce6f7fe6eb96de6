"""The one extraction from network output to lesions (bundle.lesions.extract)."""

from __future__ import annotations

import unittest

import numpy as np
import torch
from parameterized import parameterized

from bundle.lesions.extract import extract_lesions, lesion_probability
from bundle.lesions.find import find_lesions

AFFINE = np.diag([1.0, 1.0, 2.5, 1.0])


def two_blobs() -> np.ndarray:
    """A strong blob (0.95) and a weak one (0.6) in a (24, 24, 10) probability map."""
    prob = np.zeros((24, 24, 10), np.float32)
    prob[3:8, 3:8, 2:5] = 0.95
    prob[15:19, 15:19, 5:8] = 0.6
    return prob


def halve_the_weak(cands, image, prob, affine):
    """A stand-in rescorer: halves every score below 0.9 and sorts by the new score."""
    out = [{**c, "score": c["score"] if c["score"] >= 0.9 else c["score"] / 2} for c in cands]
    return sorted(out, key=lambda c: -c["score"])


class TestLesionProbability(unittest.TestCase):
    def test_softmax_for_several_channels(self):
        logits = torch.randn(3, 5, 6, 7)
        np.testing.assert_allclose(lesion_probability(logits, 2), torch.softmax(logits, 0)[2], rtol=1e-6)

    def test_inplace_sigmoid_overwrites_only_when_asked(self):
        logits = torch.randn(1, 4, 5, 6, generator=torch.Generator().manual_seed(1))
        kept = logits.clone()
        expected = torch.sigmoid(kept[0])
        torch.testing.assert_close(lesion_probability(logits, 1), expected)
        torch.testing.assert_close(logits, kept)  # default: the caller's logits untouched
        prob = lesion_probability(logits, 1, inplace=True)
        torch.testing.assert_close(prob, expected)
        self.assertEqual(prob.data_ptr(), logits.data_ptr())  # no second volume

    def test_sigmoid_for_one_channel(self):
        logits = torch.randn(1, 5, 6, 7)
        np.testing.assert_allclose(lesion_probability(logits, 1), torch.sigmoid(logits[0]), rtol=1e-6)

    @parameterized.expand([("past_the_channels", 2), ("negative", -1)])
    def test_ill_channel(self, _, channel):
        with self.assertRaisesRegex(ValueError, "foreground_channel"):
            lesion_probability(torch.zeros(2, 4, 4, 4), channel)


class TestExtractLesions(unittest.TestCase):
    def test_without_a_rescorer_it_is_find_lesions(self):
        prob = two_blobs()
        lesions = extract_lesions(prob, AFFINE, {"threshold": 0.5})
        self.assertEqual(lesions, find_lesions(prob, AFFINE, threshold=0.5))
        self.assertEqual(len(lesions), 2)
        found, labels = extract_lesions(prob, AFFINE, {"threshold": 0.5}, return_label_map=True)
        self.assertEqual(found, lesions)
        self.assertEqual(int(labels.max()), 2)

    def test_mask_drops_lesions_outside(self):
        mask = np.zeros((24, 24, 10), bool)
        mask[:12] = True
        lesions = extract_lesions(two_blobs(), AFFINE, {"threshold": 0.5}, mask=mask)
        self.assertEqual([round(s["score"], 2) for s in lesions], [0.95])

    def test_rescorer_with_a_threshold_drops_and_relabels(self):
        lesions, labels = extract_lesions(two_blobs(), AFFINE, {"threshold": 0.5}, rescorer=halve_the_weak,
                                          image=two_blobs(), rescore_threshold=0.5, return_label_map=True)  # fmt: skip
        self.assertEqual([round(s["score"], 2) for s in lesions], [0.95])
        self.assertEqual(sorted(np.unique(labels).tolist()), [0, 1])

    def test_rescorer_without_a_threshold_keeps_every_candidate(self):
        lesions = extract_lesions(two_blobs(), AFFINE, {"threshold": 0.5}, rescorer=halve_the_weak,
                                  image=two_blobs(), rescore_threshold=None)  # fmt: skip
        self.assertEqual([round(s["score"], 2) for s in lesions], [0.95, 0.3])

    def test_ill_args(self):
        with self.assertRaisesRegex(ValueError, "needs the preprocessed image"):
            extract_lesions(two_blobs(), AFFINE, rescorer=halve_the_weak)
        with self.assertRaisesRegex(ValueError, "return_label_map needs a rescore_threshold"):
            extract_lesions(two_blobs(), AFFINE, rescorer=halve_the_weak, image=two_blobs(), rescore_threshold=None,
                            return_label_map=True)  # fmt: skip


if __name__ == "__main__":
    unittest.main()
