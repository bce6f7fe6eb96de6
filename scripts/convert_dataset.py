"""Convert a real data set into the bundle's datalist (thin CLI over ``bundle.data.converters``).

Prints a summary (cases converted, cases failed with their reasons) and exits with status 1 when any case
failed or none was converted (after converting all the others). See ``docs/converters.md``.

Examples::

    python -m scripts.convert_dataset lidc --root /data/LIDC-IDRI --output_dir data/lidc --consensus 2
    python -m scripts.convert_dataset isles --root /data/ISLES-2022 --output_dir data/isles --modality dwi
    python -m scripts.convert_dataset decathlon --root /data/Task06_Lung --output_dir data/msd_lung
"""

from __future__ import annotations

import logging
import sys

import fire

from bundle.data.converters import convert_decathlon, convert_isles, convert_lidc
from bundle.io.arguments import int_list


def lidc(
    root: str,
    output_dir: str = "data/lidc",
    consensus: int = 2,
    min_diameter_mm: float = 3.0,
    max_diameter_mm: float = 30.0,
    val_fraction: float = 0.3,
    seed: int = 0,
    stratify_by: str = "largest",
    include_contour: bool = False,
    cluster_distance_mm: float | None = None,
) -> None:
    """LIDC-IDRI: DICOM series + readers' XML -> NIfTI images, consensus labels, datalist.json."""
    report = convert_lidc(
        root, output_dir, consensus=consensus, min_diameter_mm=min_diameter_mm, max_diameter_mm=max_diameter_mm,
        val_fraction=val_fraction, seed=seed, stratify_by=stratify_by, include_contour=include_contour,
        cluster_distance_mm=cluster_distance_mm,
    )
    print(report.summary())
    if not report.ok:
        sys.exit(1)


def isles(
    root: str,
    output_dir: str = "data/isles",
    modality: str = "dwi",
    val_fraction: float = 0.3,
    seed: int = 0,
    geometry_atol: float = 1e-3,
    stratify_by: str = "largest",
) -> None:
    """ISLES'22: rawdata/ images + derivatives/ masks -> datalist.json (files referenced in place)."""
    report = convert_isles(
        root, output_dir, modality=modality, val_fraction=val_fraction, seed=seed, geometry_atol=geometry_atol,
        stratify_by=stratify_by,
    )
    print(report.summary())
    if not report.ok:
        sys.exit(1)


def decathlon(
    root: str,
    output_dir: str | None = None,
    val_fraction: float = 0.3,
    seed: int = 0,
    label_values: list[int] | int | None = None,
    geometry_atol: float = 1e-3,
    stratify_by: str = "largest",
) -> None:
    """MSD-style dataset.json (``root``: the file or its folder) -> datalist.json (in ``output_dir``)."""
    report = convert_decathlon(
        root, output_dir, val_fraction=val_fraction, seed=seed, label_values=int_list(label_values),
        geometry_atol=geometry_atol, stratify_by=stratify_by,
    )
    print(report.summary())
    if not report.ok:
        sys.exit(1)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    fire.Fire({"lidc": lidc, "isles": isles, "decathlon": decathlon})
