"""Tests of the bundle configs; :func:`config_commands` lists the config files each documented command loads."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# a config list as written in a command: ['configs/train.json','configs/evaluate.json', ...] (may span lines)
CONFIG_LIST = re.compile(r"\[\s*'((?:configs|bundle)/[^']+\.json)'(?:\s*,\s*'[^']+\.json')*\s*\]")
# a single config file: --config_file configs/inference.json
CONFIG_FILE = re.compile(r"--config_file\s+((?:configs|bundle)/\S+?\.json)\b")


def documents() -> list[Path]:
    """README, docs, scripts and the bundle's sources: everything that writes out commands."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "scripts").glob("*.py")),
            *sorted((ROOT / "bundle").rglob("*.py"))]


def config_commands() -> list[tuple[str, list[str]]]:
    """Every config list or single ``--config_file`` in :func:`documents`: (document, files in load order)."""
    found = []
    for doc in documents():
        text = doc.read_text()
        name = doc.relative_to(ROOT).as_posix()
        for match in CONFIG_LIST.finditer(text):
            found.append((name, re.findall(r"'([^']+\.json)'", match.group(0))))
        for match in CONFIG_FILE.finditer(text):
            found.append((name, [match.group(1)]))
    return found
