from __future__ import annotations

import unittest

import numpy as np
from parameterized import parameterized
from scipy import ndimage

from bundle.transforms.lung_mask import body_mask, closing_slicewise, cut_faces, fill_holes_slicewise, lung_envelope, lung_mask


def make_chest_phantom(
    shape: tuple[int, int, int] = (48, 48, 16), noise: float = 15.0, seed: int = 0
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """A tiny chest: body (40 HU) in air (-1000), two lungs (-850), a vessel (40 HU) along z in the left lung.

    Returns the HU volume (H, W, D) and the true masks ``body``, ``lung_right``, ``lung_left``, ``vessel``,
    ``outside``. The lungs stop two slices before each end so the body closes around them.
    """
    h, w, d = shape
    x, y, z = np.meshgrid(np.arange(h), np.arange(w), np.arange(d), indexing="ij")
    cx, cy = (h - 1) / 2, (w - 1) / 2
    body = ((x - cx) / (0.46 * h)) ** 2 + ((y - cy) / (0.42 * w)) ** 2 <= 1.0
    zin = (z >= 2) & (z < d - 2)
    lung_r = (((x - 0.3 * h) / (0.12 * h)) ** 2 + ((y - cy) / (0.26 * w)) ** 2 <= 1.0) & zin
    lung_l = (((x - 0.7 * h) / (0.12 * h)) ** 2 + ((y - cy) / (0.26 * w)) ** 2 <= 1.0) & zin
    vessel = ((x - 0.7 * h) ** 2 + (y - cy - 0.1 * w) ** 2 <= 1.5**2) & lung_l
    hu = np.full(shape, -1000.0, dtype=np.float32)
    hu[body] = 40.0
    hu[lung_r | lung_l] = -850.0
    hu[vessel] = 40.0
    rng = np.random.default_rng(seed)
    hu[body] += rng.normal(0.0, noise, int(body.sum())).astype(np.float32)
    masks = {"body": body, "lung_right": lung_r, "lung_left": lung_l, "vessel": vessel, "outside": ~body}
    return hu, masks


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * float((a & b).sum()) / max(float(a.sum() + b.sum()), 1.0)


TEST_CASES = [
    # (phantom shape, spacing, closing_mm)
    [(48, 48, 16), (1.0, 1.0, 2.5), 3.0],
    [(48, 48, 16), (0.8, 0.8, 5.0), 0.0],
    [(41, 47, 9), (0.7, 0.7, 5.0), 1.5],  # odd sizes, very thick slices
]


class TestLungMask(unittest.TestCase):
    @parameterized.expand(TEST_CASES)
    def test_both_lungs_no_outside_air(self, shape, spacing, closing_mm):
        hu, truth = make_chest_phantom(shape)
        mask = lung_mask(hu, spacing, closing_mm=closing_mm)
        self.assertEqual(mask.shape, hu.shape)
        self.assertEqual(mask.dtype, bool)
        self.assertFalse(np.any(mask & truth["outside"]))
        lungs = truth["lung_right"] | truth["lung_left"]
        self.assertGreater(dice(mask, lungs), 0.95)
        for side in ("lung_right", "lung_left"):
            self.assertGreater((mask & truth[side]).sum() / truth[side].sum(), 0.97)
        # the vessel inside the lung is filled in (slice-wise hole filling)
        self.assertTrue(np.all(mask[truth["vessel"]]))
        self.assertEqual(ndimage.label(mask)[1], 2)

    def test_body_mask(self):
        hu, truth = make_chest_phantom()
        body = body_mask(hu)
        self.assertGreater(dice(body, truth["body"]), 0.95)
        self.assertTrue(np.all(body[truth["lung_right"] | truth["lung_left"]]))
        self.assertFalse(body[0, 0, 0])
        self.assertFalse(np.any(body_mask(np.full((8, 8, 3), -1000.0))))
        self.assertGreater(dice(body_mask(hu, stride=1, opening_iterations=0), truth["body"]), 0.97)

    def test_small_component_dropped(self):
        hu, truth = make_chest_phantom()
        # a small gas pocket (stomach-like) inside the body, far smaller than a lung
        hu[22:25, 3:6, 5:8] = -950.0
        mask = lung_mask(hu, (1.0, 1.0, 2.5))
        self.assertFalse(mask[23, 4, 6])
        self.assertTrue(mask[truth["lung_right"]].mean() > 0.97)

    def test_outside_air_touching_border_removed(self):
        hu, _ = make_chest_phantom()
        body = np.ones(hu.shape, dtype=bool)  # a body mask that wrongly covers the outside air
        mask = lung_mask(hu, (1.0, 1.0, 2.5), body=body, max_components=1)
        self.assertFalse(mask[0, 0, 0])
        self.assertGreater(mask.sum(), 0)

    def test_crop_through_the_airway_keeps_the_lung(self):
        # a half-chest crop cut at the midline, where a bronchus joins the lung to the cut face: before the cut face is
        # walled, the lung touches the volume border and is thrown away as outside air
        hu, truth = make_chest_phantom((64, 48, 16))
        bronchus = np.zeros(hu.shape, dtype=bool)
        bronchus[int(0.3 * 64) : 33, 22:26, 2:-2] = True
        hu[bronchus] = -900.0
        crop = hu[:32]
        self.assertEqual(cut_faces(crop), [(0, -1)])
        self.assertEqual(cut_faces(hu), [])
        mask = lung_mask(crop, (1.0, 1.0, 2.5))
        self.assertEqual(mask.shape, crop.shape)
        self.assertGreater(dice(mask, truth["lung_right"][:32]), 0.9)
        self.assertFalse(np.any(mask & truth["outside"][:32]))

    def test_no_air_returns_empty_and_warns(self):
        hu = np.full((16, 16, 4), 40.0, dtype=np.float32)
        with self.assertLogs("bundle.transforms.lung_mask", level="WARNING"):
            mask = lung_mask(hu, (1.0, 1.0, 1.0))
        self.assertFalse(mask.any())

    def test_fill_and_close_slicewise(self):
        ring = np.zeros((12, 12, 3), dtype=bool)
        ring[2:10, 2:10, 1] = True
        ring[4:8, 4:8, 1] = False
        filled = fill_holes_slicewise(ring)
        self.assertTrue(filled[5, 5, 1])
        self.assertFalse(filled[5, 5, 0])
        notch = np.zeros((20, 20, 2), dtype=bool)
        notch[4:16, 4:16] = True
        notch[9:11, 4:8] = False  # a 2-voxel wide notch from the border
        closed = closing_slicewise(notch, 2.0, (1.0, 1.0, 5.0))
        self.assertTrue(closed[10, 6, 0])
        self.assertFalse(closed[1, 1, 0])
        self.assertTrue(np.array_equal(closing_slicewise(notch, 0.0, (1.0, 1.0, 1.0)), notch))

    def test_closing_is_the_distance_definition(self):
        """The disk structure closes exactly as the per-slice definition: dilate to within ``r`` mm (Euclidean
        distance transform with the spacing), then keep what lies farther than ``r`` mm from the dilation's outside."""

        def reference(mask, r, spacing):
            out = mask.copy()
            for k in range(mask.shape[2]):
                pad = np.pad(mask[:, :, k], 12)
                grown = ndimage.distance_transform_edt(~pad, sampling=spacing[:2]) <= r
                out[:, :, k] |= (ndimage.distance_transform_edt(grown, sampling=spacing[:2]) > r)[12:-12, 12:-12]
            return out

        rng = np.random.default_rng(0)
        cases = [((1.0, 1.0, 5.0), 2.0), ((0.7, 1.3, 2.5), 3.0), ((2.0, 2.0, 2.5), 3.0), ((1.5, 0.6, 1.0), 4.0),
                 ((0.8, 0.8, 1.0), 4.0), ((0.4, 0.2, 1.0), 2.0)]  # 4.0 // 0.8 is 4.0 in floating point, yet 5 * 0.8 == 4.0
        for spacing, r in cases:
            mask = ndimage.binary_dilation(rng.random((30, 26, 4)) > 0.96)
            np.testing.assert_array_equal(closing_slicewise(mask, r, spacing), reference(mask, r, spacing))

    @parameterized.expand(
        [
            [{"hu": np.zeros((4, 4))}],
            [{"hu": np.zeros((0, 4, 4))}],
            [{"spacing": (1.0, 1.0)}],
            [{"spacing": (1.0, 0.0, 1.0)}],
            [{"max_components": 0}],
            [{"min_component_ratio": 1.5}],
            [{"body": np.ones((3, 3, 3), dtype=bool)}],
        ]
    )
    def test_ill_arg(self, override):
        kwargs = {"hu": np.zeros((8, 8, 4)), "spacing": (1.0, 1.0, 1.0)}
        kwargs.update(override)
        with self.assertRaises(ValueError):
            lung_mask(**kwargs)

    def test_envelope_wraps_wall_mass(self):
        hu, truth = make_chest_phantom()
        idx = np.indices(hu.shape)
        # a soft-tissue mass bulging from the lateral wall into the left lung (the lung wraps around it)
        mass = ((idx[0] - 37.5) ** 2 + (idx[1] - 23.5) ** 2 <= 12) & truth["lung_left"] & (idx[2] >= 5) & (idx[2] < 10)
        hu[mass] = 30.0
        lungs = lung_mask(hu, (1.0, 1.0, 2.5), closing_mm=0.0)
        envelope = lung_envelope(lungs)
        self.assertFalse(np.any(lungs & mass))
        self.assertGreater((envelope & mass).sum() / mass.sum(), 0.9)
        self.assertTrue(np.all(envelope[lungs]))
        self.assertFalse(np.any(envelope[22:26, 20:28, 8]))  # the mediastinum between the lungs stays out
        self.assertFalse(np.any(lung_envelope(np.zeros((6, 6, 2), dtype=bool))))

    def test_ill_arg_helpers(self):
        with self.assertRaises(ValueError):
            lung_envelope(np.ones((4, 4, 2), dtype=bool), min_area=-1)
        with self.assertRaises(ValueError):
            lung_envelope(np.ones((4, 4, 2), dtype=bool), lr_axis=2)
        with self.assertRaises(ValueError):
            lung_envelope(np.ones((4, 4), dtype=bool))
        with self.assertRaises(ValueError):
            body_mask(np.zeros((8, 8, 4)), opening_iterations=-1)
        with self.assertRaises(ValueError):
            body_mask(np.zeros((8, 8, 4)), stride=0)
        with self.assertRaises(ValueError):
            closing_slicewise(np.ones((4, 4, 2), dtype=bool), -1.0, (1.0, 1.0, 1.0))
        with self.assertRaises(ValueError):
            fill_holes_slicewise(np.ones((4, 4), dtype=bool))


if __name__ == "__main__":
    unittest.main()
