"""The Model Zoo's checks on this bundle (bundle.export.zoo), and that each check can fail."""

from __future__ import annotations

import json
import shutil
import unittest
from pathlib import Path
from tempfile import TemporaryDirectory

from bundle.export.zoo import README_HEADINGS, ZOO_CHECKS, verify_zoo_bundle, write_large_files

ROOT = Path(__file__).resolve().parents[2]
STATIC = ("files", "version", "metadata", "large_files", "json_format", "readme")


class TestZooChecksOnBundle(unittest.TestCase):
    def test_all_checks_pass(self):
        results = verify_zoo_bundle(ROOT)  # includes verify_net_in_out and ckpt_export + torch.jit.load
        self.assertEqual(list(results), list(ZOO_CHECKS))


class TestZooChecksFail(unittest.TestCase):
    """A minimal copy of the bundle's static files, broken one way at a time."""

    def setUp(self):
        self.tmp = TemporaryDirectory()
        self.root = Path(self.tmp.name)
        for rel in ("LICENSE", "configs/metadata.json", "configs/inference.json", "docs/README.md",
                    "docs/data_license.txt", "tests/fixtures/meta_schema_20240725.json"):  # fmt: skip
            (self.root / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(ROOT / rel, self.root / rel)
        (self.root / "models").mkdir()
        (self.root / "models/model.pt").write_bytes(b"w" * 10)
        write_large_files(self.root)

    def tearDown(self):
        self.tmp.cleanup()

    def _fails(self, check: str, pattern: str) -> None:
        with self.assertRaisesRegex(ValueError, pattern):
            verify_zoo_bundle(self.root, checks=(check,))

    def test_copy_passes(self):
        self.assertEqual(list(verify_zoo_bundle(self.root, checks=STATIC)), list(STATIC))

    def test_missing_license(self):
        (self.root / "LICENSE").unlink()
        self._fails("files", "LICENSE")

    def test_version_without_changelog(self):
        meta_path = self.root / "configs/metadata.json"
        meta = json.loads(meta_path.read_text())
        meta["version"] = "9.9.9"
        meta_path.write_text(json.dumps(meta, indent=4) + "\n")
        self._fails("version", "9.9.9 has no changelog")

    def test_metadata_schema(self):
        meta_path = self.root / "configs/metadata.json"
        meta = json.loads(meta_path.read_text())
        del meta["required_packages_version"]
        meta_path.write_text(json.dumps(meta, indent=4) + "\n")
        self._fails("metadata", "metadata")

    def test_json_indent(self):
        meta_path = self.root / "configs/metadata.json"
        meta_path.write_text(json.dumps(json.loads(meta_path.read_text()), indent=2) + "\n")
        self._fails("json_format", "configs/metadata.json")

    def test_large_file_unlisted_or_changed(self):
        model = self.root / "models/model.pt"
        model.write_bytes(b"x" * (1024 * 1024 + 1))  # over the 1024 kB limit, not yet listed
        self._fails("large_files", "not in large_files.yml")
        write_large_files(self.root)
        verify_zoo_bundle(self.root, checks=("large_files",))
        model.write_bytes(b"y" * (1024 * 1024 + 1))  # listed, but its md5 changed
        self._fails("large_files", "hash")

    def test_readme_heading(self):
        readme = self.root / "docs/README.md"
        readme.write_text(readme.read_text().replace(README_HEADINGS[-1] + "\n", "# Licence\n"))
        self._fails("readme", "License")

    def test_unknown_check(self):
        with self.assertRaisesRegex(ValueError, "checks must be among"):
            verify_zoo_bundle(self.root, checks=("lint",))


if __name__ == "__main__":
    unittest.main()
