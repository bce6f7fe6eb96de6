"""Reading the LIDC-IDRI readers' XML (``LidcReadMessage``, namespace ``http://www.nih.gov``) into readers' nodules.

Each ``readingSession`` is one reader; each of its ``unblindedReadNodule`` is a :py:class:`LidcNodule` made of
``roi`` contours (:py:class:`LidcRoi`: ``edgeMap`` x = column, y = row, on the slice with its ``imageSOP_UID``,
else at its ``imageZposition``; ``inclusion=FALSE`` contours are holes). ``nonNodule`` marks are not lesions and
are not read. :py:mod:`bundle.data.converters.lidc_consensus` rasterises and clusters the nodules,
:py:mod:`bundle.data.converters.lidc` converts whole series.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bundle.data.converters.common import ConversionError

__all__ = ["LIDC_NAMESPACE", "LidcRoi", "LidcNodule", "LidcReading", "is_lidc_xml", "read_lidc_xml"]

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
