"""ISLES'22 (ischemic stroke lesion segmentation, BIDS layout) -> our datalist.

Layout read (the ISLES'22 release)::

    <root>/rawdata/sub-strokecase0001/ses-0001/dwi/sub-strokecase0001_ses-0001_dwi.nii.gz   (and ``_adc``)
    <root>/rawdata/sub-strokecase0001/ses-0001/anat/sub-strokecase0001_ses-0001_FLAIR.nii.gz (not used)
    <root>/derivatives/sub-strokecase0001/ses-0001/sub-strokecase0001_ses-0001_msk.nii.gz

The masks lie on the DWI/ADC grid; FLAIR has its own grid and would need registration, so it is not offered.
Images and masks are referenced in place (nothing is copied unless a mask is not 0/1).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
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

__all__ = ["ISLES_MODALITIES", "find_isles_cases", "convert_isles"]

logger = logging.getLogger(__name__)

ISLES_MODALITIES = ("dwi", "adc")


def find_isles_cases(root: str | os.PathLike, modality: str = "dwi") -> list[dict[str, str]]:
    """List the ISLES'22 cases under ``root``: one per ``rawdata/sub-*/ses-*`` folder with a ``<modality>`` image.

    Args:
        root: the ISLES'22 folder holding ``rawdata/`` and ``derivatives/``.
        modality: ``"dwi"`` or ``"adc"``. Defaults to ``"dwi"``.

    Returns:
        sorted ``{"case": "sub-..._ses-...", "patient": "sub-...", "path": <image or session folder>,
        "image": <image path or "">, "mask_dir": <derivatives session folder>}``; ``image`` is empty when the
        session has no (or more than one) such image, which the conversion reports as that case's error.

    Raises:
        ValueError: when ``modality`` is not offered or ``root`` has no ``rawdata`` folder with subjects.
    """
    if modality not in ISLES_MODALITIES:
        raise ValueError(
            f"modality must be one of {ISLES_MODALITIES} (the masks are on the DWI grid; FLAIR would need "
            f"registration), got modality={modality!r}."
        )
    rawdata = Path(root) / "rawdata"
    sessions = sorted(p for p in rawdata.glob("sub-*/ses-*") if p.is_dir()) if rawdata.is_dir() else []
    if not sessions:
        raise ValueError(
            f"root must be an ISLES'22 folder with rawdata/sub-*/ses-*/ sessions, got root={str(root)!r}."
        )
    cases = []
    for session in sessions:
        subject = session.parent.name
        images = sorted((session / "dwi").glob(f"*_{modality}.nii*"))
        cases.append({
            "case": f"{subject}_{session.name}",
            "patient": subject,
            "path": str(images[0] if len(images) == 1 else session / "dwi"),
            "image": str(images[0]) if len(images) == 1 else "",
            "n_images": str(len(images)),
            "mask_dir": str(Path(root) / "derivatives" / subject / session.name),
        })
    return cases


def _convert_case(case: Mapping[str, Any], output_dir: Path, geometry_atol: float, modality: str) -> dict:
    if not case["image"]:
        raise ConversionError(
            case["path"], f"expected exactly one *_{modality}.nii.gz image in this folder, found {case['n_images']}."
        )
    mask_dir = Path(case["mask_dir"])
    masks = sorted(mask_dir.rglob("*_msk.nii*")) if mask_dir.is_dir() else []
    if len(masks) != 1:
        raise ConversionError(mask_dir, f"expected exactly one *_msk.nii.gz lesion mask here, found {len(masks)}.")
    image_path, mask_path = Path(case["image"]), masks[0]
    image, image_affine = read_nifti(image_path, "image")
    if image.ndim != 3:
        raise ConversionError(image_path, f"image must be 3-D, got shape {image.shape}.")
    mask, mask_affine = read_nifti(mask_path, "mask")
    check_geometry(image.shape, image_affine, mask.shape, mask_affine, mask_path, image_path, geometry_atol)
    lesion, label_file = lesion_label(mask, mask_affine, mask_path, output_dir / "labels" / mask_path.name)
    return {
        "case": case["case"],
        "patient": case["patient"],
        "image": str(image_path),
        "label": label_file,
        "lesions": lesion_records_from_mask(lesion, image_affine, source="ISLES22"),
    }


def convert_isles(
    root: str | os.PathLike,
    output_dir: str | os.PathLike,
    modality: str = "dwi",
    val_fraction: float = 0.3,
    seed: int = 0,
    geometry_atol: float = 1e-3,
    stratify_by: str = "largest",
) -> ConversionReport:
    """Convert an ISLES'22 folder into ``<output_dir>/datalist.json``.

    For each ``sub-*/ses-*`` session: the ``<modality>`` image and the ``*_msk`` mask must exist, be readable and
    share one grid (shape equal, affines within ``geometry_atol``); otherwise the case is recorded with a one-line
    error naming the file and skipped. Lesion records are the mask's connected components (26-connectivity,
    :py:func:`bundle.data.converters.common.lesion_records_from_mask`); no lesion is ``ignore`` (no size rule).
    The split is by subject (``val_fraction``), stratified by the size band of each subject's largest (or
    smallest) lesion.

    Args:
        root: the ISLES'22 folder (``rawdata/``, ``derivatives/``).
        output_dir: folder for ``datalist.json`` (and a binary copy of any mask that is not 0/1).
        modality: ``"dwi"`` or ``"adc"``. Defaults to ``"dwi"``.
        val_fraction: share of subjects for validation, in [0, 1). Defaults to 0.3.
        seed: split seed. Defaults to 0.
        geometry_atol: tolerance on affine entries (mm). Defaults to 1e-3.
        stratify_by: ``"largest"`` or ``"smallest"``. Defaults to ``"largest"``.

    Returns:
        :py:class:`bundle.data.converters.common.ConversionReport`.

    Raises:
        ValueError: on a bad ``modality``, ``val_fraction`` or ``stratify_by``, or a ``root`` without sessions.
    """
    check_split_args(val_fraction, stratify_by)
    cases = find_isles_cases(root, modality)
    out = Path(output_dir)
    report = ConversionReport(dataset="ISLES22")
    entries = run_cases(cases, lambda c: _convert_case(c, out, geometry_atol, modality), report)
    header = {
        "name": "ISLES22",
        "description": f"ISLES'22 {modality.upper()} with lesion masks, converted from {Path(root).resolve()}",
        "modality": {"0": modality.upper()},
        "labels": {"0": "background", "1": "lesion"},
        "tensorImageSize": "3D",
    }
    write_split_datalist(out / "datalist.json", entries, header, report, val_fraction, seed, stratify_by)
    return report
