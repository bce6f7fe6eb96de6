"""DICOM in and out: the identifiers of a DICOM series input, and the lesion label map as a DICOM-SEG (highdicom).

When a case is a DICOM series folder (or a single DICOM file), the evaluator records the series' patient, study and
series identifiers in the case's ``meta.json`` and, optionally, writes ``seg.dcm``: a binary DICOM Segmentation
with one segment ("lesion") whose frames reference the source slices. The frames are filled by geometry, not by
index order: every source pixel's centre (from ImagePositionPatient, ImageOrientationPatient and PixelSpacing) is
mapped through the label map's RAS affine to its voxel, so the SEG lies on its source images whatever order or
orientation the reader gave the volume. highdicom is imported only when a SEG is written.
"""

from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from monai.config import NdarrayOrTensor, PathLike
from monai.utils import convert_to_numpy

from bundle.io.cases import is_dicom_file
from bundle.io.readers import LargestSeriesITKReader
from bundle.io.atomic import atomic_write_bytes

__all__ = [
    "DICOM_IDENTIFIERS",
    "SEG_DICOM_FILENAME",
    "dicom_series_files",
    "read_identifiers",
    "label_map_to_frames",
    "derived_uid",
    "plane_geometry",
    "drop_incomplete_references",
    "write_dicom_seg",
    "dicom_case_outputs",
]

logger = logging.getLogger(__name__)

SEG_DICOM_FILENAME = "seg.dcm"
DICOM_IDENTIFIERS = (
    "PatientID",
    "PatientName",
    "PatientBirthDate",
    "PatientSex",
    "StudyInstanceUID",
    "StudyID",
    "StudyDate",
    "AccessionNumber",
    "SeriesInstanceUID",
    "SeriesNumber",
    "Modality",
    "FrameOfReferenceUID",
)
_LPS_TO_RAS = np.array([-1.0, -1.0, 1.0])


def dicom_series_files(image_path: PathLike) -> list[str] | None:
    """
    The DICOM files the bundle's reader reads for ``image_path``, or None when it is not DICOM.

    Args:
        image_path: a DICOM series folder (its largest series is read, as
            :py:class:`bundle.io.readers.LargestSeriesITKReader` does, sorted by slice position), a DICOM file,
            or any other input (NIfTI, NRRD...).

    Raises:
        ValueError: when a folder holds no readable DICOM image slices.
    """
    path = Path(image_path)
    if path.is_dir():
        return LargestSeriesITKReader().series_file_names(path)
    if path.is_file() and is_dicom_file(path):
        return [str(path)]
    return None


def read_identifiers(files: Sequence[PathLike]) -> dict[str, str]:
    """
    The patient, study and series identifiers (``DICOM_IDENTIFIERS`` present in the first file) of a series.

    Raises:
        ValueError: when ``files`` is empty or the first file is not readable DICOM.
    """
    if not files:
        raise ValueError("files must name at least one DICOM file, got an empty list.")
    try:
        ds = pydicom.dcmread(str(files[0]), stop_before_pixels=True)
    except Exception as e:
        raise ValueError(f"DICOM file {str(files[0])!r} is not readable: {e}") from e
    return {key: str(ds.get(key)) for key in DICOM_IDENTIFIERS if ds.get(key) not in (None, "")}


def plane_geometry(ds: pydicom.Dataset) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """
    A slice's plane in LPS mm: ``(origin, along_row, along_col, spacing)`` = the first pixel's centre, the unit
    directions of increasing column and row index, and (between rows, between columns).

    Raises:
        ValueError: when the slice lacks ImagePositionPatient, ImageOrientationPatient or PixelSpacing.
    """
    try:
        origin = np.asarray(ds.ImagePositionPatient, dtype=float)
        orientation = np.asarray(ds.ImageOrientationPatient, dtype=float)
        spacing = np.asarray(ds.PixelSpacing, dtype=float)
    except AttributeError as e:
        raise ValueError(f"DICOM file {getattr(ds, 'filename', '?')!r} lacks plane geometry: {e}.") from e
    return origin, orientation[:3], orientation[3:], spacing


def _pixel_centres_ras(ds: pydicom.Dataset) -> np.ndarray:
    """World (RAS mm) centres of every pixel of a slice, (rows, cols, 3)."""
    origin, along_row, along_col, spacing = plane_geometry(ds)
    r, c = np.meshgrid(np.arange(int(ds.Rows)), np.arange(int(ds.Columns)), indexing="ij")
    lps = origin + (c[..., None] * spacing[1]) * along_row + (r[..., None] * spacing[0]) * along_col  # (R, C, 3)
    return lps * _LPS_TO_RAS


def label_map_to_frames(
    labels: NdarrayOrTensor,
    affine: NdarrayOrTensor,
    datasets: Sequence[pydicom.Dataset],
    keep_labels: bool = False,
) -> np.ndarray:
    """
    Resample a 3D label map onto the slices of its DICOM series (nearest voxel), one frame per slice.

    Args:
        labels: label map (X, Y, Z) in the grid of ``affine``; > 0 is lesion.
        affine: voxel-to-world (RAS mm) 4 x 4 matrix of ``labels``.
        datasets: the series' slices (headers suffice), in the order the frames should have.
        keep_labels: keep the label values (lesion ``n`` stays ``n``, uint16) instead of a binary mask. Defaults
            to False.

    Returns:
        array (len(datasets), Rows, Columns): uint8 1 where the pixel centre falls in a lesion voxel (or, with
        ``keep_labels``, that voxel's uint16 label); pixels whose centre lies outside the label map are 0.

    Raises:
        ValueError: when ``labels`` is not 3D, ``affine`` is not 4 x 4, or a slice lacks plane geometry.
    """
    lab = np.asarray(convert_to_numpy(labels))
    aff = np.asarray(convert_to_numpy(affine), dtype=float)
    if lab.ndim != 3 or aff.shape != (4, 4):
        raise ValueError(f"labels must be 3D with a 4 x 4 affine, got labels {lab.shape} and affine {aff.shape}.")
    inverse = np.linalg.inv(aff)
    frames = []
    for ds in datasets:
        ras = _pixel_centres_ras(ds)  # (R, C, 3)
        vox = np.rint(ras @ inverse[:3, :3].T + inverse[:3, 3]).astype(np.int64)  # (R, C, 3) voxel indices
        inside = np.all((vox >= 0) & (vox < np.array(lab.shape)), axis=-1)
        frame = np.zeros(inside.shape, np.uint16 if keep_labels else np.uint8)
        idx = vox[inside]
        values = lab[idx[:, 0], idx[:, 1], idx[:, 2]]
        frame[inside] = np.clip(values, 0, None) if keep_labels else values > 0
        frames.append(frame)
    return np.stack(frames)


def drop_incomplete_references(ds: pydicom.Dataset) -> pydicom.Dataset:
    """
    Remove, in place, the items of ``ReferencedStudySequence`` (Type 3, copied from the source by highdicom) that
    lack ReferencedSOPClassUID, and the sequence when none is left: de-identified archives (TCIA's, the embedded
    sample's) carry such items, and a derived object must not inherit the error (dciodvfy: "Missing attribute Type
    1 Required Element=<ReferencedSOPClassUID>").
    """
    if "ReferencedStudySequence" in ds:
        kept = [item for item in ds.ReferencedStudySequence if item.get("ReferencedSOPClassUID")]
        if kept:
            ds.ReferencedStudySequence = pydicom.Sequence(kept)
        else:
            del ds.ReferencedStudySequence
    return ds


def derived_uid(*parts: Any) -> str:
    """
    A UID determined by ``parts`` (pydicom's ``generate_uid`` with them as entropy), for objects derived from a
    source series: the same source, software version and content give the same UID, so storing a rerun's result
    again does not duplicate it in a PACS, and a different result gets a new UID.
    """
    return pydicom.uid.generate_uid(entropy_srcs=[str(p) for p in parts])


def write_dicom_seg(
    path: PathLike,
    labels: NdarrayOrTensor,
    affine: NdarrayOrTensor,
    source_files: Sequence[PathLike],
    protected: Sequence[PathLike] = (),
    segment_label: str = "lesion",
    software_version: str = "0",
    lesions: Sequence[Mapping[str, Any]] | None = None,
) -> Path:
    """
    Write the lesion label map as a binary DICOM Segmentation of its source series (highdicom), atomically.

    With ``lesions`` (the records of ``lesions.json``, lesion ``n`` being label ``n`` of ``labels``) the SEG has one
    segment per lesion, ``"<segment_label> n"`` with tracking identifier of the same name and a tracking UID that
    the Structured Report (:py:mod:`bundle.io.dicom_sr`) reuses; without lesions, or with none found, it has one
    segment ``segment_label`` (every voxel > 0). Segments are SNOMED "Lesion", algorithm type AUTOMATIC. One frame
    per source slice (empty frames kept, so every slice is referenced); the source's patient, study and frame of
    reference. The SEG's series is new (series number 9901); its series and instance UIDs are derived from the
    source series, ``software_version`` and the content (:py:func:`derived_uid`).

    Args:
        path: destination, e.g. ``<case>/seg.dcm``.
        labels: label map (X, Y, Z) in the grid of ``affine`` (> 0 is lesion).
        affine: voxel-to-world (RAS mm) matrix of ``labels``.
        source_files: the DICOM files of the series the label map was computed from.
        protected: input paths never to be written over.
        segment_label: the segment's label (the prefix of each lesion's segment label). Defaults to ``"lesion"``.
        software_version: recorded as SoftwareVersions (the bundle version).
        lesions: the lesion records in label order; None writes one segment. Defaults to None.

    Returns:
        the resolved destination path.

    Raises:
        ValueError: when a source file is unreadable or lacks geometry, ``labels``/``affine`` are malformed, or
            ``labels`` holds a value above the number of ``lesions``.
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes

    datasets = []
    for f in source_files:
        try:
            datasets.append(pydicom.dcmread(str(f)))
        except Exception as e:
            raise ValueError(f"DICOM file {str(f)!r} is not readable: {e}") from e
    per_lesion = bool(lesions)
    mask = label_map_to_frames(labels, affine, datasets, keep_labels=per_lesion)
    if per_lesion and int(mask.max()) > len(lesions):
        raise ValueError(f"labels must hold values 0..{len(lesions)} (one per lesion), got {int(mask.max())}.")
    names = [f"{segment_label} {n}" for n in range(1, len(lesions) + 1)] if per_lesion else [segment_label]
    series_uid = derived_uid(datasets[0].SeriesInstanceUID, "SEG", software_version)
    sop_uid = derived_uid(series_uid, hashlib.sha256(mask.tobytes()).hexdigest(), *names)
    algorithm = hd.AlgorithmIdentificationSequence(
        name="GhostCAUNet routed sliding window", version=software_version, family=codes.cid7162.ArtificialIntelligence
    )
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=n,
            segment_label=name,
            segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
            segmented_property_type=codes.SCT.Lesion,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm,
            tracking_uid=derived_uid(sop_uid, n) if per_lesion else None,
            tracking_id=name if per_lesion else None,
        )
        for n, name in enumerate(names, start=1)
    ]
    seg = hd.seg.Segmentation(
        source_images=datasets,
        pixel_array=mask,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=series_uid,
        series_number=9901,
        sop_instance_uid=sop_uid,
        instance_number=1,
        manufacturer="small-lesion bundle",
        manufacturer_model_name="GhostCAUNet",
        software_versions=software_version,
        device_serial_number="0",
        series_description="lesion segmentation (research use)",
        omit_empty_frames=False,
    )
    drop_incomplete_references(seg)
    buf = io.BytesIO()
    seg.save_as(buf)
    return atomic_write_bytes(path, buf.getvalue(), protected)


def dicom_case_outputs(
    image_path: PathLike,
    case_dir: PathLike,
    labels: NdarrayOrTensor,
    affine: NdarrayOrTensor,
    write_seg: bool = False,
    protected: Sequence[PathLike] = (),
    software_version: str = "0",
    lesions: Sequence[Mapping[str, Any]] | None = None,
    write_sr: bool = False,
) -> dict[str, Any] | None:
    """
    The DICOM part of a case's outputs: identifiers (for ``meta.json``) and, optionally, ``seg.dcm`` and ``sr.dcm``.

    Args:
        image_path: the case's input; nothing is done (None returned) when it is not DICOM.
        case_dir: the case's output folder (``seg.dcm`` and ``sr.dcm`` go there).
        labels: the lesion label map in the input's grid (lesion ``n`` is label ``n`` when ``lesions`` is given).
        affine: its RAS affine.
        write_seg: write ``seg.dcm``. Defaults to False.
        protected: input paths never to be written over.
        software_version: recorded in the SEG and the SR.
        lesions: the lesion records in label order: the SEG gets one segment per lesion. Defaults to None (one
            segment).
        write_sr: also write ``sr.dcm``, the TID 1500 Measurement Report of ``lesions``
            (:py:func:`bundle.io.dicom_sr.write_measurement_report`); needs ``write_seg`` and ``lesions``.
            Defaults to False.

    Returns:
        None for a non-DICOM input, else ``{"identifiers": {...}, "num_slices": n}`` plus ``"seg"`` / ``"sr"``
        paths when written.

    Raises:
        ValueError: see :py:func:`dicom_series_files` and :py:func:`write_dicom_seg`; when ``write_sr`` lacks
            ``write_seg`` or ``lesions``.
    """
    if write_sr and (not write_seg or lesions is None):
        raise ValueError("write_sr=True needs write_seg=True and the lesions (the report references the SEG's segments).")
    files = dicom_series_files(image_path)
    if files is None:
        return None
    out: dict[str, Any] = {"identifiers": read_identifiers(files), "num_slices": len(files)}
    if write_seg:
        guard = [image_path, *protected]
        seg_path = write_dicom_seg(
            Path(case_dir) / SEG_DICOM_FILENAME, labels, affine, files, guard, "lesion", software_version, lesions
        )
        out["seg"] = str(seg_path)
        if write_sr:
            from bundle.io.dicom_sr import SR_DICOM_FILENAME, write_measurement_report

            sr_path = write_measurement_report(
                Path(case_dir) / SR_DICOM_FILENAME, lesions, seg_path, files, guard, software_version
            )
            out["sr"] = str(sr_path)
    return out
