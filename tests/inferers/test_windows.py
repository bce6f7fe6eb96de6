from __future__ import annotations

import unittest

import numpy as np
import torch
from parameterized import parameterized

from bundle.inferers.windows import crop_window, grid_windows, lesion_windows


class TestWindows(unittest.TestCase):
    def test_crop_inside_shifted_and_padded(self):
        vol = torch.arange(10.0 * 6).reshape(1, 10, 6)
        w, start = crop_window(vol, (5.0, 3.0), (4, 4))
        self.assertEqual(start, (3, 1))
        torch.testing.assert_close(w, vol[:, 3:7, 1:5])
        w, start = crop_window(vol, (0.0, 6.0), (4, 4))  # shifted back inside
        self.assertEqual(start, (0, 2))
        w, start = crop_window(vol, (5.0, 3.0), (4, 8), pad_value=-1.0)  # axis 1 smaller than the roi: centred pad
        self.assertEqual(start, (3, -1))
        torch.testing.assert_close(w[0, :, 1:7], vol[0, 3:7, :])
        self.assertTrue(bool((w[0, :, 0] == -1).all() and (w[0, :, 7] == -1).all()))

    def test_lesion_windows(self):
        image = torch.rand(1, 20, 20, 8)
        label = torch.zeros(1, 20, 20, 8)
        label[0, 2:4, 2:4, 2:4] = 1
        label[0, 15:18, 14:17, 5:7] = 1
        windows, masks, info = lesion_windows(image, label, (8, 8, 4))
        self.assertEqual((tuple(windows.shape), tuple(masks.shape)), ((2, 1, 8, 8, 4), (2, 1, 8, 8, 4)))
        self.assertEqual([i["n_voxels"] for i in info], [8, 18])
        self.assertEqual(info[0]["start"], [0, 0, 0])  # centre 2.5: round(0.5) = 0
        torch.testing.assert_close(windows[1], image[:, 12:20, 11:19, 4:8])  # centre (16, 15, 5.5)
        self.assertEqual(int(masks[1].sum()), 18)

    def test_grid_windows_cover_and_flag(self):
        image = torch.rand(1, 10, 8)
        label = torch.zeros(1, 10, 8)
        label[0, 9, 7] = 1
        windows, positive, starts = grid_windows(image, label, (4, 4))
        self.assertEqual(starts, [(0, 0), (0, 4), (4, 0), (4, 4), (6, 0), (6, 4)])  # last row aligned to the end
        np.testing.assert_array_equal(positive, [False, False, False, False, False, True])
        torch.testing.assert_close(windows[5], image[:, 6:10, 4:8])

    @parameterized.expand([
        [lambda: crop_window(torch.zeros(1, 4, 4), (1.0,), (2, 2)), "center"],
        [lambda: crop_window(torch.zeros(4, 4), (1.0, 1.0), (2, 2)), "volume must be"],
        [lambda: lesion_windows(torch.zeros(1, 4, 4), torch.zeros(1, 4, 5), (2, 2)), "label must be"],
    ])
    def test_ill_arg(self, call, message):
        with self.assertRaisesRegex(ValueError, message):
            call()


if __name__ == "__main__":
    unittest.main()


class TestSlidingWindowSlices(unittest.TestCase):
    def test_monai_grid(self):
        from bundle.inferers.windows import sliding_window_slices

        slices = sliding_window_slices((40, 40, 20), (32, 32, 16), 0.25)
        starts = sorted(tuple(s.start for s in w) for w in slices)
        self.assertEqual(starts, sorted((x, y, z) for x in (0, 8) for y in (0, 8) for z in (0, 4)))
        self.assertTrue(all(s.stop - s.start == r for w in slices for s, r in zip(w, (32, 32, 16))))
