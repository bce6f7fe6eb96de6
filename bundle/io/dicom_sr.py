"""The lesion list as a DICOM Structured Report: a TID 1500 Measurement Report (highdicom), beside the DICOM-SEG.

The report's first measurement group (TID 1501) is the number of lesions found, so a report without findings
still says so. Per lesion of ``lesions.json`` it then holds two measurement groups with the lesion's tracking identifier (the
one its SEG segment carries, "lesion n" with the same tracking UID):

- a volumetric ROI group (TID 1411) that references segment ``n`` of the SEG, with the lesion's diameter (mm),
  volume (mm3), detection score (no units) and routing tier (a qualitative evaluation);
- a planar ROI group (TID 1410) with the lesion's centre as a 2-D point on the source slice nearest to it, so a
  viewer can jump to the lesion.

The score and the tier are the bundle's own concepts, coded in the private scheme ``99SLB`` (DICOM PS3.16 8.2:
local schemes start with "99"). The report is a research output, not a diagnosis. highdicom is imported only
when a report is written.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from monai.config import PathLike

from bundle.io.atomic import atomic_write_bytes
from bundle.io.dicom import derived_uid, drop_incomplete_references, plane_geometry

__all__ = ["SR_DICOM_FILENAME", "LOCAL_SCHEME", "slice_point", "write_measurement_report"]

SR_DICOM_FILENAME = "sr.dcm"
LOCAL_SCHEME = "99SLB"
_RAS_TO_LPS = np.array([-1.0, -1.0, 1.0])


def slice_point(datasets: Sequence[pydicom.Dataset], center_ras: Sequence[float]) -> tuple[int, float, float, float]:
    """
    The source slice nearest to a world point, and the point in that slice's image coordinates.

    Args:
        datasets: the series' slices (headers suffice).
        center_ras: the point, RAS mm.

    Returns:
        ``(index, column, row, distance_mm)``: the index of the nearest slice in ``datasets``, the point's column
        and row in DICOM image coordinates (PS3.3 C.18.6.1.2: (0, 0) is the top left corner of the top left
        pixel, so that pixel's centre is (0.5, 0.5)), and the point's distance from the slice plane.

    Raises:
        ValueError: when ``datasets`` is empty or a slice lacks plane geometry.
    """
    if not datasets:
        raise ValueError("datasets must hold at least one slice, got none.")
    lps = np.asarray(center_ras, dtype=float) * _RAS_TO_LPS
    best = None
    for i, ds in enumerate(datasets):
        origin, along_row, along_col, spacing = plane_geometry(ds)
        offset = lps - origin
        distance = abs(float(offset @ np.cross(along_row, along_col)))
        if best is None or distance < best[3]:
            column = float(offset @ along_row) / spacing[1] + 0.5
            row = float(offset @ along_col) / spacing[0] + 0.5
            best = (i, column, row, distance)
    return best


def _codes(meaning: str) -> Any:
    import highdicom as hd

    return hd.sr.CodedConcept(value=meaning.lower().replace(" ", "-"), scheme_designator=LOCAL_SCHEME, meaning=meaning)


def write_measurement_report(
    path: PathLike,
    lesions: Sequence[Mapping[str, Any]],
    seg_path: PathLike,
    source_files: Sequence[PathLike],
    protected: Sequence[PathLike] = (),
    software_version: str = "0",
) -> Path:
    """
    Write the lesion list as a TID 1500 Measurement Report (Comprehensive 3D SR) of the source series, atomically.

    Args:
        path: destination, e.g. ``<case>/sr.dcm``.
        lesions: the lesion records of ``lesions.json`` (``center_mm`` RAS, ``diameter_mm``, ``volume_mm3``,
            ``score``, ``tier``), lesion ``n`` being segment ``n`` of the SEG.
        seg_path: the SEG written for these lesions by :py:func:`bundle.io.dicom.write_dicom_seg` (with lesions).
        source_files: the DICOM files of the source series.
        protected: input paths never to be written over.
        software_version: the bundle version (device observer and SoftwareVersions).

    Returns:
        the resolved destination path.

    Raises:
        ValueError: when a file is unreadable, or the SEG does not hold one segment per lesion.
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes

    try:
        seg = pydicom.dcmread(str(seg_path), stop_before_pixels=True)
    except Exception as e:
        raise ValueError(f"DICOM-SEG {str(seg_path)!r} is not readable: {e}") from e
    segments = list(seg.get("SegmentSequence", []))
    if lesions and len(segments) != len(lesions):
        raise ValueError(f"DICOM-SEG {str(seg_path)!r} has {len(segments)} segments for {len(lesions)} lesions.")
    datasets = []
    for f in source_files:
        try:
            datasets.append(pydicom.dcmread(str(f), stop_before_pixels=True))
        except Exception as e:
            raise ValueError(f"DICOM file {str(f)!r} is not readable: {e}") from e
    source = datasets[0]
    count = hd.sr.Measurement(name=_codes("Number of lesions"), value=len(lesions), unit=codes.UCUM.NoUnits)
    groups: list[Any] = [  # first, and always: a report with no finding still says so (TID 1501)
        hd.sr.MeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(uid=derived_uid(seg.SOPInstanceUID, "count"), identifier="lesion count"),
            measurements=[count],
        )
    ]
    for n, (lesion, segment) in enumerate(zip(lesions, segments), start=1):
        tracking = hd.sr.TrackingIdentifier(
            uid=str(segment.get("TrackingUID") or derived_uid(seg.SOPInstanceUID, n)),
            identifier=str(segment.get("TrackingID") or f"lesion {n}"),
        )
        measurements = [
            hd.sr.Measurement(name=codes.SCT.Diameter, value=float(lesion["diameter_mm"]), unit=codes.UCUM.Millimeter),
            hd.sr.Measurement(name=codes.SCT.Volume, value=float(lesion["volume_mm3"]), unit=codes.UCUM.CubicMillimeter),
            hd.sr.Measurement(name=_codes("Detection score"), value=float(lesion["score"]), unit=codes.UCUM.NoUnits),
        ]  # fmt: skip
        tier = hd.sr.QualitativeEvaluation(name=_codes("Routing tier"), value=_codes(f"{str(lesion['tier']).title()} tier"))
        groups.append(
            hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
                tracking_identifier=tracking,
                referenced_segment=hd.sr.ReferencedSegment(
                    sop_class_uid=seg.SOPClassUID,
                    sop_instance_uid=seg.SOPInstanceUID,
                    segment_number=n,
                    source_series=hd.sr.SourceSeriesForSegmentation(source.SeriesInstanceUID),
                ),
                finding_type=codes.SCT.Lesion,
                finding_category=codes.SCT.MorphologicallyAbnormalStructure,
                measurements=measurements,
                qualitative_evaluations=[tier],
            )
        )
        index, column, row, _ = slice_point(datasets, lesion["center_mm"])
        groups.append(
            hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
                tracking_identifier=tracking,
                referenced_region=hd.sr.ImageRegion(
                    graphic_type=hd.sr.GraphicTypeValues.POINT,
                    graphic_data=np.array([[column, row]]),
                    source_image=hd.sr.SourceImageForRegion(
                        referenced_sop_class_uid=datasets[index].SOPClassUID,
                        referenced_sop_instance_uid=datasets[index].SOPInstanceUID,
                    ),
                ),
                finding_type=codes.SCT.Lesion,
                finding_category=codes.SCT.MorphologicallyAbnormalStructure,
            )
        )
    observer = hd.sr.ObservationContext(
        observer_person_context=None,
        observer_device_context=hd.sr.ObserverContext(
            observer_type=codes.DCM.Device,
            observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
                uid=derived_uid("small-lesion bundle", software_version),
                name="small-lesion bundle",
                manufacturer_name="small-lesion bundle",
                model_name="GhostCAUNet",
            ),
        ),
    )
    report = hd.sr.MeasurementReport(
        observation_context=observer,
        procedure_reported=codes.LN.CTUnspecifiedBodyRegion if source.get("Modality") == "CT" else codes.SCT.ImagingProcedure,
        imaging_measurements=groups,
    )
    series_uid = derived_uid(source.SeriesInstanceUID, "SR", software_version)
    sr = hd.sr.Comprehensive3DSR(
        evidence=[*datasets, seg],
        content=report,
        series_instance_uid=series_uid,
        series_number=9902,
        sop_instance_uid=derived_uid(series_uid, seg.SOPInstanceUID, repr(list(map(dict, lesions)))),
        instance_number=1,
        manufacturer="small-lesion bundle",
        series_description="lesion measurements (research use)",
        is_complete=True,
        is_final=False,
        is_verified=False,
    )
    sr.SoftwareVersions = software_version
    scheme = pydicom.Dataset()  # declares the local scheme (PS3.3 C.12.1.1.4)
    scheme.CodingSchemeDesignator = LOCAL_SCHEME
    scheme.CodingSchemeName = "small-lesion bundle local codes"
    scheme.CodingSchemeResponsibleOrganization = "small-lesion bundle"
    sr.CodingSchemeIdentificationSequence = pydicom.Sequence([scheme])
    drop_incomplete_references(sr)
    buf = io.BytesIO()
    sr.save_as(buf)
    return atomic_write_bytes(path, buf.getvalue(), protected)
