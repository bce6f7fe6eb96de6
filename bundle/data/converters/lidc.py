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
"""

from __future__ import annotations

import logging
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from scipy.spatial import cKDTree
from skimage.draw import polygon, polygon_perimeter

from bundle.metrics.agreement import lesion_agreement, pooled_agreement, reader_marks
from bundle.data.converters.decathlon import (
    ConversionError,
    ConversionReport,
    check_split_args,
    run_cases,
    size_band,
    write_split_datalist,
)
from bundle.data.synthetic.synthesis import lesion_record

__all__ = [
    "LIDC_NAMESPACE",
    "LidcRoi",
    "LidcNodule",
    "LidcReading",
    "LidcAnnotation",
    "LidcConversionReport",
    "is_lidc_xml",
    "read_lidc_xml",
    "find_lidc_cases",
    "rasterize_nodule",
    "cluster_annotations",
    "consensus_lesions",
    "convert_lidc",
]

logger = logging.getLogger(__name__)

LIDC_NAMESPACE = "http://www.nih.gov"


@dataclass
class LidcRoi:
    """One contour of one reader's nodule on one slice.

    Attributes:
        z_position: ``imageZposition`` (mm), or None when absent.
        sop_uid: ``imageSOP_UID`` of the slice, or None when absent.
        inclusion: False for an exclusion contour (a hole).
        points: int array (N, 2) of ``(x, y)`` = (column, row) pixel positions, 0-based.
    """

    z_position: float | None
    sop_uid: str | None
    inclusion: bool
    points: np.ndarray


@dataclass
class LidcNodule:
    """One reader's nodule (``unblindedReadNodule``).

    Attributes:
        reader: index of the ``readingSession`` in the XML (0-based).
        reader_id: its ``servicingRadiologistID`` (or ``"session<i>"``).
        nodule_id: its ``noduleID``.
        rois: its contours.
    """

    reader: int
    reader_id: str
    nodule_id: str
    rois: list[LidcRoi] = field(default_factory=list)


@dataclass
class LidcReading:
    """The content of one LIDC XML file.

    Attributes:
        path: the XML file.
        series_uid: ``ResponseHeader/SeriesInstanceUid``, or None when absent.
        reader_ids: one id per ``readingSession`` (a reader who marked nothing still counts).
        nodules: every reader's nodules.
    """

    path: Path
    series_uid: str | None
    reader_ids: list[str]
    nodules: list[LidcNodule]


def _kappa_text(value: float | None) -> str:
    return "undefined" if value is None else f"{value:.3f}"


@dataclass
class LidcConversionReport(ConversionReport):
    """:py:class:`~bundle.data.converters.decathlon.ConversionReport` plus the readers' lesion-level agreement.

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


def _local(tag: str) -> str:
    """Tag name without its ``{namespace}`` (old LIDC files have none)."""
    return tag.rsplit("}", 1)[-1]


def _children(element: ET.Element, name: str) -> list[ET.Element]:
    return [c for c in element if _local(c.tag) == name]


def _text(element: ET.Element, name: str) -> str | None:
    found = _children(element, name)
    return found[0].text.strip() if found and found[0].text is not None and found[0].text.strip() else None


def is_lidc_xml(path: str | os.PathLike) -> bool:
    """True when the file's first 4 KiB name a ``LidcReadMessage`` (CT reads; radiograph reads are ``IdriReadMessage``).

    Args:
        path: a file.
    """
    try:
        with open(path, "rb") as f:
            return b"LidcReadMessage" in f.read(4096)
    except OSError:
        return False


def read_lidc_xml(path: str | os.PathLike) -> LidcReading:
    """Parse an LIDC XML (``LidcReadMessage``, namespace ``http://www.nih.gov``) into readers' nodules.

    Args:
        path: the XML file.

    Returns:
        :py:class:`LidcReading`.

    Raises:
        ConversionError: naming ``path`` when it is not well-formed XML, not a ``LidcReadMessage``, has no
            ``readingSession``, or a ``roi`` lacks ``edgeMap`` points, has non-integer coordinates, or has
            neither ``imageSOP_UID`` nor ``imageZposition``.
    """
    path = Path(path)
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as e:
        raise ConversionError(path, f"cannot parse the LIDC XML ({type(e).__name__}: {e}).") from e
    if _local(root.tag) != "LidcReadMessage":
        raise ConversionError(path, f"root element must be LidcReadMessage, got {_local(root.tag)!r}.")
    headers = _children(root, "ResponseHeader")
    series_uid = _text(headers[0], "SeriesInstanceUid") if headers else None
    sessions = _children(root, "readingSession")
    if not sessions:
        raise ConversionError(path, "LIDC XML has no readingSession element.")
    reader_ids, nodules = [], []
    for r, session in enumerate(sessions):
        reader_id = _text(session, "servicingRadiologistID") or f"session{r}"
        reader_ids.append(reader_id)
        for n, read in enumerate(_children(session, "unblindedReadNodule")):
            nodule_id = _text(read, "noduleID") or f"nodule{n}"
            where = f"readingSession {r} ({reader_id}), nodule {nodule_id!r}"
            nodule = LidcNodule(reader=r, reader_id=reader_id, nodule_id=nodule_id)
            for k, roi in enumerate(_children(read, "roi")):
                try:
                    edges = _children(roi, "edgeMap")
                    xy = [[int(_text(e, "xCoord") or ""), int(_text(e, "yCoord") or "")] for e in edges]
                    points = np.array(xy, dtype=np.int64).reshape(-1, 2)
                    z_text = _text(roi, "imageZposition")
                    z = float(z_text) if z_text is not None else None
                except ValueError as e:
                    raise ConversionError(path, f"{where}, roi {k}: bad coordinate ({e}).") from e
                if points.shape[0] == 0:
                    raise ConversionError(path, f"{where}, roi {k}: no edgeMap point.")
                sop_uid = _text(roi, "imageSOP_UID")
                if sop_uid is None and z is None:
                    raise ConversionError(path, f"{where}, roi {k}: has neither imageSOP_UID nor imageZposition.")
                inclusion = (_text(roi, "inclusion") or "TRUE").upper() != "FALSE"
                nodule.rois.append(LidcRoi(z_position=z, sop_uid=sop_uid, inclusion=inclusion, points=points))
            if nodule.rois:
                nodules.append(nodule)
    return LidcReading(path=path, series_uid=series_uid, reader_ids=reader_ids, nodules=nodules)


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


@dataclass
class LidcAnnotation:
    """One reader's nodule rasterised in a box of the volume grid.

    Attributes:
        reader: reading session index.
        reader_id: the reader's id.
        nodule_id: the reader's nodule id.
        offset: int (3,), the box's first voxel in the volume.
        mask: bool (w, h, d), the nodule inside the box.
    """

    reader: int
    reader_id: str
    nodule_id: str
    offset: np.ndarray
    mask: np.ndarray


def _roi_region(points: np.ndarray, shape: tuple[int, int], include_contour: bool) -> tuple[np.ndarray, np.ndarray]:
    """(marked pixels, inside pixels) of one contour in a (W, H) box: ``points`` are (x, y) in the box."""
    marked = np.zeros(shape, dtype=bool)
    inside = np.zeros(shape, dtype=bool)
    if np.unique(points, axis=0).shape[0] < 3:  # a point (nodule < 3 mm: its centre) or a segment
        marked[points[:, 0], points[:, 1]] = True
        return marked, inside
    rr, cc = polygon(points[:, 0], points[:, 1], shape=shape)
    inside[rr, cc] = True
    rr, cc = polygon_perimeter(points[:, 0], points[:, 1], shape=shape)
    edge = np.zeros(shape, dtype=bool)
    edge[rr, cc] = True
    edge[points[:, 0], points[:, 1]] = True
    inside &= ~edge
    marked = inside | edge if include_contour or not inside.any() else inside.copy()
    return marked, inside


def rasterize_nodule(
    nodule: LidcNodule, slices: Sequence[int], volume_shape: Sequence[int], include_contour: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Rasterise one reader's nodule into a box of the volume grid.

    Args:
        nodule: the reader's nodule.
        slices: the volume slice index of each of ``nodule.rois``.
        volume_shape: ``(W, H, D)``, the volume's (column, row, slice) shape.
        include_contour: also mark the contour pixels. Defaults to False (LIDC outlines lie just outside the
            nodule); a contour with no inside pixel always marks its own pixels.

    Returns:
        ``(offset, mask)``: the box's first voxel (3,) and a bool mask of the box, (w, h, d).

    Raises:
        ValueError: when ``slices`` and ``nodule.rois`` differ in length or a point lies outside the slice.
    """
    if len(slices) != len(nodule.rois):
        raise ValueError(f"slices must give one index per roi ({len(nodule.rois)}), got {len(slices)}.")
    pts = np.concatenate([roi.points for roi in nodule.rois])
    width, height = int(volume_shape[0]), int(volume_shape[1])
    if (pts < 0).any() or (pts[:, 0] >= width).any() or (pts[:, 1] >= height).any():
        raise ValueError(
            f"nodule {nodule.nodule_id!r} of reader {nodule.reader_id}: contour points must lie inside the "
            f"{width} x {height} slice, got x in [{pts[:, 0].min()}, {pts[:, 0].max()}], "
            f"y in [{pts[:, 1].min()}, {pts[:, 1].max()}]."
        )
    lo = np.array([pts[:, 0].min(), pts[:, 1].min(), min(slices)])
    hi = np.array([pts[:, 0].max() + 1, pts[:, 1].max() + 1, max(slices) + 1])
    mask = np.zeros(tuple(hi - lo), dtype=bool)
    holes = np.zeros_like(mask)
    for roi, k in zip(nodule.rois, slices):
        marked, inside = _roi_region(roi.points - lo[:2], mask.shape[:2], include_contour)
        if roi.inclusion:
            mask[:, :, k - lo[2]] |= marked
        else:
            holes[:, :, k - lo[2]] |= inside
    return lo, mask & ~holes


def _world(idx: np.ndarray, affine: np.ndarray) -> np.ndarray:
    return idx @ affine[:3, :3].T + affine[:3, 3]  # (N, 3) voxel -> (N, 3) mm


def cluster_annotations(
    annotations: Sequence[tuple[np.ndarray, np.ndarray]], affine: np.ndarray, distance_mm: float
) -> list[list[int]]:
    """Group annotations whose voxels come within ``distance_mm`` of each other (transitively).

    Args:
        annotations: ``(offset, mask)`` boxes as :py:func:`rasterize_nodule` returns them (non-empty masks).
        affine: the volume's 4x4 voxel-to-world matrix.
        distance_mm: largest voxel-centre distance (mm) that links two annotations (>= 0).

    Returns:
        lists of annotation indices, each sorted, ordered by their first index.

    Raises:
        ValueError: when ``distance_mm`` is negative.
    """
    if distance_mm < 0:
        raise ValueError(f"distance_mm must be >= 0, got distance_mm={distance_mm}.")
    points = [_world(np.argwhere(m) + off, affine) for off, m in annotations]
    trees = [cKDTree(p) for p in points]
    lows = [p.min(axis=0) for p in points]
    highs = [p.max(axis=0) for p in points]
    parent = list(range(len(points)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(len(points)):
        for j in range(i + 1, len(points)):
            if (lows[i] > highs[j] + distance_mm).any() or (lows[j] > highs[i] + distance_mm).any():
                continue  # boxes too far apart
            dist, _ = trees[i].query(points[j], k=1, distance_upper_bound=distance_mm + 1e-6)
            if np.isfinite(dist).any():
                parent[find(j)] = find(i)
    groups: dict[int, list[int]] = {}
    for i in range(len(points)):
        groups.setdefault(find(i), []).append(i)
    return sorted(groups.values(), key=lambda g: g[0])


def consensus_lesions(
    annotations: Sequence[LidcAnnotation],
    n_readers: int,
    affine: np.ndarray,
    volume_shape: Sequence[int],
    consensus: int = 2,
    min_diameter_mm: float = 3.0,
    max_diameter_mm: float = 30.0,
    distance_mm: float = 1.0,
) -> tuple[np.ndarray, list[dict]]:
    """Cluster the readers' annotations into lesions and build the consensus label and lesion records.

    Args:
        annotations: the readers' rasterised nodules (non-empty masks).
        n_readers: reading sessions in the XML (the denominator of the agreement).
        affine: 4x4 voxel-to-world (RAS) matrix of the volume.
        volume_shape: ``(W, H, D)``.
        consensus: a voxel is lesion when at least this many distinct readers marked it. Defaults to 2.
        min_diameter_mm: smallest kept equivalent diameter. Defaults to 3.
        max_diameter_mm: largest kept equivalent diameter. Defaults to 30.
        distance_mm: linking distance of :py:func:`cluster_annotations`. Defaults to 1.

    Returns:
        ``(label, records)``: uint8 label (W, H, D) with the kept lesions at 1, and one record per lesion
        (:py:func:`bundle.data.synthetic.synthesis.lesion_record` plus ``readers`` (how many distinct readers marked it),
        ``reader_ids``, ``reader_sessions`` (their 0-based reading session indices), ``n_reading_sessions``,
        ``agreement`` (readers / sessions), ``consensus``,
        ``nodule_ids``, ``size_band``, ``ignore`` and, when ignored, ``ignore_reason``). The record of a lesion
        without a consensus mask describes the union of its readers' marks.
    """
    label = np.zeros(tuple(int(s) for s in volume_shape), dtype=np.uint8)
    records = []
    groups = cluster_annotations([(a.offset, a.mask) for a in annotations], affine, distance_mm)
    for group in groups:
        members = [annotations[i] for i in group]
        lo = np.min([a.offset for a in members], axis=0)
        hi = np.max([a.offset + a.mask.shape for a in members], axis=0)
        per_reader: dict[int, np.ndarray] = {}
        for a in members:
            marks = per_reader.setdefault(a.reader, np.zeros(tuple(hi - lo), dtype=bool))
            start = a.offset - lo
            marks[tuple(slice(s, s + n) for s, n in zip(start, a.mask.shape))] |= a.mask
        count = np.sum(list(per_reader.values()), axis=0)  # (w, h, d): readers marking each voxel
        n = len(per_reader)
        fields = {
            "readers": n,
            "reader_ids": sorted({a.reader_id for a in members}),
            "reader_sessions": sorted(int(r) for r in per_reader),
            "n_reading_sessions": int(n_readers),
            "agreement": round(n / max(int(n_readers), 1), 3),
            "consensus": int(consensus),
            "nodule_ids": [f"{a.reader_id}:{a.nodule_id}" for a in members],
            "source": "LIDC-IDRI",
        }
        core = count >= consensus
        reason = None
        if n < consensus:
            reason = f"marked by {n} of {n_readers} readers, fewer than consensus={consensus}"
        elif not core.any():
            reason = f"{n} readers marked it but no voxel is marked by {consensus} of them"
        if reason is not None:
            record = lesion_record(count > 0, affine, offset=lo, **fields)
        else:
            record = lesion_record(core, affine, offset=lo, **fields)
            d = record["diameter_mm"]
            if d < min_diameter_mm:
                reason = f"consensus diameter {d} mm < min_diameter_mm={min_diameter_mm}"
            elif d > max_diameter_mm:
                reason = f"consensus diameter {d} mm > max_diameter_mm={max_diameter_mm}"
            else:
                box = label[tuple(slice(a, b) for a, b in zip(lo, hi))]
                box[core] = 1
        record["size_band"] = size_band(record["diameter_mm"])
        record["ignore"] = reason is not None
        if reason is not None:
            record["ignore_reason"] = reason
        records.append(record)
    return label, records


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
