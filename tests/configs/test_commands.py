"""The documented commands name configs that exist, README's "Common commands" table has a command for every
config file in ``configs/``, and a command whose first config lies in a subfolder of ``configs/`` names the bundle's
``logging.conf`` (MONAI looks for it next to the first config file and otherwise logs nothing)."""

from __future__ import annotations

import re
import unittest

from tests.configs import ROOT, config_commands

# the first config of a command: --config_file configs/x/y.json or --config_file "['configs/x/y.json', ...
FIRST_CONFIG = re.compile(r"--config_file\s+\"?\[?'?(configs/[^'\"\s,\]]+)")


class TestCommands(unittest.TestCase):
    def test_every_named_config_exists(self):
        commands = config_commands()
        self.assertGreater(len(commands), 20)
        for doc, files in commands:
            for f in files:
                self.assertTrue((ROOT / f).is_file(), f"{doc}: {f} does not exist")

    def test_readme_table_lists_every_config(self):
        readme = (ROOT / "README.md").read_text()
        table = readme.split("## Common commands", 1)[1].split("\n## ", 1)[0]
        configs = sorted(p for p in (ROOT / "configs").rglob("*") if p.is_file())
        self.assertIn(ROOT / "configs" / "logging.conf", configs)
        for path in configs:
            self.assertIn(path.relative_to(ROOT).as_posix(), table, "README's Common commands table")

    def test_commands_from_a_subfolder_name_the_logging_file(self):
        checked = 0
        for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
            text = doc.read_text()
            for line in text.splitlines():
                match = FIRST_CONFIG.search(line)
                if not match or match.group(1).count("/") < 2:
                    continue
                checked += 1
                if "$FLAGS" in line:
                    self.assertIn('FLAGS="--meta_file configs/metadata.json --logging_file configs/logging.conf"', text)
                else:
                    self.assertIn("--logging_file configs/logging.conf", line, f"{doc.name}: {line}")
        self.assertGreaterEqual(checked, 5)


if __name__ == "__main__":
    unittest.main()
