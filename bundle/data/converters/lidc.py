"""LIDC-IDRI (CT DICOM series + the four readers' XML) -> NIfTI image, consensus lesion mask and our datalist.

What the conversion does for one series folder (DICOM slices + its ``LidcReadMessage`` XML):

1. Read the series with MONAI ``LoadImage`` and :py:class:`bundle.io.readers.LargestSeriesITKReader` (ITK sorts
   the slices by position and applies the rescale): an array ``(W, H, D)`` = (column, row, slice) in HU and a
   RAS affine. Each slice's ``SOPInstanceUID`` and z position come from its header (pydicom).
2. Rasterise every reader's nodule (``readingSession`` -> ``unblindedReadNodule`` -> ``roi``): each ``roi`` is a
   closed contour (``edgeMap`` x = column, y = row) on the slice with its ``imageSOP_UID`` (else the slice at its
   ``imageZposition``), filled with ``skimage.draw.polygon``. As LIDC's reading instructions put the outline
   just outside the nodule, the contour pixels are left out (``include_contour=False``, as pylidc does) unless the
   contour has no inside. ``inclusion=FALSE`` contours are holes. A nodule < 3 mm (one point, its centre) marks
   that voxel. ``nonNodule`` marks are not lesions and are not read.
3. Cluster the readers' nodules into lesions: two annotations belong to one lesion when their voxels come within
   ``cluster_distance_mm`` of each other (overlap or touch; as pylidc's ``cluster_annotations``), transitively.
4. Per lesion, count the distinct readers who marked each voxel; the consensus mask is ``count >= consensus``.
   A lesion marked by fewer than ``consensus`` readers, or whose consensus mask is empty or has an equivalent
   diameter outside ``[min_diameter_mm, max_diameter_mm]``, becomes an ``"ignore": true`` record (detection
   metrics neither reward nor punish hits on it) and stays background in the label; the others are label 1.
5. Split 7:3 by patient, stratified by the size band of each patient's largest (default) non-ignored lesion.
6. Report inter-reader agreement at lesion level (:py:mod:`bundle.metrics.agreement`): per case in the entry's
   ``reader_agreement``, pooled over the data set in the datalist's ``reader_agreement`` and in the report's
   summary (Fleiss' kappa and Cohen's kappa per reading-slot pair of "marked / not marked" per lesion).

The XML is read by :py:mod:`bundle.data.converters.lidc_xml` (step 2's contours), the nodules are rasterised,
clustered and turned into consensus lesions by :py:mod:`bundle.data.converters.lidc_consensus` (steps 2-4); this
module finds the series folders, reads the DICOM series and writes the NIfTI files and the datalist.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pydicom

from bundle.data.converters.common import ConversionError, ConversionReport, run_cases
from bundle.data.converters.lidc_consensus import LidcAnnotation, consensus_lesions, rasterize_nodule
from bundle.data.converters.lidc_xml import LidcRoi, is_lidc_xml, read_lidc_xml
from bundle.data.converters.split import check_split_args, write_split_datalist
from bundle.metrics.agreement import lesion_agreement, pooled_agreement, reader_marks

__all__ = ["LidcConversionReport", "find_lidc_cases", "convert_lidc"]

logger = logging.getLogger(__name__)


def _kappa_text(value: float | None) -> str:
    return "undefined" if value is None else f"{value:.3f}"


@dataclass
class LidcConversionReport(ConversionReport):
    """:py:class:`~bundle.data.converters.common.ConversionReport` plus the readers' lesion-level agreement.

    Attributes:
        agreement: :py:func:`bundle.metrics.agreement.pooled_agreement` over the converted cases (empty when
            none was converted).
    """

    agreement: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        """The base summary plus one line of reader agreement (Fleiss' kappa, mean pairwise Cohen's kappa)."""
        text = super().summary()
        a = self.agreement
        if not a.get("n_lesions"):
            return text
        fmt = _kappa_text
        pairs = ", ".join(f"{k} {fmt(v)}" for k, v in a["cohen_kappa"].items())
        return (
            f"{text}\nreader agreement ({a['n_lesions']} lesion(s) of {a['n_cases']} case(s), {a['n_readers']} "
            f"readers, lesion level): Fleiss' kappa {fmt(a['fleiss_kappa'])}, mean Cohen's kappa "
            f"{fmt(a['mean_cohen_kappa'])} ({pairs})"
        )


def _patient_of(folder: Path, root: Path) -> str:
    """DICOM PatientID of the folder's first readable slice header, else the first folder below ``root``."""
    for f in sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() != ".xml"):
        try:
            ds = pydicom.dcmread(str(f), stop_before_pixels=True, specific_tags=["PatientID"], force=True)
        except Exception:  # not a DICOM file: try the next one
            continue
        if str(getattr(ds, "PatientID", "")).strip():
            return str(ds.PatientID).strip()
    rel = folder.resolve().relative_to(root.resolve()).parts
    return rel[0] if rel else folder.name


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "case"


def find_lidc_cases(root: str | os.PathLike) -> list[dict[str, Any]]:
    """List the LIDC case folders under ``root``: every folder (searched recursively) holding an LIDC XML.

    Args:
        root: the LIDC-IDRI folder (``LIDC-IDRI-0001/<study>/<series>/*.dcm + *.xml``), or one series folder.

    Returns:
        sorted ``{"case", "patient", "path": <folder>, "xml": [<LIDC XML files>]}``. ``patient`` is the DICOM
        ``PatientID`` (else the first folder below ``root``); ``case`` is the patient, with the folder name's
        last 8 characters appended when the patient has several series.

    Raises:
        ValueError: when ``root`` is not a folder or holds no LIDC XML.
    """
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"root must be an existing folder, got root={str(root)!r}.")
    cases = []
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        xmls = [Path(folder) / f for f in sorted(files) if f.lower().endswith(".xml") and is_lidc_xml(Path(folder) / f)]
        if xmls:
            patient = _patient_of(Path(folder), root)
            cases.append({"path": str(folder), "xml": [str(x) for x in xmls], "patient": patient})
    if not cases:
        raise ValueError(f"root must hold LIDC series folders (DICOM + LidcReadMessage XML), got root={str(root)!r}.")
    counts: dict[str, int] = {}
    for c in cases:
        counts[c["patient"]] = counts.get(c["patient"], 0) + 1
    for c in cases:
        name = c["patient"] if counts[c["patient"]] == 1 else f"{c['patient']}_{Path(c['path']).name[-8:]}"
        c["case"] = _safe(name)
    return sorted(cases, key=lambda c: c["case"])


def _slice_index(
    roi: LidcRoi, sop_to_slice: Mapping[str, int], z_positions: np.ndarray, z_tol: float
) -> int | None:
    if roi.sop_uid is not None and roi.sop_uid in sop_to_slice:
        return sop_to_slice[roi.sop_uid]
    if roi.z_position is not None:
        k = int(np.argmin(np.abs(z_positions - roi.z_position)))
        if abs(z_positions[k] - roi.z_position) <= z_tol:
            return k
    return None


def _read_series(folder: Path) -> tuple[np.ndarray, np.ndarray, dict[str, int], np.ndarray, str]:
    """Volume (W, H, D) in HU, RAS affine, SOP UID -> slice index, slice z positions (D,), series UID."""
    # MONAI and ITK are imported here, not at module import, so the ISLES/decathlon converters stay light
    from monai.transforms import LoadImage

    from bundle.io.readers import LargestSeriesITKReader

    reader = LargestSeriesITKReader()
    try:
        files = reader.series_file_names(folder)
        image = LoadImage(reader=reader, image_only=True)(str(folder))
    except Exception as e:  # ITK/GDCM raise RuntimeError; the reader ValueError
        raise ConversionError(folder, f"cannot read the DICOM series ({' '.join(str(e).split())[:300]}).") from e
    volume = np.asarray(image.numpy())
    affine = np.asarray(image.affine, dtype=np.float64)
    sop_to_slice, z_positions = {}, []
    series_uid = ""
    for k, f in enumerate(files):
        try:
            ds = pydicom.dcmread(f, stop_before_pixels=True)
        except Exception as e:
            raise ConversionError(f, f"cannot read the DICOM header ({type(e).__name__}: {e}).") from e
        sop_to_slice[str(ds.SOPInstanceUID)] = k
        z_positions.append(float(ds.ImagePositionPatient[2]))
        series_uid = series_uid or str(getattr(ds, "SeriesInstanceUID", ""))
    z_positions = np.asarray(z_positions)
    # ITK's slice k must be file k: slice 0 sits at the affine's origin and z moves the affine's way
    steps = np.diff(z_positions) * np.sign(affine[2, 2])
    if volume.ndim != 3 or volume.shape[2] != len(files) or abs(z_positions[0] - affine[2, 3]) > 0.01 or (
        steps <= 0
    ).any():
        raise ConversionError(folder, "the loaded volume's slice order does not match the DICOM slice positions.")
    if steps.size and steps.max() - steps.min() > 0.01:
        logger.warning("%s: slice spacing varies (%.3f-%.3f mm); the NIfTI grid assumes %.3f mm", folder,
                       steps.min(), steps.max(), abs(affine[2, 2]))
    return volume, affine, sop_to_slice, z_positions, series_uid


def _convert_case(
    case: Mapping[str, Any],
    output_dir: Path,
    consensus: int,
    min_diameter_mm: float,
    max_diameter_mm: float,
    include_contour: bool,
    cluster_distance_mm: float | None,
) -> dict:
    from bundle.io.atomic import atomic_save_nifti

    folder = Path(case["path"])
    readings = [read_lidc_xml(x) for x in case["xml"]]  # before the series: cheaper to fail on
    volume, affine, sop_to_slice, z_positions, series_uid = _read_series(folder)
    matching = [r for r in readings if r.series_uid in (None, series_uid)]
    if not matching:
        raise ConversionError(
            readings[0].path,
            f"LIDC XML is for series {readings[0].series_uid}, the DICOM series in {folder} is {series_uid}.",
        )
    if len(matching) > 1:
        names = [r.path.name for r in matching]
        raise ConversionError(folder, f"several LIDC XML files for series {series_uid}: {names}.")
    reading = matching[0]
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    z_tol = 0.5 * float(np.median(np.diff(np.sort(z_positions)))) if len(z_positions) > 1 else 0.5
    annotations = []
    for nodule in reading.nodules:
        slices = []
        for k, roi in enumerate(nodule.rois):
            index = _slice_index(roi, sop_to_slice, z_positions, z_tol)
            if index is None:
                raise ConversionError(
                    reading.path,
                    f"reader {nodule.reader_id}, nodule {nodule.nodule_id!r}, roi {k}: no slice of the series has "
                    f"SOP UID {roi.sop_uid} or z = {roi.z_position} mm (within {z_tol:.2f} mm).",
                )
            slices.append(index)
        try:
            offset, mask = rasterize_nodule(nodule, slices, volume.shape, include_contour)
        except ValueError as e:
            raise ConversionError(reading.path, str(e)) from e
        if not mask.any():
            logger.warning("%s: nodule %r of reader %s is empty after its exclusions", reading.path, nodule.nodule_id,
                           nodule.reader_id)
            continue
        annotations.append(LidcAnnotation(nodule.reader, nodule.reader_id, nodule.nodule_id, offset, mask))
    distance = float(spacing.max()) if cluster_distance_mm is None else float(cluster_distance_mm)
    label, records = consensus_lesions(
        annotations, len(reading.reader_ids), affine, volume.shape, consensus, min_diameter_mm, max_diameter_mm,
        distance,
    )
    image_path = output_dir / "images" / f"{case['case']}.nii.gz"
    label_path = output_dir / "labels" / f"{case['case']}.nii.gz"
    hu = np.clip(np.round(volume), np.iinfo(np.int16).min, np.iinfo(np.int16).max).astype(np.int16)
    atomic_save_nifti(image_path, hu, affine, protected=[folder])
    atomic_save_nifti(label_path, label, affine, protected=[folder])
    return {
        "case": case["case"],
        "patient": case["patient"],
        "image": str(image_path.resolve()),
        "label": str(label_path.resolve()),
        "lesions": records,
        "series_uid": series_uid,
        "n_reading_sessions": len(reading.reader_ids),
        "reader_agreement": lesion_agreement(reader_marks(records, len(reading.reader_ids))),
        "source": {"folder": str(folder), "xml": str(reading.path)},
    }


def convert_lidc(
    root: str | os.PathLike,
    output_dir: str | os.PathLike,
    consensus: int = 2,
    min_diameter_mm: float = 3.0,
    max_diameter_mm: float = 30.0,
    val_fraction: float = 0.3,
    seed: int = 0,
    stratify_by: str = "largest",
    include_contour: bool = False,
    cluster_distance_mm: float | None = None,
) -> LidcConversionReport:
    """Convert LIDC-IDRI series folders into NIfTI images, consensus labels and ``<output_dir>/datalist.json``.

    See the module docstring for the steps. Writes ``<output_dir>/images/<case>.nii.gz`` (int16 HU) and
    ``<output_dir>/labels/<case>.nii.gz`` (uint8: 1 = kept consensus lesion). A case that fails (unreadable
    DICOM or XML, XML of another series, a contour on no slice of the series, points outside the image) is
    recorded with one line naming the file and the problem, and the others go on.

    Args:
        root: folder searched recursively for series folders holding DICOM slices and an LIDC XML.
        output_dir: where images, labels and the datalist go.
        consensus: k, the number of distinct readers (of 4) who must mark a voxel. Defaults to 2.
        min_diameter_mm: lesions with a smaller consensus equivalent diameter are ``ignore``. Defaults to 3.
        max_diameter_mm: lesions with a larger one are ``ignore``. Defaults to 30.
        val_fraction: share of patients for validation, in [0, 1). Defaults to 0.3.
        seed: split seed. Defaults to 0.
        stratify_by: a patient's band is that of its ``"largest"`` or ``"smallest"`` kept lesion (patients
            without one form the band ``"none"``). Defaults to ``"largest"``.
        include_contour: count the contour pixels as nodule. Defaults to False.
        cluster_distance_mm: voxel distance (mm) linking two readers' nodules; None: the largest voxel spacing
            (touching voxels link). Defaults to None.

    Returns:
        :py:class:`LidcConversionReport` (with the pooled reader agreement).

    Raises:
        ValueError: when ``consensus`` < 1, the diameters are not ``0 <= min < max``, ``val_fraction`` or
            ``stratify_by`` is bad, ``cluster_distance_mm`` is negative, or ``root`` holds no LIDC XML.
    """
    if int(consensus) != consensus or consensus < 1:
        raise ValueError(f"consensus must be an integer >= 1 (readers of 4), got consensus={consensus}.")
    if not 0 <= min_diameter_mm < max_diameter_mm:
        raise ValueError(
            f"diameters must satisfy 0 <= min_diameter_mm < max_diameter_mm, got {min_diameter_mm}, {max_diameter_mm}."
        )
    if cluster_distance_mm is not None and cluster_distance_mm < 0:
        raise ValueError(f"cluster_distance_mm must be None or >= 0, got cluster_distance_mm={cluster_distance_mm}.")
    check_split_args(val_fraction, stratify_by)
    cases = find_lidc_cases(root)
    out = Path(output_dir)
    report = LidcConversionReport(dataset="LIDC-IDRI")
    entries = run_cases(
        cases,
        lambda c: _convert_case(
            c, out, int(consensus), min_diameter_mm, max_diameter_mm, include_contour, cluster_distance_mm
        ),
        report,
    )
    header = {
        "name": "LIDC-IDRI",
        "description": (
            f"LIDC-IDRI CT with consensus nodule masks (>= {consensus} readers), nodules "
            f"{min_diameter_mm:g}-{max_diameter_mm:g} mm kept, others 'ignore'; converted from {Path(root).resolve()}"
        ),
        "modality": {"0": "CT"},
        "labels": {"0": "background", "1": "nodule"},
        "tensorImageSize": "3D",
        "converter": {
            "consensus": int(consensus),
            "min_diameter_mm": min_diameter_mm,
            "max_diameter_mm": max_diameter_mm,
            "include_contour": include_contour,
            "cluster_distance_mm": cluster_distance_mm,
        },
    }
    report.agreement = pooled_agreement(entries) if entries else {}
    header["reader_agreement"] = report.agreement
    write_split_datalist(out / "datalist.json", entries, header, report, val_fraction, seed, stratify_by)
    return report
