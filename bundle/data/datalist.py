"""The bundle's decathlon-style datalist: write it and read it back.

The datalist (``datalist.json``) is MONAI's decathlon format with extra keys::

    {"name", "description", "modality", "labels", "hosts": {host_id: {...}}, "split",
     "training": [{"image", "label", "host", "lesions": [...], "variation": {...}, "seed": [...]}],
     "validation": [...]}

Paths in the file are relative to it; :py:func:`load_datalist` returns absolute ones. The synthetic-lesion data
sets (:py:mod:`bundle.data.synthetic.build`) and the converters of real data sets
(:py:mod:`bundle.data.converters`) write it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

__all__ = ["write_datalist", "load_datalist"]

_SPLITS = ("training", "validation")


def write_datalist(path: str | os.PathLike, datalist: dict) -> Path:
    """Write a datalist JSON atomically, with ``image``/``label`` paths made relative to the file's folder.

    Args:
        path: destination ``.json`` file.
        datalist: dict with at least one of ``training``/``validation`` (lists of dicts with ``image``).

    Returns:
        the written path.

    Raises:
        ValueError: when ``datalist`` has neither ``training`` nor ``validation`` list.
    """
    path = Path(path)
    if not any(isinstance(datalist.get(k), list) for k in _SPLITS):
        raise ValueError(f"datalist must hold a 'training' or 'validation' list, got keys {sorted(datalist)}.")
    out = dict(datalist)
    root = path.parent.resolve()
    for key in _SPLITS:
        if key not in out:
            continue
        entries = []
        for entry in out[key]:
            entry = dict(entry)
            for k in ("image", "label"):
                if k in entry and Path(entry[k]).is_absolute():
                    entry[k] = os.path.relpath(Path(entry[k]).resolve(), root)
            entries.append(entry)
        out[key] = entries
    # imported here: bundle.io.atomic imports MONAI, which dataset tools reading a datalist need not pay for
    from bundle.io.atomic import atomic_write_text

    atomic_write_text(path, json.dumps(out, indent=1))
    return path


def load_datalist(
    path: str | os.PathLike, key: str = "training", required_keys: Sequence[str] = ("image", "label")
) -> list[dict]:
    """Read one list of a decathlon-style datalist with absolute paths, checking every entry.

    Paths are resolved against the datalist's folder exactly as ``monai.data.load_decathlon_datalist`` does for
    ``image``/``label`` (re-implemented in a few lines so that dataset tools do not pay MONAI's import time).

    Args:
        path: the datalist ``.json``.
        key: which list, e.g. ``"training"`` or ``"validation"``. Defaults to ``"training"``.
        required_keys: keys every entry must have, each pointing to an existing file.
            Defaults to ("image", "label").

    Returns:
        list of entry dicts with absolute ``image``/``label`` paths.

    Raises:
        ValueError: when the file is missing or not JSON, ``key`` is absent or not a list, or an entry is not a
            dict, misses a required key or points to a file that does not exist (the message names the file and
            the entry).
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"datalist file {path} does not exist.")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"datalist file {path} is not valid JSON: {e}.") from e
    if not isinstance(data, dict) or key not in data:
        keys = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise ValueError(f"datalist file {path} has no list {key!r}; available keys: {keys}.")
    if not isinstance(data[key], list):
        raise ValueError(f"datalist file {path}: {key!r} must be a list, got {type(data[key]).__name__}.")
    entries = []
    for i, raw in enumerate(data[key]):
        if not isinstance(raw, dict):
            raise ValueError(f"datalist file {path}: {key} entry {i} must be a dict, got {type(raw).__name__}.")
        entry = dict(raw)
        for k in ("image", "label"):
            if isinstance(entry.get(k), str):
                entry[k] = os.path.normpath(os.path.join(path.parent.resolve(), entry[k]))
        name = entry.get("case", entry.get("image", f"#{i}"))
        for k in required_keys:
            if k not in entry:
                raise ValueError(f"datalist file {path}: {key} entry {i} ({name}) has no {k!r} key.")
            if not Path(entry[k]).exists():
                raise ValueError(f"datalist file {path}: {key} entry {i} ({name}) {k} path does not exist: {entry[k]}.")
        entries.append(entry)
    return entries
