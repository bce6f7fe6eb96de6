from __future__ import annotations

import json
import tempfile
import unittest
from pathlib import Path

from monai.bundle import verify_metadata

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT / "tests" / "fixtures" / "meta_schema_20240725.json"
SCHEMA_MD5 = "06954cad2cc5d3784e72077ac76f0fc8"


class TestMetadata(unittest.TestCase):
    def test_schema_offline(self):
        # the schema copy is the published one (same md5 as MONAI's data_config.json pins), so no download happens
        verify_metadata(
            meta_file=str(ROOT / "configs" / "metadata.json"), filepath=str(SCHEMA), hash_val=SCHEMA_MD5
        )

    def test_schema_rejects_missing_required_key(self):
        meta = json.loads((ROOT / "configs" / "metadata.json").read_text())
        del meta["required_packages_version"]
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "metadata.json"
            path.write_text(json.dumps(meta))
            with self.assertRaises(Exception):
                verify_metadata(meta_file=str(path), filepath=str(SCHEMA), hash_val=SCHEMA_MD5)

    def test_version_in_changelog(self):
        meta = json.loads((ROOT / "configs" / "metadata.json").read_text())
        self.assertIn(meta["version"], meta["changelog"])
        # the Model Zoo reads the first input/output names and hard-codes image/pred
        self.assertEqual(next(iter(meta["network_data_format"]["inputs"])), "image")
        self.assertEqual(next(iter(meta["network_data_format"]["outputs"])), "pred")
        self.assertEqual(meta["network_data_format"]["outputs"]["pred"]["channel_def"], {"0": "background", "1": "lesion"})

    def test_versions_match_installed(self):
        import monai
        import numpy
        import torch

        meta = json.loads((ROOT / "configs" / "metadata.json").read_text())
        self.assertEqual(meta["monai_version"], monai.__version__)
        self.assertEqual(meta["numpy_version"], numpy.__version__)
        self.assertEqual(meta["pytorch_version"], torch.__version__.split("+")[0])

    def test_image_classes_state_the_configs_spacing(self):
        # the metadata's description of the input must name the spacing the inference config resamples to
        meta = json.loads((ROOT / "configs" / "metadata.json").read_text())
        pixdim = json.loads((ROOT / "configs" / "inference.json").read_text())["pixdim"]
        spacing = " x ".join(f"{float(v):.1f}" for v in pixdim) + " mm"
        self.assertIn(f"resampled to {spacing}", meta["image_classes"])

    def test_json_four_space_indent(self):
        # the Model Zoo's pre-commit hook formats JSON with 4 spaces and keeps key order
        paths = sorted((ROOT / "configs").rglob("*.json")) + sorted((ROOT / "bundle").rglob("*.json"))
        self.assertIn(ROOT / "configs" / "variants" / "mri_train.json", paths)
        for path in paths:
            text = path.read_text()
            self.assertEqual(text, json.dumps(json.loads(text), indent=4) + "\n", f"{path} is not 4-space formatted")


if __name__ == "__main__":
    unittest.main()
