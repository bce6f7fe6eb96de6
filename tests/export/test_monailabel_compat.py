"""The transforms that keep keys through MONAI Label's pre-transform rewriting (bundle.export.monailabel_compat)."""

from __future__ import annotations

import unittest


from bundle.export.monailabel_compat import STASH_PREFIX, RestoreKeysd, StashKeysd


class TestCompat(unittest.TestCase):
    def test_stash_restore(self):
        data = {"image": 1, "image_path": "/x.nii.gz", "image_meta_dict": {"a": 1}, "label": 2}
        stashed = StashKeysd("image")(data)
        self.assertNotIn("image_path", stashed)
        self.assertEqual(stashed[STASH_PREFIX + "image_path"], "/x.nii.gz")
        self.assertEqual(stashed["image_meta_dict"], {"a": 1})  # dicts stay: Spacingd may update them
        self.assertEqual(RestoreKeysd()(stashed), data)


if __name__ == "__main__":
    unittest.main()
