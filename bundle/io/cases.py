"""Case discovery: which files and DICOM series folders of a folder are image volumes (cases), and why the rest
are not.

A *case* is one image volume: a NIfTI (``.nii``, ``.nii.gz``), NRRD (``.nrrd``, ``.nhdr``) or MetaImage (``.mha``,
``.mhd``) file, or one folder of DICOM files (a DICOM series folder). :func:`scan_dataset` lists the cases of a
folder and every entry that is not one (a file it could not classify, an empty folder, a folder of DICOM files
without image data), with a one-line reason; :func:`list_cases` returns the cases and logs the rest. Reading them is
:mod:`bundle.io.readers`' job.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import pydicom
from monai.config import PathLike

__all__ = ["VOLUME_SUFFIXES", "IMAGE_2D_SUFFIXES", "matching_suffix", "is_dicom_file", "scan_dataset", "list_cases"]

logger = logging.getLogger(__name__)

VOLUME_SUFFIXES: tuple[str, ...] = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
"""File name endings of single-file volumes that :func:`scan_dataset` lists as cases (lower case)."""

IMAGE_2D_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg")
"""File name endings of 2-D images, listed as cases only with ``include_2d=True`` (lower case)."""

# detached pixel-data files of a MetaImage (.mhd) or NRRD (.nhdr) header with the same stem
_DETACHED_DATA_SUFFIXES: tuple[str, ...] = (".raw.gz", ".raw", ".zraw", ".img")
_DETACHED_HEADER_SUFFIXES: tuple[str, ...] = (".mhd", ".nhdr")
# suffixes worth a (slower) pydicom probe when the 128-byte preamble + "DICM" is absent
_DICOM_PROBE_SUFFIXES: tuple[str, ...] = ("", ".dcm", ".dicom", ".ima")
# the pixel data elements of a DICOM image object (integer, float, double)
_DICOM_PIXEL_TAGS: tuple[str, ...] = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")

def matching_suffix(name: str, suffixes: Sequence[str]) -> str:
    """Return the first of ``suffixes`` that the lower-cased ``name`` ends with, or ``""``."""
    lower = name.lower()
    for suffix in suffixes:
        if lower.endswith(suffix):
            return suffix
    return ""


def is_dicom_file(path: PathLike) -> bool:
    """
    Whether ``path`` is a DICOM file.

    A file is DICOM if bytes 128-131 read ``DICM`` (the Part 10 preamble). Files without the preamble whose name
    has no suffix or ends with ``.dcm``, ``.dicom`` or ``.ima`` are probed with ``pydicom.dcmread(...,
    stop_before_pixels=True, force=True)`` and accepted if they carry ``SOPClassUID`` or ``Rows`` and ``Columns``.

    Args:
        path: the file to test.

    Returns:
        True for a DICOM file; False for anything else, including an unreadable file or a folder.
    """
    path = Path(path)
    try:
        with open(path, "rb") as stream:
            head = stream.read(132)
    except OSError:
        return False
    if len(head) == 132 and head[128:132] == b"DICM":
        return True
    if path.suffix.lower() not in _DICOM_PROBE_SUFFIXES or len(head) < 8:
        return False
    try:
        dataset = pydicom.dcmread(path, stop_before_pixels=True, force=True, defer_size="1 KB")
    except Exception:  # pydicom raises many kinds of errors on arbitrary bytes
        return False
    return "SOPClassUID" in dataset or ("Rows" in dataset and "Columns" in dataset)


def _classify_file(path: Path, siblings: set[str], include_2d: bool) -> tuple[str, str]:
    """
    Classify one file of a dataset folder.

    Returns:
        ``(kind, detail)`` with kind ``"volume"`` (detail: the matched suffix), ``"dicom"`` or ``"skip"`` (detail:
        the reason).
    """
    name = path.name
    if name.startswith("."):
        return "skip", "hidden file"
    suffix = matching_suffix(name, VOLUME_SUFFIXES)
    if suffix:
        return "volume", suffix
    suffix = matching_suffix(name, IMAGE_2D_SUFFIXES)
    if suffix:
        if include_2d:
            return "volume", suffix
        return "skip", f"2-D image ({suffix}); pass include_2d=True to list 2-D images as cases"
    suffix = matching_suffix(name, _DETACHED_DATA_SUFFIXES)
    if suffix:
        stem = name[: -len(suffix)]
        for header_suffix in _DETACHED_HEADER_SUFFIXES:
            if stem + header_suffix in siblings:
                return "skip", f"pixel data of the header {stem + header_suffix} (listed as its case)"
    if name.upper() == "DICOMDIR":
        return "skip", "DICOMDIR index file (the series folders it indexes are listed as cases)"
    if is_dicom_file(path):
        return "dicom", ""
    return "skip", f"not a recognised image file (NIfTI, NRRD, MetaImage or DICOM), suffix {path.suffix or 'none'!r}"


def _dicom_without_image(path: Path) -> str | None:
    """
    The SOP class name of a well-formed DICOM object without pixel data (a structured report, an RT structure set,
    a presentation state...), or None when the file may hold an image: it has pixel data, or it cannot be parsed or
    names no SOP class (a damaged file, which the reader reports as a failed case).
    """
    try:
        dataset = pydicom.dcmread(path, force=True, defer_size="1 KB")
    except Exception:  # pydicom raises many kinds of errors on damaged files
        return None
    if "SOPClassUID" not in dataset or any(tag in dataset for tag in _DICOM_PIXEL_TAGS):
        return None
    uid = dataset.SOPClassUID
    return str(getattr(uid, "name", "") or uid)


def _dicom_folder_skip_reason(files: Sequence[Path]) -> str:
    """
    Empty when a folder of DICOM ``files`` is a case (some file holds, or may hold, an image); else the one-line
    reason why it is not: every file is a well-formed DICOM object without pixel data. The files are read in order
    until the first image, so a series folder costs one header read.
    """
    classes: list[str] = []
    for path in files:
        sop_class = _dicom_without_image(path)
        if sop_class is None:
            return ""
        if sop_class not in classes:
            classes.append(sop_class)
    shown = ", ".join(classes[:3]) + (", ..." if len(classes) > 3 else "")
    return f"no image series: its {len(files)} DICOM file(s) hold no pixel data (SOP class {shown})"


def _unique_case_names(cases: list[dict], root: Path) -> None:
    """
    Make case names unique, in place.

    A name that occurs more than once becomes the case's path relative to ``root``, its parts joined with ``_``
    (``a/x.nii.gz`` -> ``a_x``); where that still collides (``x.nrrd`` beside ``x.mha``) the suffix is appended
    (``x_nrrd``, ``x_mha``).
    """
    for stage in ("relative", "suffix"):
        counts = Counter(case["case"] for case in cases)
        for case in cases:
            if counts[case["case"]] < 2:
                continue
            relative = Path(case["image"]).relative_to(root)
            suffix = matching_suffix(relative.name, VOLUME_SUFFIXES + IMAGE_2D_SUFFIXES)
            parts = [*relative.parts[:-1], relative.name[: len(relative.name) - len(suffix)]]
            if stage == "suffix" and suffix:
                parts.append(suffix.lstrip(".").replace(".", "_"))
            new_name = "_".join(p for p in parts if p) or root.resolve().name
            if new_name != case["case"]:
                logger.warning(
                    "case name %r occurs more than once; %s is named %r", case["case"], case["image"], new_name
                )
                case["case"] = new_name


def scan_dataset(dataset_dir: PathLike, include_2d: bool = False) -> tuple[list[dict], list[dict]]:
    """
    Find every case in a folder (recursively) and every file that is not one.

    Cases: each NIfTI (``.nii``, ``.nii.gz``), NRRD (``.nrrd``, ``.nhdr``) and MetaImage (``.mha``, ``.mhd``) file,
    and each folder that directly contains DICOM files (one DICOM series folder, possibly holding several series:
    :class:`LargestSeriesITKReader` reads the largest). With ``include_2d=True`` PNG and JPEG files are cases too.

    Args:
        dataset_dir: the folder to scan.
        include_2d: also list PNG/JPEG files as cases. Defaults to False.

    Returns:
        ``(cases, skipped)``: ``cases`` is a list of ``{"image": <path>, "case": <name>}`` sorted by case name,
        where the name is the file name without its image suffix (``x.nii.gz`` -> ``x``) or the DICOM folder's name
        (colliding names are replaced by the path relative to ``dataset_dir`` joined with ``_``); ``skipped`` is a
        list of ``{"path": <path>, "reason": <one line>}`` for every entry that is not (part of) a case: each file
        that is not an image, each hidden folder, each empty folder (no entry at all) and each folder whose DICOM
        files are all well-formed objects without pixel data (reports, structure sets). A folder of DICOM files
        that cannot be parsed is a case (the reader reports it as failed).

    Raises:
        ValueError: when ``dataset_dir`` is empty (a config without a default folder: pass ``--dataset_dir``), does
            not exist, is not a folder, or contains no files.
    """
    if not str(dataset_dir).strip():
        raise ValueError("dataset_dir is not set: pass --dataset_dir (the folder of scans to run on).")
    root = Path(dataset_dir)
    if not root.exists():
        raise ValueError(
            f"dataset_dir must be an existing folder, got dataset_dir={str(dataset_dir)!r} (does not exist)."
        )
    if not root.is_dir():
        raise ValueError(f"dataset_dir must be a folder, got dataset_dir={str(dataset_dir)!r} (a file).")
    cases: list[dict] = []
    skipped: list[dict] = []
    n_files = 0
    visited: set[str] = set()

    def unreadable(error: OSError) -> None:  # os.walk drops a folder it cannot list unless told
        skipped.append({"path": str(error.filename), "reason": f"folder cannot be read ({error.strerror})"})

    for folder, dir_names, file_names in os.walk(root, followlinks=True, onerror=unreadable):
        real = os.path.realpath(folder)
        if real in visited:  # a symbolic link back to a folder already scanned
            skipped.append({"path": folder, "reason": f"folder already scanned as {real} (symbolic link)"})
            dir_names[:] = []
            continue
        visited.add(real)
        hidden = sorted(d for d in dir_names if d.startswith("."))
        skipped.extend({"path": str(Path(folder, d)), "reason": "hidden folder (not scanned)"} for d in hidden)
        if not dir_names and not file_names and Path(folder) != root:
            skipped.append({"path": folder, "reason": "empty folder (no files, no subfolders)"})
        dir_names[:] = sorted(d for d in dir_names if not d.startswith("."))
        siblings = set(file_names)
        dicom_files: list[Path] = []
        for name in sorted(file_names):
            n_files += 1
            path = Path(folder, name)
            kind, detail = _classify_file(path, siblings, include_2d)
            if kind == "volume":
                cases.append({"image": str(path), "case": name[: len(name) - len(detail)]})
            elif kind == "dicom":
                dicom_files.append(path)
            else:
                skipped.append({"path": str(path), "reason": detail})
        reason = _dicom_folder_skip_reason(dicom_files) if dicom_files else ""
        if reason:
            skipped.append({"path": folder, "reason": reason})
        elif dicom_files:
            cases.append({"image": str(Path(folder)), "case": Path(folder).resolve().name})
    if n_files == 0:
        raise ValueError(f"dataset_dir must contain image files, got dataset_dir={str(dataset_dir)!r} (empty folder).")
    _unique_case_names(cases, root)
    cases.sort(key=lambda c: (c["case"], c["image"]))
    return cases, skipped


def list_cases(
    dataset_dir: PathLike, include_2d: bool = False, scan: tuple[list[dict], list[dict]] | None = None
) -> list[dict]:
    """
    List the cases of a folder, sorted by case name; log (WARNING) every entry that is not a case.

    See :func:`scan_dataset` for what a case is. ``configs/inference.json`` scans once (``dataset_scan``) and passes
    the scan here and its skipped entries to the evaluator, which lists them in ``summary.json``.

    Args:
        dataset_dir: the folder to scan (recursively).
        include_2d: also list PNG/JPEG files as cases. Defaults to False.
        scan: the ``(cases, skipped)`` of :func:`scan_dataset` on ``dataset_dir`` when already made (the folder is
            then not scanned again and ``include_2d`` is not used); None scans.

    Returns:
        a list of ``{"image": <path>, "case": <name>}``.

    Raises:
        ValueError: when ``dataset_dir`` does not exist, is not a folder, is empty, or holds no case.
    """
    cases, skipped = scan_dataset(dataset_dir, include_2d=include_2d) if scan is None else scan
    for entry in skipped:
        logger.warning("ignored %s: %s", entry["path"], entry["reason"])
    if not cases:
        reasons = "; ".join(f"{Path(e['path']).name}: {e['reason']}" for e in skipped[:3])
        raise ValueError(
            f"dataset_dir must contain at least one case (NIfTI, NRRD, MetaImage file or DICOM folder), got "
            f"dataset_dir={str(dataset_dir)!r} with {len(skipped)} skipped entries ({reasons})."
        )
    return cases
