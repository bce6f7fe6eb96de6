from __future__ import annotations

import json
import tempfile
import unittest
from pathlib import Path

from bundle.data.datalist import load_datalist, write_datalist


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


if __name__ == "__main__":
    unittest.main()
