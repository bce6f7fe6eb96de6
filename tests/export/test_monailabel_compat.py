"""The transforms that keep keys through MONAI Label's pre-transform rewriting (bundle.export.monailabel_compat)."""

from __future__ import annotations

import unittest

import numpy as np
import torch
from monai.data import MetaTensor

from bundle.export.monailabel_compat import STASH_PREFIX, LesionLabelMapd, RestoreKeysd, StashKeysd
from bundle.lesions.extract import extract_lesions

AFFINE = torch.diag(torch.tensor([1.0, 1.0, 2.5, 1.0]))


class TestCompat(unittest.TestCase):
    def test_stash_restore(self):
        data = {"image": 1, "image_path": "/x.nii.gz", "image_meta_dict": {"a": 1}, "label": 2}
        stashed = StashKeysd("image")(data)
        self.assertNotIn("image_path", stashed)
        self.assertEqual(stashed[STASH_PREFIX + "image_path"], "/x.nii.gz")
        self.assertEqual(stashed["image_meta_dict"], {"a": 1})  # dicts stay: Spacingd may update them
        self.assertEqual(RestoreKeysd()(stashed), data)


class TestLesionLabelMap(unittest.TestCase):
    """MONAI Label's postprocessing gives the command line's lesion label map: same call, same mask."""

    def setUp(self):
        shape = (32, 32, 12)
        fg = torch.full(shape, -6.0)
        fg[4:10, 4:10, 2:6] = 6.0  # lesion A, inside the candidate mask
        fg[20:28, 20:28, 4:8] = 6.0  # lesion B, outside it
        self.logits = MetaTensor(torch.stack([-fg, fg]), affine=AFFINE)
        self.mask = torch.zeros((1, *shape))
        self.mask[0, :16, :16] = 1.0
        self.kwargs = {"threshold": 0.5, "min_diameter_mm": 3.0}

    def test_same_as_extract_lesions_with_the_mask(self):
        out = LesionLabelMapd(lesion_kwargs=self.kwargs)({"pred": self.logits, "lung_mask": self.mask})
        prob = torch.softmax(self.logits.as_tensor(), 0)[1].numpy()
        lesions, labels = extract_lesions(prob, AFFINE, self.kwargs, mask=self.mask[0].numpy() > 0.5, return_label_map=True)
        self.assertEqual(len(lesions), 1)  # lesion B is centred outside the mask: dropped, as on the command line
        self.assertEqual(tuple(out["pred"].shape), (1, 32, 32, 12))
        np.testing.assert_array_equal(out["pred"][0].numpy(), labels)
        torch.testing.assert_close(out["pred"].affine, self.logits.affine)
        self.assertEqual(out["pred_lesions"], lesions)
        unmasked = LesionLabelMapd(mask_key=None, lesion_kwargs=self.kwargs)({"pred": self.logits})
        self.assertEqual(sorted(np.unique(unmasked["pred"].numpy()).tolist()), [0.0, 1.0, 2.0])

    def test_back_to_a_flipped_input_grid(self):
        # the input was LPS-like (x and y flipped, as a DICOM series or MONAI Label's NIfTI of one); the preprocessing
        # turned it to RAS. The map must come back on the input's grid: mirrored in x and y, not left in RAS order.
        flipped = torch.tensor([[-1.0, 0, 0, 31.0], [0, -1.0, 0, 31.0], [0, 0, 2.5, 0], [0, 0, 0, 1]])
        image = MetaTensor(torch.zeros((1, 32, 32, 12)), affine=AFFINE,
                           meta={"original_affine": flipped, "spatial_shape": (32, 32, 12)})  # fmt: skip
        out = LesionLabelMapd(mask_key=None, lesion_kwargs=self.kwargs)({"pred": self.logits, "image": image})
        on_ras = LesionLabelMapd(mask_key=None, lesion_kwargs=self.kwargs)({"pred": self.logits})["pred"][0].numpy()
        np.testing.assert_array_equal(out["pred"][0].numpy(), on_ras[::-1, ::-1])
        torch.testing.assert_close(out["pred"].affine.float(), flipped)
        centre = np.argwhere(out["pred"][0].numpy() == 1).mean(0)
        np.testing.assert_allclose(out["pred_lesions"][0]["center_voxel"], centre, atol=0.01)

    def test_boxes_pass_and_bad_logits(self):
        boxes = {"pred": [{"box": [1, 2, 3, 4, 5, 6]}]}
        self.assertEqual(LesionLabelMapd()(boxes), boxes)
        with self.assertRaisesRegex(ValueError, "channel-first logits"):
            LesionLabelMapd()({"pred": torch.zeros(4, 4)})


if __name__ == "__main__":
    unittest.main()
