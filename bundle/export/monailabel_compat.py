"""MONAI Label 0.8.5 on MONAI 1.6.1: keep MONAI Label's ``image_path`` string away from ``Spacingd``.

MONAI Label puts the input's path under ``image_path`` in the data dict. MONAI 1.6.1's ``Spacingd``, for a NIfTI
input, calls ``.update(meta)`` on every key starting with ``"<key>_"`` (meant for ``image_meta_dict``) and fails on
that string (``AttributeError: 'str' object has no attribute 'update'``). ``configs/inference.json`` therefore gives
MONAI Label a ``pre_transforms`` id (which it prefers to ``preprocessing``): the bundle's preprocessing between
:py:class:`StashKeysd` and :py:class:`RestoreKeysd`, which move such entries aside and back. Nothing else uses it.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

from monai.transforms import MapTransform

__all__ = ["StashKeysd", "RestoreKeysd", "STASH_PREFIX"]

STASH_PREFIX = "__stashed__"


class StashKeysd(MapTransform):
    """
    Move the entries whose key starts with ``"<key>_"`` and whose value is not a dict (e.g. ``image_path``) to
    ``STASH_PREFIX + name``.

    Args:
        keys: the image keys whose ``"<key>_*"`` entries are stashed.
    """

    def __init__(self, keys: Any) -> None:
        super().__init__(keys, allow_missing_keys=True)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.keys:
            for name in [k for k in d if isinstance(k, str) and k.startswith(f"{key}_")]:
                if not isinstance(d[name], dict):
                    d[STASH_PREFIX + name] = d.pop(name)
        return d


class RestoreKeysd(MapTransform):
    """Put back what :py:class:`StashKeysd` moved aside (every ``STASH_PREFIX`` entry)."""

    def __init__(self, keys: Any = "image") -> None:
        super().__init__(keys, allow_missing_keys=True)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for name in [k for k in d if isinstance(k, str) and k.startswith(STASH_PREFIX)]:
            d[name[len(STASH_PREFIX) :]] = d.pop(name)
        return d
