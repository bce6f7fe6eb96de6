"""Decathlon-style ``dataset.json`` (any MSD task) -> our datalist.

The helpers shared with the other converters are in :py:mod:`bundle.data.converters.common` and
:py:mod:`bundle.data.converters.split`. A bad entry never stops the conversion: it is recorded in the report
(``failed``) and in the datalist's ``"failed"`` list, and the rest is converted.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bundle.data.converters.common import (
    ConversionError,
    ConversionReport,
    check_geometry,
    lesion_label,
    lesion_records_from_mask,
    read_nifti,
    run_cases,
)
from bundle.data.converters.split import check_split_args, write_split_datalist

__all__ = ["convert_decathlon"]


def _case_name(path: str) -> str:
    name = Path(path).name
    for suffix in (".nii.gz", ".nii"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _resolve(base: Path, value: Any, key: str, index: int, dataset_json: Path) -> Path:
    if not isinstance(value, str) or not value:
        raise ConversionError(dataset_json, f"entry {index}: {key!r} must be a non-empty path string, got {value!r}.")
    path = Path(value)
    return path if path.is_absolute() else (base / path).resolve()


def convert_decathlon(
    dataset_json: str | os.PathLike,
    output_dir: str | os.PathLike | None = None,
    val_fraction: float = 0.3,
    seed: int = 0,
    label_values: Sequence[int] | None = None,
    geometry_atol: float = 1e-3,
    stratify_by: str = "largest",
) -> ConversionReport:
    """Convert an MSD-style ``dataset.json`` into our datalist, checking every entry.

    Every ``training`` (and ``validation``, when present) entry must be a dict with ``image`` and ``label`` paths
    (relative to the ``dataset.json`` folder, as MSD writes ``./imagesTr/x.nii.gz``) that exist, can be read as
    NIfTI, and share one voxel grid (:py:func:`check_geometry`). A bad entry is recorded (one line naming the file
    and the problem) and skipped. Lesion records come from the connected components (26-connectivity) of the
    lesion mask. Images are referenced in place; labels too when they are already binary, else a binary copy is
    written to ``<output_dir>/labels/``. Without a ``validation`` list, the cases are split with
    ``val_fraction``, each case its own patient, stratified by size band.
    MSD's ``test`` list (images without labels) is not used. ``numTraining`` disagreeing with the ``training``
    list is a warning.

    Args:
        dataset_json: the ``dataset.json`` file, or the folder holding it.
        output_dir: folder for ``datalist.json`` (and any binary label copies); None: the ``dataset.json``
            folder. Defaults to None.
        val_fraction: share of cases for validation when the file has no ``validation`` list. Defaults to 0.3.
        seed: split seed. Defaults to 0.
        label_values: label values that are lesions (e.g. ``[2]`` for MSD liver tumours); None: every non-zero
            value. Defaults to None.
        geometry_atol: tolerance on affine entries (mm). Defaults to 1e-3.
        stratify_by: ``"largest"`` or ``"smallest"`` lesion sets a case's band. Defaults to ``"largest"``.

    Returns:
        :py:class:`ConversionReport`; its ``datalist`` is ``<output_dir>/datalist.json`` (None if no case
        converted).

    Raises:
        ValueError: when ``dataset_json`` is missing, not JSON, or has no ``training`` list, or on a bad
            ``val_fraction``, ``stratify_by`` or ``label_values``.
    """
    check_split_args(val_fraction, stratify_by)
    if label_values is not None and (not label_values or any(int(v) <= 0 for v in label_values)):
        raise ValueError(f"label_values must be None or positive label values, got label_values={label_values}.")
    path = Path(dataset_json)
    if path.is_dir():
        path = path / "dataset.json"
    if not path.is_file():
        raise ValueError(f"dataset_json must be an existing dataset.json (or its folder), got {str(dataset_json)!r}.")
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"dataset_json {path} is not valid JSON: {e}.") from e
    if not isinstance(meta, dict) or not isinstance(meta.get("training"), list):
        keys = sorted(meta) if isinstance(meta, dict) else type(meta).__name__
        raise ValueError(f"dataset_json {path} must hold a 'training' list, got keys {keys}.")
    base = path.parent.resolve()
    out = Path(output_dir) if output_dir is not None else base
    report = ConversionReport(dataset=str(meta.get("name", path.parent.name)))
    n_declared = meta.get("numTraining")
    if n_declared is not None and n_declared != len(meta["training"]):
        report.warnings.append(
            f"{path}: numTraining is {n_declared} but the training list has {len(meta['training'])}."
        )

    def cases_of(key: str) -> list[dict]:
        cases = []
        for i, raw in enumerate(meta.get(key) or []):
            image = raw.get("image") if isinstance(raw, dict) else None
            name = _case_name(image) if isinstance(image, str) and image else f"{key}[{i}]"
            cases.append({"case": name, "path": str(path), "raw": raw, "index": i, "key": key})
        return cases

    def convert_one(case: Mapping[str, Any]) -> dict:
        raw, i, key = case["raw"], case["index"], case["key"]
        if not isinstance(raw, dict):
            raise ConversionError(path, f"{key} entry {i} must be a dict with 'image' and 'label', got {raw!r:.80}.")
        for k in ("image", "label"):
            if k not in raw:
                raise ConversionError(path, f"{key} entry {i} ({case['case']}) has no {k!r} key; keys: {sorted(raw)}.")
        image_path = _resolve(base, raw["image"], "image", i, path)
        label_path = _resolve(base, raw["label"], "label", i, path)
        for p, what in ((image_path, "image"), (label_path, "label")):
            if not p.is_file():
                raise ConversionError(p, f"{what} file does not exist ({key} entry {i} of {path}).")
        image, image_affine = read_nifti(image_path, "image")
        label, label_affine = read_nifti(label_path, "label")
        check_geometry(image.shape, image_affine, label.shape, label_affine, label_path, image_path, geometry_atol)
        mask, label_file = lesion_label(label, label_affine, label_path, out / "labels" / label_path.name, label_values)
        return {
            "case": case["case"],
            "patient": case["case"],
            "image": str(image_path),
            "label": label_file,
            "lesions": lesion_records_from_mask(mask, image_affine),
            "source": {"image": str(raw["image"]), "label": str(raw["label"])},
        }

    entries = run_cases(cases_of("training"), convert_one, report)
    validation = run_cases(cases_of("validation"), convert_one, report) if meta.get("validation") else None
    header = {
        "name": str(meta.get("name", path.parent.name)),
        "description": f"converted by bundle.data.converters.convert_decathlon from {path}",
        "source_description": meta.get("description", ""),
        "modality": meta.get("modality", {}),
        "labels": {"0": "background", "1": "lesion"},
        "source_labels": meta.get("labels", {}),
        "lesion_label_values": list(label_values) if label_values is not None else "all non-zero",
        "tensorImageSize": meta.get("tensorImageSize", "3D"),
    }
    write_split_datalist(
        out / "datalist.json", entries, header, report, val_fraction, seed, stratify_by, validation
    )
    return report
