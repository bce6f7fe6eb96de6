"""LIDC-IDRI fixtures for the converter tests: a tiny CT DICOM series and the readers' XML outlining its nodules."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

N_SLICES, SIZE = 8, 32
PIXEL_MM, SLICE_MM = 0.8, 1.5
ORIGIN = (-10.0, -20.0, -100.0)  # ImagePositionPatient of pixel (0, 0) of the lowest slice (LPS mm)
NODULE = (12, 16)  # (x = column, y = row) of nodule A, on slices 2-5
NODULE_B = (25, 7)  # the single-reader nodule, slices 4-5


def write_series(folder: Path, patient: str, seed: int = 0) -> tuple[list[str], str]:
    """8 CT slices of 32 x 32 (0.8 mm pixels, 1.5 mm apart), files named in shuffled order.

    HU: -800 everywhere, 0 inside nodule A (radius 4 px, slices 2-5) and nodule B (radius 3 px, slices 4-5).
    Returns the SOPInstanceUIDs by slice (lowest z first) and the SeriesInstanceUID.
    """
    folder.mkdir(parents=True, exist_ok=True)
    series_uid, study_uid = generate_uid(), generate_uid()
    names = list(range(N_SLICES))
    random.Random(seed).shuffle(names)
    rows, cols = np.mgrid[:SIZE, :SIZE]
    uids = []
    for k in range(N_SLICES):
        hu = np.full((SIZE, SIZE), -800, dtype=np.int16)  # (row, column)
        if 2 <= k <= 5:
            hu[(cols - NODULE[0]) ** 2 + (rows - NODULE[1]) ** 2 <= 16] = 0
        if 4 <= k <= 5:
            hu[(cols - NODULE_B[0]) ** 2 + (rows - NODULE_B[1]) ** 2 <= 9] = 0
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        path = folder / f"{names[k]:06d}.dcm"
        ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
        ds.Modality, ds.PatientID, ds.SeriesNumber, ds.InstanceNumber = "CT", patient, 1, N_SLICES - k
        ds.ImagePositionPatient = [ORIGIN[0], ORIGIN[1], ORIGIN[2] + k * SLICE_MM]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing, ds.SliceThickness = [PIXEL_MM, PIXEL_MM], SLICE_MM
        ds.Rows, ds.Columns = SIZE, SIZE
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.RescaleSlope, ds.RescaleIntercept = 1.0, -1024.0
        ds.PixelData = (hu + 1024).astype(np.uint16).tobytes()
        ds.save_as(str(path), enforce_file_format=True)
        uids.append(ds.SOPInstanceUID)
    return uids, series_uid


def circle(cx: float, cy: float, r: float) -> list[tuple[int, int]]:
    """An LIDC-like outline: the ordered pixel chain of a circle."""
    points: list[tuple[int, int]] = []
    for t in np.linspace(0, 2 * np.pi, 72, endpoint=False):
        p = (int(round(cx + r * np.cos(t))), int(round(cy + r * np.sin(t))))
        if not points or points[-1] != p:
            points.append(p)
    return points


def roi_xml(k: int, uids: list[str], points: list[tuple[int, int]], use_uid: bool = True,
            inclusion: bool = True) -> str:
    uid = f"<imageSOP_UID>{uids[k]}</imageSOP_UID>" if use_uid else ""
    edges = "".join(f"<edgeMap><xCoord>{x}</xCoord><yCoord>{y}</yCoord></edgeMap>" for x, y in points)
    return (f"<roi><imageZposition>{ORIGIN[2] + k * SLICE_MM:.6f} </imageZposition>{uid}"
            f"<inclusion>{'TRUE' if inclusion else 'FALSE'}</inclusion>{edges}</roi>")


def nodule_xml(nodule_id: str, rois: list[str]) -> str:
    return f"<unblindedReadNodule><noduleID>{nodule_id}</noduleID>{''.join(rois)}</unblindedReadNodule>"


def lidc_xml(series_uid: str, sessions: list[list[str]]) -> str:
    body = "".join(
        f"<readingSession><annotationVersion>3.12</annotationVersion>"
        f"<servicingRadiologistID>reader{i}</servicingRadiologistID>{''.join(nodules)}"
        f"<nonNodule><nonNoduleID>n</nonNoduleID><imageZposition>0</imageZposition><locus><xCoord>1</xCoord>"
        f"<yCoord>1</yCoord></locus></nonNodule></readingSession>"
        for i, nodules in enumerate(sessions)
    )
    return (f'<?xml version="1.0" encoding="UTF-8"?><LidcReadMessage uid="1" xmlns="http://www.nih.gov">'
            f"<ResponseHeader><SeriesInstanceUid>{series_uid}</SeriesInstanceUid></ResponseHeader>{body}"
            f"</LidcReadMessage>")


def standard_sessions(uids: list[str]) -> list[list[str]]:
    """Readers 0-2 outline nodule A (overlapping circles); reader 3 outlines nodule B alone; reader 0 also
    marks a < 3 mm nodule by its centre (one point). Reader 2's contours carry no SOP UID (matched by z)."""
    a0 = nodule_xml("A0", [roi_xml(k, uids, circle(12, 16, 5)) for k in range(2, 6)])
    a1 = nodule_xml("A1", [roi_xml(k, uids, circle(13, 16, 6)) for k in range(2, 6)])
    a2 = nodule_xml("A2", [roi_xml(k, uids, circle(12, 17, 5), use_uid=False) for k in range(3, 6)])
    b3 = nodule_xml("B3", [roi_xml(k, uids, circle(*NODULE_B, 4)) for k in (4, 5)])
    small = nodule_xml("small", [roi_xml(1, uids, [(5, 27)])])
    return [[a0, small], [a1], [a2], [b3]]


def write_case(folder: Path, patient: str, seed: int = 0, sessions=None, series_uid: str | None = None) -> Path:
    uids, uid = write_series(folder, patient, seed)
    xml = folder / "069.xml"
    xml.write_text(lidc_xml(series_uid or uid, (sessions or standard_sessions)(uids)))
    return xml


def ras_mm(x: float, y: float, k: float) -> list[float]:
    """World RAS mm of pixel (x, y) on slice k, from the DICOM geometry (LPS -> RAS flips x and y)."""
    return [-(ORIGIN[0] + x * PIXEL_MM), -(ORIGIN[1] + y * PIXEL_MM), ORIGIN[2] + k * SLICE_MM]


def kept(entry: dict) -> list[dict]:
    return [les for les in entry["lesions"] if not les["ignore"]]
