from __future__ import annotations

import unittest

import numpy as np
from parameterized import parameterized
from scipy import ndimage

from bundle.data.synthetic.hosts import correlated_noise, estimate_noise, known_lesion_mask, vary_host
from bundle.transforms.lung_mask import lung_mask
from bundle.data.synthetic.synthesis import (
    CT_KINDS,
    SHAPES,
    insert_lesion,
    lesion_record,
    prepare_host,
    sample_lesion_params,
    synthesize_case,
)

SPACING = (1.0, 1.0, 2.5)
AFFINE = np.diag([-1.0, -1.0, 2.5, 1.0])
AFFINE[:3, 3] = (30.0, 20.0, -50.0)


def make_phantom(noise: float = 20.0, vessel: bool = True, seed: int = 0) -> tuple[np.ndarray, dict]:
    """64x56x20 chest at 1 x 1 x 2.5 mm: body 40 HU, lungs -850 HU (16 slices), one vessel in the left lung."""
    x, y, z = np.meshgrid(np.arange(64), np.arange(56), np.arange(20), indexing="ij")
    body = ((x - 31.5) / 30.0) ** 2 + ((y - 27.5) / 26.0) ** 2 <= 1.0
    zin = (z >= 2) & (z < 18)
    lung_r = (((x - 17) / 10.0) ** 2 + ((y - 27.5) / 17.0) ** 2 <= 1.0) & zin
    lung_l = (((x - 46) / 10.0) ** 2 + ((y - 27.5) / 17.0) ** 2 <= 1.0) & zin
    ves = (((x - 46) ** 2 + (y - 33) ** 2) <= 1.5**2) & lung_l & vessel
    hu = np.full(x.shape, -1000.0, dtype=np.float32)
    hu[body] = 40.0
    hu[lung_r | lung_l] = -850.0
    hu[ves] = 40.0
    hu[body] += np.random.default_rng(seed).normal(0.0, noise, int(body.sum())).astype(np.float32)
    return hu, {"body": body, "lung_right": lung_r, "lung_left": lung_l, "vessel": ves}


def make_context(exclusion: np.ndarray | None = None, vessel: bool = True):
    hu, truth = make_phantom(vessel=vessel)
    region = lung_mask(hu, SPACING, closing_mm=0.0)
    return hu, truth, prepare_host(hu, AFFINE, "CT", region, exclusion=exclusion, host_id="phantom")


def run_insert(kind, shape, location, diameter, seed=0, ctx_parts=None):
    hu, truth, ctx = ctx_parts or make_context()
    image, label = hu.copy(), np.zeros(hu.shape, dtype=np.uint8)
    record = insert_lesion(ctx, image, label, np.random.default_rng(seed), kind, shape, location, diameter)
    return hu, truth, ctx, image, label, record


TEST_CASES = [
    # kind, shape, location, requested diameter (mm)
    ["solid", "spherical", "isolated", 8.0],
    ["solid", "spherical", "isolated", 3.0],
    ["ggo", "lobulated", "isolated", 7.0],
    ["part-solid", "spiculated", "isolated", 9.0],
    ["solid", "lobulated", "juxta-vascular", 6.0],
    ["solid", "spherical", "juxta-pleural", 8.0],
    ["ggo", "spiculated", "juxta-pleural", 9.0],
]


class TestInsertLesion(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.parts = make_context()

    @parameterized.expand(TEST_CASES)
    def test_label_record_agree(self, kind, shape, location, diameter):
        hu, _, ctx, image, label, rec = run_insert(kind, shape, location, diameter, ctx_parts=self.parts)
        self.assertIsNotNone(rec)
        self.assertGreaterEqual(int(label.sum()), 1)
        for key in ("center_voxel", "center_mm", "box_voxel", "diameter_mm", "volume_mm3", "kind", "shape", "location"):
            self.assertIn(key, rec)
        self.assertEqual((rec["kind"], rec["shape"], rec["location"], rec["synthetic"]), (kind, shape, location, True))
        center = tuple(np.round(rec["center_voxel"]).astype(int))
        self.assertEqual(label[center], 1)  # center inside the label
        self.assertTrue(ctx.region[center])  # ... and inside the lung
        lo, hi = (np.asarray(b) for b in rec["box_voxel"])
        idx = np.argwhere(label)
        self.assertTrue(np.all(idx.min(0) == lo) and np.all(idx.max(0) + 1 == hi))
        self.assertTrue(np.all(ctx.allowed[label > 0]))  # never outside the lung grown by one voxel
        world = AFFINE[:3, :3] @ np.asarray(rec["center_voxel"]) + AFFINE[:3, 3]
        np.testing.assert_allclose(rec["center_mm"], world, atol=0.01)
        self.assertAlmostEqual(rec["volume_mm3"], label.sum() * 2.5, places=3)
        # the image changes only around the lesion
        changed = np.argwhere(image != hu)
        margin = 16 if shape == "spiculated" else 6  # faint spicule tips (occupancy < 0.5) reach past the label
        self.assertTrue(np.all(changed.min(0) >= lo - margin) and np.all(changed.max(0) < hi + margin))

    @parameterized.expand([[6.0], [8.0], [12.0]])
    def test_requested_diameter(self, diameter):
        *_, rec = run_insert("solid", "spherical", "isolated", diameter, ctx_parts=self.parts)
        self.assertLess(abs(rec["diameter_mm"] - diameter) / diameter, 0.2)

    def test_juxta_pleural_touches_boundary(self):
        _, _, ctx, _, label, rec = run_insert("solid", "spherical", "juxta-pleural", 8.0, seed=3, ctx_parts=self.parts)
        grown = ndimage.binary_dilation(label > 0, structure=np.ones((3, 3, 1), dtype=bool))
        self.assertTrue(np.any(grown & ~ctx.region))

    def test_juxta_vascular_touches_vessel(self):
        _, truth, _, _, label, rec = run_insert("solid", "spherical", "juxta-vascular", 6.0, ctx_parts=self.parts)
        grown = ndimage.binary_dilation(label > 0, structure=np.ones((3, 3, 3), dtype=bool))
        self.assertTrue(np.any(grown & truth["vessel"]))

    def test_no_vessel_no_place(self):
        parts = make_context(vessel=False)
        _, _, _, image, label, rec = run_insert("solid", "spherical", "juxta-vascular", 6.0, ctx_parts=parts)
        self.assertIsNone(rec)
        self.assertEqual(int(label.sum()), 0)

    @parameterized.expand([["ggo", -800.0, -300.0], ["solid", -150.0, 150.0]])
    def test_intensity_range(self, kind, low, high):
        _, _, _, image, label, rec = run_insert(kind, "spherical", "isolated", 10.0, seed=1, ctx_parts=self.parts)
        lo_ref, hi_ref = (-750.0, -350.0) if kind == "ggo" else (-50.0, 60.0)
        self.assertTrue(lo_ref <= rec["value_hu"] <= hi_ref)
        c = np.round(rec["center_voxel"]).astype(int)
        core = image[c[0] - 1 : c[0] + 2, c[1] - 1 : c[1] + 2, c[2]]
        self.assertTrue(low <= float(core.mean()) <= high, msg=f"{kind} core mean {core.mean():.0f}")

    def test_determinism(self):
        hu, _, ctx = self.parts
        a = synthesize_case(ctx, hu, np.random.default_rng(7), 4, (3.0, 12.0))
        b = synthesize_case(ctx, hu, np.random.default_rng(7), 4, (3.0, 12.0))
        c = synthesize_case(ctx, hu, np.random.default_rng(8), 4, (3.0, 12.0))
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
        self.assertEqual(a[2], b[2])
        self.assertFalse(np.array_equal(a[0], c[0]))

    def test_exclusion_and_no_overlap(self):
        hu, truth = make_phantom()
        exclusion = truth["lung_left"].copy()
        exclusion[:, 28:] = False  # half of the left lung is off limits (like the real tumour region)
        _, _, ctx = make_context(exclusion=exclusion)
        for seed in range(3):
            image, label, recs = synthesize_case(ctx, hu, np.random.default_rng(seed), 5, diameter_range_mm=(3, 8))
            self.assertGreater(len(recs), 0)
            self.assertFalse(np.any((label > 0) & exclusion))
            # lesions never overlap: per-record volumes add up to the label
            self.assertAlmostEqual(sum(r["volume_mm3"] for r in recs), label.sum() * 2.5, places=3)
            self.assertEqual(image.dtype, np.float32)

    def test_mr_contrast(self):
        x, y, z = np.meshgrid(np.arange(40), np.arange(40), np.arange(40), indexing="ij")
        brain = (x - 19.5) ** 2 + (y - 19.5) ** 2 + (z - 19.5) ** 2 <= 17**2
        vol = np.where(brain, 100.0, 0.0).astype(np.float32)
        vol += np.random.default_rng(0).normal(0, 2.0, vol.shape).astype(np.float32) * brain
        ctx = prepare_host(vol, np.eye(4), "MR", brain)
        for kind, sign in (("hyper", 1), ("hypo", -1)):
            img, lab = vol.copy(), np.zeros(vol.shape, np.uint8)
            rec = insert_lesion(ctx, img, lab, np.random.default_rng(1), kind, "spherical", "deep", 8.0)
            self.assertIsNotNone(rec)
            self.assertGreater(sign * (float(img[lab > 0].mean()) - 100.0), 8.0)
            self.assertEqual(rec["kind"], kind)


class TestSampling(unittest.TestCase):
    def test_sample_lesion_params(self):
        rng = np.random.default_rng(0)
        draws = [sample_lesion_params(rng, "CT") for _ in range(500)]
        d = np.array([p["diameter_mm"] for p in draws])
        self.assertTrue(np.all((d >= 3.0) & (d <= 30.0)))
        self.assertTrue(0.2 < np.mean(d < 6.0) < 0.4)  # small nodules well represented
        self.assertTrue({p["kind"] for p in draws} == set(CT_KINDS))
        self.assertTrue({p["shape"] for p in draws} == set(SHAPES))
        self.assertFalse(any(p["shape"] == "spiculated" and p["diameter_mm"] < 8 for p in draws))
        mr = [sample_lesion_params(np.random.default_rng(5), "MR") for _ in range(2)]
        self.assertEqual(mr[0], mr[1])

    def test_lesion_record(self):
        mask = np.zeros((10, 10, 10), dtype=bool)
        mask[2:5, 3:6, 4:7] = True
        rec = lesion_record(mask, np.eye(4), offset=(10, 0, 0), kind="solid")
        self.assertEqual(rec["center_voxel"], [13.0, 4.0, 5.0])
        self.assertEqual(rec["box_voxel"], [[12, 3, 4], [15, 6, 7]])
        self.assertAlmostEqual(rec["volume_mm3"], 27.0)
        self.assertAlmostEqual(rec["diameter_mm"], round((6 * 27 / np.pi) ** (1 / 3), 2))
        self.assertEqual(rec["kind"], "solid")
        ring = np.zeros((9, 9, 1), dtype=bool)
        ring[1:8, 1:8] = True
        ring[2:7, 2:7] = False  # centroid in the hole: the nearest label voxel is used
        c = np.round(lesion_record(ring, np.eye(4))["center_voxel"]).astype(int)
        self.assertTrue(ring[tuple(c)])


class TestHostNoise(unittest.TestCase):
    @parameterized.expand([[30.0, 0.0], [30.0, 1.0], [10.0, 1.5]])
    def test_estimate_noise(self, std, sigma):
        noise = correlated_noise((96, 96, 4), std, sigma, np.random.default_rng(0))
        self.assertLess(abs(noise.std() - std) / std, 0.1)
        est_std, est_sigma = estimate_noise(noise + 50.0, np.ones(noise.shape, dtype=bool))
        self.assertLess(abs(est_std - std) / std, 0.15)
        self.assertLess(abs(est_sigma - sigma), 0.35)

    def test_estimate_noise_empty_mask(self):
        self.assertEqual(estimate_noise(np.zeros((8, 8, 2)), np.zeros((8, 8, 2), dtype=bool)), (0.0, 0.0))

    @parameterized.expand([["CT"], ["MR"]])
    def test_vary_host(self, modality):
        hu, _ = make_phantom()
        vol = hu if modality == "CT" else np.clip(hu + 1000.0, 0, None) / 10.0
        a, pa = vary_host(vol, modality, np.random.default_rng(3))
        b, pb = vary_host(vol, modality, np.random.default_rng(3))
        np.testing.assert_array_equal(a, b)
        self.assertEqual(pa, pb)
        self.assertEqual(a.shape, vol.shape)
        if modality == "CT":
            self.assertTrue(a.min() >= -1024.0 and a.max() <= 3071.0)
            self.assertTrue(np.all(a[0, 0] == -1000.0) or "blur_sigma_vox" in pa)
        else:
            self.assertTrue(np.all(a >= 0))

    def test_known_lesion_mask(self):
        hu, truth = make_phantom()
        blob = (np.indices(hu.shape)[0] - 53) ** 2 + (np.indices(hu.shape)[1] - 27) ** 2 <= 25
        blob &= truth["lung_left"] & (np.indices(hu.shape)[2] >= 8) & (np.indices(hu.shape)[2] < 12)
        hu[blob] = 30.0  # a tumour against the lateral wall of the left lung
        region = lung_mask(hu, SPACING, closing_mm=0.0)
        center_mm = (AFFINE[:3, :3] @ [54, 27, 10] + AFFINE[:3, 3]).tolist()
        meta = {"host_id": "phantom", "known_lesion_roi": {"center_mm": center_mm, "radii_mm": [10.0, 10.0, 10.0]}}
        tumour, roi = known_lesion_mask(hu, AFFINE, meta, region)
        self.assertGreater((tumour & blob).sum() / blob.sum(), 0.7)
        self.assertTrue(np.all(roi[tumour]))
        self.assertFalse(np.any(tumour & ~truth["body"]))
        empty, roi0 = known_lesion_mask(hu, AFFINE, {"host_id": "phantom"})
        self.assertFalse(empty.any() or roi0.any())


class TestIllArg(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.hu, _, cls.ctx = make_context()

    @parameterized.expand(
        [
            [{"kind": "hyper"}],
            [{"shape": "cubic"}],
            [{"location": "deep"}],
            [{"diameter_mm": 0.0}],
        ]
    )
    def test_insert_lesion(self, override):
        kwargs = {"kind": "solid", "shape": "spherical", "location": "isolated", "diameter_mm": 6.0}
        kwargs.update(override)
        with self.assertRaises(ValueError):
            label = np.zeros(self.hu.shape, np.uint8)
            insert_lesion(self.ctx, self.hu.copy(), label, np.random.default_rng(0), **kwargs)

    def test_prepare_host(self):
        with self.assertRaises(ValueError):
            prepare_host(self.hu, AFFINE, "PET", self.ctx.region)
        with self.assertRaises(ValueError):
            prepare_host(self.hu, AFFINE, "CT", self.ctx.region[:-1])
        with self.assertRaises(ValueError):
            prepare_host(self.hu[..., 0], AFFINE, "CT", self.ctx.region[..., 0])

    def test_others(self):
        with self.assertRaises(ValueError):
            synthesize_case(self.ctx, self.hu, np.random.default_rng(0), -1)
        with self.assertRaises(ValueError):
            synthesize_case(self.ctx, self.hu[:-1], np.random.default_rng(0), 1)
        with self.assertRaises(ValueError):
            sample_lesion_params(np.random.default_rng(0), "PET")
        with self.assertRaises(ValueError):
            sample_lesion_params(np.random.default_rng(0), "CT", (10.0, 5.0))
        with self.assertRaises(ValueError):
            lesion_record(np.zeros((3, 3, 3), dtype=bool), np.eye(4))
        with self.assertRaises(ValueError):
            vary_host(self.hu, "PET", np.random.default_rng(0))


if __name__ == "__main__":
    unittest.main()
