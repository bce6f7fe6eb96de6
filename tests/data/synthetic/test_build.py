from __future__ import annotations

import json
import tempfile
import unittest
import warnings
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import nibabel as nib
import numpy as np
from parameterized import parameterized

from bundle.data.datalist import load_datalist
from bundle.data.synthetic.build import build_dataset, check_host_split, default_hosts
from bundle.data.synthetic.hosts import list_hosts
from tests.data.synthetic.phantom_fixtures import AFFINE, build_phantom_dataset, phantom_with_tumour


class TestHostSplit(unittest.TestCase):
    @parameterized.expand(
        [
            [["lung_dx_a0001:right"], ["lung_dx_a0001:left"], True],
            [["mni152"], ["colin27"], True],
            [["lung_dx_a0001:right"], ["lung_dx_a0001:right"], False],
            [["lung_dx_a0001"], ["lung_dx_a0001:left"], False],
            [["mni152", "colin27:right"], ["colin27"], False],
            [[], ["colin27"], False],
            [["lung_dx_a0001:right", "lidc_idri_0001:right"], ["lung_dx_a0001:left"], True],
            [["lung_dx_a0001:right", "lidc_idri_0001"], ["lidc_idri_0001:left"], False],
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

    def test_default_hosts_mr_fallback_warns(self):
        def hosts(*ids):
            return [SimpleNamespace(host_id=h, installed=True, modality="MR") for h in ids]

        with mock.patch("bundle.data.synthetic.build.list_hosts", return_value=hosts("mni152")):
            with self.assertWarnsRegex(UserWarning, "same head as training"):
                self.assertEqual(default_hosts("mri"), (["mni152:right"], ["mni152:left"]))
        with mock.patch("bundle.data.synthetic.build.list_hosts", return_value=hosts("mni152", "colin27")):
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                self.assertEqual(default_hosts("mri"), (["mni152"], ["colin27"]))


class TestBuildDataset(unittest.TestCase):
    """build_dataset end to end on phantom hosts (the real hosts take minutes)."""

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.out = Path(self.tmp.name) / "synth"
        self.hu, self.blob = phantom_with_tumour()

    def tearDown(self):
        self.tmp.cleanup()

    def test_build_and_load(self):
        path = build_phantom_dataset(self.out)
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
        again = json.loads(build_phantom_dataset(Path(self.tmp.name) / "again").read_text())
        self.assertEqual([e["lesions"] for e in again["training"]], [e["lesions"] for e in data["training"]])

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

    def test_lidc_shapes_split_by_patient(self):
        """With a shape library, training cases draw nodules of training patients only, validation cases of
        validation patients only, LIDC-IDRI-0001 (a host) never; the datalist states the split."""
        import sqlite3

        from bundle.data.lidc import build_library
        from tests.data.test_lidc import SCHEMA, _rectangle

        db = self.out.parent / "lidc.sqlite"
        con = sqlite3.connect(db)
        con.executescript(SCHEMA)
        for scan, patient in ((1, "LIDC-IDRI-0001"), (2, "LIDC-IDRI-0002"), (3, "LIDC-IDRI-0003")):
            con.execute("INSERT INTO scans (id, patient_id, slice_thickness, pixel_spacing) VALUES (?, ?, 1.25, 0.7)",
                        (scan, patient))  # fmt: skip
            con.executemany("INSERT INTO zvals (scan_id, val) VALUES (?, ?)", [(scan, 1.25 * k) for k in range(6)])
            con.execute("INSERT INTO annotations (id, scan_id, texture) VALUES (?, ?, 5)", (scan, scan))
            contours = [(scan, 1.25 * k, _rectangle(10, 18, 10, 18)) for k in (1, 2, 3)]
            con.executemany("INSERT INTO contours (annotation_id, inclusion, image_z_position, coords) "
                            "VALUES (?, 1, ?, ?)", contours)  # fmt: skip
        con.commit()
        con.close()
        build_library(db, self.out.parent / "shapes")
        path = build_phantom_dataset(self.out, shape_library=self.out.parent / "shapes", library_share=1.0)
        datalist = json.loads(Path(path).read_text())
        split = datalist["shape_library"]
        self.assertEqual((split["training_patients"], split["validation_patients"]), (1, 1))
        self.assertEqual(split["excluded_patients"], ["LIDC-IDRI-0001"])
        for part, patient in (("training", "LIDC-IDRI-0003"), ("validation", "LIDC-IDRI-0002")):
            lesions = [r for case in datalist[part] for r in case["lesions"] if r.get("shape") == "lidc"]
            self.assertGreater(len(lesions), 0, part)
            self.assertEqual({r["lidc_patient"] for r in lesions}, {patient})

    def test_real_lesion_outlined_by_readers(self):
        """A host half whose real lesion readers outlined: it is labelled in every case of that half, in training as
        well, and its record names it (shape ``lidc``, the host's note)."""
        path = build_phantom_dataset(self.out, outlined=True, train_hosts=["phantom:left"], val_hosts=["phantom:right"])
        for e in load_datalist(path, "training"):
            real = [r for r in e["lesions"] if r["synthetic"] is False]
            self.assertEqual([(r["shape"], r["note"]) for r in real], [("lidc", "outlined by readers")])
            self.assertTrue(np.all(np.asarray(nib.load(e["label"]).dataobj)[self.blob] == 1))
        self.assertFalse(any(r["synthetic"] is False for r in load_datalist(path, "validation")[0]["lesions"]))

    def test_existing_datalist_refused(self):
        build_phantom_dataset(self.out)
        with self.assertRaisesRegex(ValueError, "overwrite"):
            build_phantom_dataset(self.out)


if __name__ == "__main__":
    unittest.main()
