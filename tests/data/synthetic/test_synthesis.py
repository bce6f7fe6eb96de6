from __future__ import annotations

import unittest

import numpy as np
from parameterized import parameterized
from scipy import ndimage

from bundle.data.synthetic.host_context import prepare_host
from bundle.data.synthetic.synthesis import draw_library_lesion, insert_lesion, synthesize_case
from tests.data.synthetic.phantom_fixtures import AFFINE, make_context, make_phantom, run_insert

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


class _Library:
    """Two nodule shapes as :class:`bundle.data.lidc.ShapeLibrary` serves them: a solid bar, a ground-glass disc."""

    def __init__(self):
        bar, disc = np.zeros((12, 5, 4), bool), np.zeros((11, 11, 2), bool)
        bar[1:11, 1:4, 1:3] = True
        disc[np.hypot(*np.indices((11, 11)) - 5.0) <= 5.0] = True
        self.masks = [bar, disc]
        self.records = [{"ratings": {"texture": t}, "spacing_mm": [0.7, 0.7, 1.25], "patient_id": f"LIDC-IDRI-000{i}",
                         "diameter_mm": d} for i, t, d in ((1, 5.0, 7.0), (2, 1.0, 9.0))]  # fmt: skip

    def __len__(self):
        return 2

    def mask(self, i):
        return self.masks[i]


class TestLibraryShapes(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.hu, _, cls.ctx = make_context()

    def _insert(self, kind, seed=0, library=None, diameter=8.0):
        image, label = self.hu.copy(), np.zeros(self.hu.shape, np.uint8)
        rng = np.random.default_rng(seed)
        rec = insert_lesion(self.ctx, image, label, rng, kind, "lidc", "isolated", diameter, library=library)
        return image, label, rec

    def test_real_shape_by_texture(self):
        library = _Library()
        for kind, nodule in (("solid", 0), ("ggo", 1)):
            for seed in range(3):
                _, label, rec = self._insert(kind, seed, library)
                self.assertEqual((rec["shape"], rec["lidc_nodule"], rec["kind"]), ("lidc", nodule, kind))
                self.assertEqual(rec["lidc_patient"], library.records[nodule]["patient_id"])
                self.assertLess(abs(rec["diameter_mm"] - 8.0) / 8.0, 0.25, rec)
                self.assertAlmostEqual(rec["volume_mm3"], label.sum() * 2.5, places=3)

    def test_real_distribution(self):
        """A library lesion takes the drawn nodule's own kind and diameter; the pool and the range limit the draw."""
        library = _Library()
        library.records[0]["diameter_mm"], library.records[1]["diameter_mm"] = 5.0, 12.0
        draws = [draw_library_lesion(library, [0, 1], np.random.default_rng(s), (3.0, 30.0)) for s in range(20)]
        drawn = {(d["nodule"], d["kind"], d["diameter_mm"]) for d in draws}
        self.assertEqual(drawn, {(0, "solid", 5.0), (1, "ggo", 12.0)})
        self.assertEqual(draw_library_lesion(library, [1], np.random.default_rng(0), (3.0, 30.0))["nodule"], 1)
        self.assertIsNone(draw_library_lesion(library, [0, 1], np.random.default_rng(0), (20.0, 30.0)))
        _, _, records = synthesize_case(self.ctx, self.hu, np.random.default_rng(2), 3, (3.0, 30.0),
                                        shape_library=library, library_share=1.0, library_pool=[1])  # fmt: skip
        self.assertGreater(len(records), 0)
        drawn = {(r["lidc_nodule"], r["kind"], r["requested_diameter_mm"]) for r in records}
        self.assertEqual(drawn, {(1, "ggo", 12.0)})

    def test_share_in_a_case(self):
        rng = np.random.default_rng(1)
        library = _Library()
        _, _, records = synthesize_case(self.ctx, self.hu, rng, 4, (6.0, 10.0), shape_library=library,
                                        library_share=1.0)
        self.assertGreater(len(records), 0)
        self.assertTrue(all(r["shape"] == "lidc" for r in records), records)
        _, _, records = synthesize_case(self.ctx, self.hu, np.random.default_rng(1), 4, (6.0, 10.0))
        self.assertFalse(any(r["shape"] == "lidc" for r in records))

    def test_no_library(self):
        with self.assertRaisesRegex(ValueError, "with a shape library"):
            self._insert("solid")


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

    def test_synthesize_case(self):
        with self.assertRaises(ValueError):
            synthesize_case(self.ctx, self.hu, np.random.default_rng(0), -1)
        with self.assertRaises(ValueError):
            synthesize_case(self.ctx, self.hu[:-1], np.random.default_rng(0), 1)


if __name__ == "__main__":
    unittest.main()
