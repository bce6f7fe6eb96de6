"""The patient-level training/validation split every converter makes, and the datalist it writes.

:py:func:`patient_band` gives each patient the size band of its largest (or smallest) non-ignored lesion,
:py:func:`stratified_split` splits the patients stratified by that band, and :py:func:`write_split_datalist`
writes the datalist (``training``, ``validation``, ``split`` and the report's ``failed`` list).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bundle.data.converters.common import SIZE_BANDS_MM, ConversionReport, size_band
from bundle.data.datalist import write_datalist

__all__ = ["patient_band", "check_split_args", "stratified_split", "write_split_datalist"]

NO_LESION_BAND = "none"
_STRATIFY = ("largest", "smallest")


def patient_band(lesions: Iterable[Mapping[str, Any]], stratify_by: str = "largest") -> str:
    """The size band a patient is stratified by: the band of its largest (or smallest) non-ignored lesion.

    Args:
        lesions: the patient's lesion records (all cases of the patient together).
        stratify_by: ``"largest"`` or ``"smallest"``. Defaults to ``"largest"``.

    Returns:
        a :py:func:`size_band` name, or ``"none"`` when the patient has no non-ignored lesion.

    Raises:
        ValueError: when ``stratify_by`` is neither ``"largest"`` nor ``"smallest"``.
    """
    if stratify_by not in _STRATIFY:
        raise ValueError(f"stratify_by must be one of {_STRATIFY}, got stratify_by={stratify_by!r}.")
    diameters = [float(les["diameter_mm"]) for les in lesions if not les.get("ignore", False)]
    if not diameters:
        return NO_LESION_BAND
    return size_band(max(diameters) if stratify_by == "largest" else min(diameters))


def check_split_args(val_fraction: float, stratify_by: str = "largest") -> None:
    """Check the split arguments every converter takes, before any case is converted.

    Raises:
        ValueError: when ``val_fraction`` is outside [0, 1) or ``stratify_by`` is not ``"largest"``/``"smallest"``.
    """
    if not 0.0 <= float(val_fraction) < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got val_fraction={val_fraction}.")
    if stratify_by not in _STRATIFY:
        raise ValueError(f"stratify_by must be one of {_STRATIFY}, got stratify_by={stratify_by!r}.")


def stratified_split(
    groups: Mapping[str, str], val_fraction: float = 0.3, seed: int = 0
) -> tuple[list[str], list[str]]:
    """Split group ids (patients) into training and validation, stratified by each group's band.

    The validation total is ``round(n * val_fraction)`` (halves round up). It is shared out over the bands in
    proportion to their sizes by the largest-remainder method (ties: the band listed first in size order), so
    each band gets ``floor`` or ``ceil`` of its share. Within a band the ids are sorted, then permuted by
    ``numpy.random.default_rng([seed, band index])``: the same inputs and seed give the same split.

    Args:
        groups: group id -> band name (e.g. from :py:func:`patient_band`).
        val_fraction: share of groups for validation, in [0, 1). Defaults to 0.3.
        seed: seed of the permutation. Defaults to 0.

    Returns:
        ``(training ids, validation ids)``, each sorted.

    Raises:
        ValueError: when ``val_fraction`` is outside [0, 1).
    """
    check_split_args(val_fraction)
    order = [f"{lo:g}-{hi:g}" for lo, hi in SIZE_BANDS_MM]
    bands = sorted(set(groups.values()), key=lambda b: (order.index(b) if b in order else len(order), b))
    members = {b: sorted(g for g, band in groups.items() if band == b) for b in bands}
    total = math.floor(len(groups) * float(val_fraction) + 0.5)
    share = {b: len(members[b]) * float(val_fraction) for b in bands}
    quota = {b: math.floor(share[b]) for b in bands}
    by_remainder = sorted(bands, key=lambda b: -(share[b] - quota[b]))  # stable: ties keep size order
    for b in by_remainder[: max(0, total - sum(quota.values()))]:
        quota[b] += 1
    train, val = [], []
    for index, b in enumerate(bands):
        ids = list(members[b])
        permuted = [ids[i] for i in np.random.default_rng([int(seed), index]).permutation(len(ids))]
        val += permuted[: quota[b]]
        train += permuted[quota[b]:]
    return sorted(train), sorted(val)


def write_split_datalist(
    path: str | os.PathLike,
    entries: Sequence[dict],
    header: Mapping[str, Any],
    report: ConversionReport,
    val_fraction: float = 0.3,
    seed: int = 0,
    stratify_by: str = "largest",
    validation: Sequence[dict] | None = None,
) -> Path | None:
    """Split converted cases by patient (stratified by size band) and write the datalist.

    Args:
        path: the datalist ``.json`` to write.
        entries: converted cases, each with ``image``, ``label``, ``case``, ``patient``, ``lesions``.
        header: top-level keys (``name``, ``description``, ``modality``, ...).
        report: updated in place (``datalist``, counts); its ``failed`` list goes into the file as ``"failed"``.
        val_fraction: share of patients for validation. Defaults to 0.3.
        seed: split seed. Defaults to 0.
        stratify_by: band of each patient's ``"largest"`` or ``"smallest"`` lesion. Defaults to ``"largest"``.
        validation: a given validation list; when not None, ``entries`` all go to training and no split is made.

    Returns:
        the datalist path, or None (nothing written) when there is no entry at all.

    Raises:
        ValueError: on a bad ``val_fraction`` or ``stratify_by``.
    """
    check_split_args(val_fraction, stratify_by)
    validation = list(validation) if validation is not None else None
    if not entries and not validation:
        return None
    lesions_of: dict[str, list] = {}
    for e in entries:
        lesions_of.setdefault(e["patient"], []).extend(e["lesions"])
    bands = {p: patient_band(les, stratify_by) for p, les in lesions_of.items()}
    for e in list(entries) + (validation or []):
        e["size_band"] = patient_band(e["lesions"], stratify_by)
    if validation is None:
        train_ids, val_ids = stratified_split(bands, val_fraction, seed)
        split = {
            "rule": f"by patient, stratified by the size band of each patient's {stratify_by} non-ignored lesion "
            "(largest-remainder quota per band, seeded permutation within a band)",
            "val_fraction": val_fraction,
            "seed": seed,
            "bands": {
                b: {
                    "training": sum(bands[p] == b for p in train_ids),
                    "validation": sum(bands[p] == b for p in val_ids),
                }
                for b in sorted(set(bands.values()))
            },
        }
        val_set = set(val_ids)
        training = [e for e in entries if e["patient"] not in val_set]
        validation = [e for e in entries if e["patient"] in val_set]
    else:
        split = {"rule": "validation list given by the source"}
        training = list(entries)
    everything = training + validation
    datalist = {
        **header,
        "split": split,
        "training": training,
        "validation": validation,
        "failed": list(report.failed),
    }
    written = write_datalist(path, datalist)
    report.datalist = written
    report.n_training, report.n_validation = len(training), len(validation)
    report.n_lesions = sum(not les.get("ignore", False) for e in everything for les in e["lesions"])
    report.n_ignored = sum(bool(les.get("ignore", False)) for e in everything for les in e["lesions"])
    return written
