"""Head CT host ``cranium`` (Debian invesalius-examples) on a tiny fake ``Cranium.inv3``, plus one real-file test."""

from __future__ import annotations

import io
import json
import plistlib
import tarfile
import tempfile
import unittest
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from bundle.data.synthetic.build import build_dataset, check_host_split, default_hosts
from bundle.data.synthetic.head_ct import CRANIUM_PATH, read_inv3
from bundle.data.synthetic.host_context import prepare_host
from bundle.data.synthetic.host_masks import host_region_mask
from bundle.data.synthetic.hosts import list_hosts, load_host
from bundle.data.synthetic.lesion_params import CT_BRAIN_KINDS, sample_lesion_params
from bundle.data.synthetic.noise import vary_host
from bundle.data.synthetic.synthesis import insert_lesion, synthesize_case

SHAPE_ZYX = (16, 40, 44)
SPACING_XYZ = (2.0, 2.0, 3.0)
MARKER_ZYX = (1, 2, 3)  # one air voxel set to -500 HU, to check the axis order


def _phantom() -> np.ndarray:
    """Synthetic head as InVesalius stores it, (z, y, x) int16: scalp 40 HU, skull 1000 HU, brain 35 HU."""
    zz, yy, xx = np.meshgrid(*[(np.arange(n) - (n - 1) / 2.0) * s for n, s in zip(SHAPE_ZYX, SPACING_XYZ[::-1])],
                             indexing="ij")

    def inside(rx: float, ry: float, rz: float) -> np.ndarray:
        return (xx / rx) ** 2 + (yy / ry) ** 2 + (zz / rz) ** 2 <= 1.0

    vol = np.full(SHAPE_ZYX, -1024.0)
    vol[inside(40, 37, 23)] = 40.0
    vol[inside(36, 33, 20)] = 1000.0
    vol[inside(31, 28, 16)] = 35.0
    vol += np.random.default_rng(0).normal(0.0, 3.0, SHAPE_ZYX) * (vol > -1000)
    vol[MARKER_ZYX] = -500.0
    return np.round(vol).astype(np.int16)


def _write_inv3(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(f"tmpabc/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _members(matrix: np.ndarray | None = None) -> dict[str, bytes]:
    matrix = _phantom() if matrix is None else matrix
    plist = {
        "matrix": {"dtype": "int16", "filename": "matrix.dat", "shape": list(SHAPE_ZYX)},
        "spacing": list(SPACING_XYZ), "modality": "CT", "orientation": 1, "name": "fake head",
    }
    return {"main.plist": plistlib.dumps(plist), "matrix.dat": matrix.tobytes()}


class TestHeadCT(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.root = Path(cls.tmp.name)
        cls.path = _write_inv3(cls.root / "Cranium.inv3", _members())

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def test_listed(self):
        ids = {h.host_id: h for h in list_hosts()}
        for hid in ("cranium", "cranium:right", "cranium:left"):
            self.assertEqual((ids[hid].modality, ids[hid].organ), ("CT", "brain"))
        self.assertEqual(default_hosts("ct_head", available=("cranium",)), (["cranium:right"], ["cranium:left"]))
        with self.assertRaises(ValueError):
            check_host_split(["cranium"], ["cranium:left"])
        check_host_split(["cranium:right"], ["cranium:left"])

    def test_load_axes_affine(self):
        vol, affine, meta = load_host("cranium", path=self.path)
        self.assertEqual(vol.shape, SHAPE_ZYX[::-1])  # (H, W, D) = (x, y, z)
        self.assertEqual(vol[MARKER_ZYX[::-1]], -500.0)
        np.testing.assert_allclose(np.diag(affine)[:3], [-2.0, 2.0, 3.0])  # x to the left, y anterior, z superior
        np.testing.assert_allclose(affine @ np.append((np.asarray(vol.shape) - 1) / 2.0, 1.0), [0, 0, 0, 1])
        self.assertEqual((meta["modality"], meta["organ"]), ("CT", "brain"))
        np.testing.assert_allclose(meta["spacing"], [2.0, 2.0, 3.0])
        self.assertNotIn("known_lesion_roi", meta)  # the real scan's ROI does not apply to another file

    def test_hemisphere_split(self):
        whole, wa, _ = load_host("cranium", path=self.path)
        right, ra, rm = load_host("cranium:right", path=self.path)
        left, la, lm = load_host("cranium:left", path=self.path)
        (rlo, rhi), (llo, lhi) = rm["crop_voxel"], lm["crop_voxel"]
        self.assertGreaterEqual(llo[0] - rhi[0], 2 * int(np.ceil(5.0 / 2.0)))  # 5 mm on each side of the midline
        self.assertEqual((rm["side"], lm["side"], rm["subject"]), ("right", "left", lm["subject"]))
        np.testing.assert_array_equal(right, whole[rlo[0] : rhi[0]])
        np.testing.assert_array_equal(left, whole[llo[0] : lhi[0]])
        x_right = (ra @ [right.shape[0] - 1, 0, 0, 1])[0]  # most-left voxel of the right half
        x_left = (la @ [0, 0, 0, 1])[0]  # most-right voxel of the left half
        self.assertGreater(x_right, x_left)  # RAS: +x is the patient's right

    def test_brain_mask_off_skull(self):
        vol, affine, meta = load_host("cranium", path=self.path)
        brain = host_region_mask(vol, meta)
        self.assertGreater(brain.sum(), 200)
        self.assertTrue(np.all(np.abs(vol[brain] - 35.0) < 20.0))
        dist = ndimage.distance_transform_edt(vol <= 200, sampling=meta["spacing"])
        self.assertGreaterEqual(dist[brain].min(), 4.0)
        right, _, rm = load_host("cranium:right", path=self.path)
        (lo, hi) = rm["crop_voxel"]
        np.testing.assert_array_equal(host_region_mask(right, rm), brain[lo[0] : hi[0]])

    def _ctx(self):
        vol, affine, meta = load_host("cranium", path=self.path)
        brain = host_region_mask(vol, meta)
        return vol, prepare_host(vol, affine, "CT", brain, host_id="fake", organ=meta["organ"])

    def test_lesion_contrast_and_mask(self):
        vol, ctx = self._ctx()
        self.assertEqual(ctx.organ, "brain")
        self.assertLess(ctx.noise_std, 8.0)
        for kind, sign in (("hyperdense", 1.0), ("hypodense", -1.0)):
            image, label = vol.copy(), np.zeros(vol.shape, np.uint8)
            rec = insert_lesion(ctx, image, label, np.random.default_rng(1), kind, "spherical", "deep", 10.0)
            self.assertIsNotNone(rec)
            lab = label > 0
            self.assertTrue(lab.any())
            self.assertTrue(np.all(ctx.region[lab]), kind)  # a deep lesion's label stays in the brain mask
            self.assertEqual(np.sign(rec["contrast_hu"]), sign)
            delta = float(image[lab].mean() - vol[lab].mean())
            self.assertGreater(sign * delta, 4.0 if sign < 0 else 15.0, kind)
            np.testing.assert_array_equal(image[~ndimage.binary_dilation(lab, iterations=4)],
                                          vol[~ndimage.binary_dilation(lab, iterations=4)])
        with self.assertRaises(ValueError):
            insert_lesion(ctx, vol.copy(), np.zeros(vol.shape, np.uint8), np.random.default_rng(1), "ggo",
                          "spherical", "deep", 10.0)

    def test_sampling_and_determinism(self):
        draws = [sample_lesion_params(np.random.default_rng(i), "CT", organ="brain") for i in range(60)]
        self.assertEqual({d["kind"] for d in draws}, set(CT_BRAIN_KINDS))
        self.assertEqual({d["location"] for d in draws}, {"deep", "border"})
        with self.assertRaises(ValueError):
            sample_lesion_params(np.random.default_rng(0), "MR", organ="lungs")
        vol, ctx = self._ctx()
        a = synthesize_case(ctx, vol, np.random.default_rng(7), 2, (4.0, 8.0))
        b = synthesize_case(ctx, vol, np.random.default_rng(7), 2, (4.0, 8.0))
        c = synthesize_case(ctx, vol, np.random.default_rng(8), 2, (4.0, 8.0))
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
        self.assertEqual(a[2], b[2])
        self.assertFalse(np.array_equal(a[0], c[0]))
        self.assertTrue(all(r["kind"] in CT_BRAIN_KINDS for r in a[2]))

    def test_vary_host_head_noise(self):
        vol, _ = self._ctx()
        for seed in range(6):
            _, params = vary_host(vol, "CT", np.random.default_rng(seed), ct_noise_std=(1.0, 5.0))
            self.assertTrue(1.0 <= params.get("noise_std", 1.0) <= 5.0)

    def test_build_dataset(self):
        out = self.root / "set"
        kwargs = dict(modality="ct_head", n_train=1, n_val=1, lesions_per_case=(1, 2), seed=3,
                      diameter_range_mm=(4.0, 8.0), progress=False, host_paths={"cranium": str(self.path)})
        path = build_dataset(out, **kwargs)
        data = json.loads(path.read_text())
        self.assertEqual((data["modality"]["0"], data["organ"]), ("CT", "brain"))
        self.assertEqual(data["split"]["training_hosts"], ["cranium:right"])
        self.assertEqual(data["split"]["validation_hosts"], ["cranium:left"])
        first = nib.load(out / data["training"][0]["image"]).get_fdata()
        build_dataset(out, overwrite=True, **kwargs)
        np.testing.assert_array_equal(first, nib.load(out / data["training"][0]["image"]).get_fdata())

    def test_bad_files(self):
        good = self.path.read_bytes()
        cases = {
            "truncated.inv3": lambda p: p.write_bytes(good[: len(good) // 2]),
            "no_matrix.inv3": lambda p: _write_inv3(p, {"main.plist": _members()["main.plist"]}),
            "short.inv3": lambda p: _write_inv3(p, {**_members(), "matrix.dat": _phantom().tobytes()[:-2]}),
            "bad_plist.inv3": lambda p: _write_inv3(p, {**_members(), "main.plist": b"not a plist"}),
        }
        for name, make in cases.items():
            path = self.root / name
            make(path)
            with self.assertRaises(ValueError) as err:
                read_inv3(path)
            self.assertIn(str(path), str(err.exception))
        with self.assertRaises(ValueError) as err:
            load_host("cranium:left", path=self.root / "short.inv3")
        self.assertIn("matrix.dat", str(err.exception))
        with self.assertRaises(FileNotFoundError) as err:
            load_host("cranium", path=self.root / "missing.inv3")
        self.assertIn("missing.inv3", str(err.exception))
        with self.assertRaises(ValueError):
            load_host("mni152", path=self.path)


@unittest.skipUnless(CRANIUM_PATH.is_file(), "Debian invesalius-examples is not installed")
class TestRealCranium(unittest.TestCase):
    def test_real_file(self):
        matrix, plist = read_inv3(CRANIUM_PATH)
        self.assertEqual((matrix.shape, plist["modality"]), ((108, 256, 256), "CT"))
        np.testing.assert_allclose(plist["spacing"], [0.957, 0.957, 1.5], atol=1e-3)
        self.assertEqual((int(matrix.min()), int(matrix.max())), (-1024, 2986))


if __name__ == "__main__":
    unittest.main()
