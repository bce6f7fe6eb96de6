"""The overrides (``configs/variants/*.json`` and the experiments' ``bundle/experiments/configs/*.json``) each name in
their first key, ``layers_on``, the config files they are layered on, in order (nothing reads it at run time).

Checked here: the key is first and names existing files; every id the override sets exists in those files (or is a
new id the override itself refers to), so it overrides what it means to; the override parses on top of them; and
every command in the docs, README and scripts that uses an override loads ``layers_on`` before it, in that order.
"""

from __future__ import annotations

import json
import unittest
from pathlib import Path

from monai.bundle import ConfigParser
from parameterized import parameterized

from tests.configs import ROOT, config_commands

OVERRIDES = sorted((ROOT / "configs" / "variants").glob("*.json")) + sorted(
    (ROOT / "bundle" / "experiments" / "configs").glob("*.json")
)


def relative(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


class TestLayering(unittest.TestCase):
    def test_there_are_overrides(self):
        names = {relative(p) for p in OVERRIDES}
        self.assertIn("configs/variants/nodule_mode.json", names)
        self.assertIn("bundle/experiments/configs/hard_negatives.json", names)

    @parameterized.expand([(relative(p), p) for p in OVERRIDES])
    def test_override_names_what_it_layers_on(self, name, path):
        config = json.loads(path.read_text())
        self.assertEqual(next(iter(config)), "layers_on", f"{name}: the first key must be layers_on")
        base_files = config["layers_on"]
        self.assertTrue(base_files, name)
        for f in base_files:
            self.assertTrue((ROOT / f).is_file(), f"{name}: {f} does not exist")
        base = ConfigParser()
        base.read_config([str(ROOT / f) for f in base_files])
        text = path.read_text()
        for key in config:
            if key == "layers_on":
                continue
            parent = key.rsplit("#", 1)[0] if "#" in key else None
            if parent is not None:
                self.assertIn(parent, base, f"{name}: {key} overrides nothing in {base_files}")
            elif key not in base:  # a new id must be one the override itself uses
                self.assertIn(f"@{key}", text, f"{name}: {key} is neither in {base_files} nor used")
        layered = ConfigParser()
        layered.read_config([str(ROOT / f) for f in base_files] + [str(path)])
        layered["bundle_root"] = str(ROOT)
        for key in config:
            if key != "layers_on":
                layered.get_parsed_content(key)

    def test_commands_load_layers_on_first(self):
        layers = {relative(p): json.loads(p.read_text())["layers_on"] for p in OVERRIDES}
        checked = set()
        for doc, files in config_commands():
            for i, f in enumerate(files):
                if f not in layers:
                    continue
                checked.add(f)
                before = iter(files[:i])
                # layers_on, in its order, among the files loaded before the override
                self.assertTrue(all(any(b == need for b in before) for need in layers[f]),
                                f"{doc}: {files} loads {f} without {layers[f]} before it")
        # the documented overrides: every variant has a command somewhere
        for name in layers:
            if name.startswith("configs/variants/"):
                self.assertIn(name, checked, f"no command in the docs uses {name}")


if __name__ == "__main__":
    unittest.main()
