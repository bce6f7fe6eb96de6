"""Decathlon-style ``dataset.json`` -> our datalist, plus the pieces every converter shares.

Shared pieces (used by :py:mod:`bundle.data.converters.lidc` and :py:mod:`bundle.data.converters.isles`):

- :py:class:`ConversionError` (a ``ValueError`` naming the offending file) and :py:class:`ConversionReport`
  (cases converted, cases failed with their one-line reasons, warnings);
- :py:func:`read_nifti`, :py:func:`check_geometry`: read a NIfTI file / compare an image's and a label's grids;
- :py:func:`lesion_records_from_mask`: one lesion record per connected component
  (:py:func:`bundle.data.synthetic.synthesis.lesion_record`), with its size band;
- :py:func:`size_band`, :py:func:`patient_band`, :py:func:`stratified_split`: a patient-level training/validation
  split stratified by lesion size band, and :py:func:`write_split_datalist`, which writes the datalist.

A converter never stops at a bad case: the case is recorded in the report (``failed``) and in the datalist's
``"failed"`` list, and the rest is converted.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from scipy import ndimage

from bundle.data.datalist import write_datalist
from bundle.data.synthetic.synthesis import lesion_record

__all__ = [
    "SIZE_BANDS_MM",
    "ConversionError",
    "ConversionReport",
    "read_nifti",
    "check_geometry",
    "lesion_records_from_mask",
    "size_band",
    "patient_band",
    "check_split_args",
    "stratified_split",
    "write_split_datalist",
    "run_cases",
    "lesion_label",
    "convert_decathlon",
]

logger = logging.getLogger(__name__)

# the detection metrics' bands (bundle.metrics.lesion.SIZE_BANDS_MM; not imported here: that pulls in torch)
SIZE_BANDS_MM: tuple[tuple[float, float], ...] = ((3.0, 4.0), (4.0, 6.0), (6.0, 10.0), (10.0, 30.0))
NO_LESION_BAND = "none"
_STRATIFY = ("largest", "smallest")


class ConversionError(ValueError):
    """One case cannot be converted: ``path`` is the offending file, ``problem`` says what is wrong.

    ``str(error)`` is ``"<path>: <problem>"``.
    """

    def __init__(self, path: str | os.PathLike, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


def _reason(exc: BaseException, max_chars: int = 300) -> str:
    """One line for a foreign exception: ``Type: message`` (whitespace collapsed, cut to ``max_chars``)."""
    line = f"{type(exc).__name__}: {' '.join(str(exc).split()) or '(no message)'}"
    return line if len(line) <= max_chars else line[: max_chars - 3] + "..."


@dataclass
class ConversionReport:
    """What a converter did.

    Attributes:
        dataset: the data set's name (``"LIDC-IDRI"``, ``"ISLES22"``, or the ``dataset.json`` name).
        datalist: path of the written datalist, or None when no case was converted.
        converted: names of the converted cases.
        failed: one ``{"case", "file", "error"}`` per failed case; ``error`` is ``"<file>: <problem>"``.
        warnings: one-line notes that did not stop a case (e.g. ``numTraining`` disagreeing with the list).
        n_training: cases in the datalist's ``training`` list.
        n_validation: cases in its ``validation`` list.
        n_lesions: lesion records that are not ``ignore``.
        n_ignored: lesion records flagged ``ignore``.
    """

    dataset: str
    datalist: Path | None = None
    converted: list[str] = field(default_factory=list)
    failed: list[dict[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    n_training: int = 0
    n_validation: int = 0
    n_lesions: int = 0
    n_ignored: int = 0

    @property
    def ok(self) -> bool:
        """True when at least one case was converted and none failed."""
        return bool(self.converted) and not self.failed

    def add_failure(self, case: str, exc: BaseException, path: str | os.PathLike) -> None:
        """Record a failed case; ``path`` names the file when ``exc`` is not a :py:class:`ConversionError`."""
        if isinstance(exc, ConversionError):
            file, error = exc.path, str(exc)
        else:
            file, error = str(path), f"{path}: {_reason(exc)}"
        self.failed.append({"case": case, "file": file, "error": error})
        logger.warning("case %s failed: %s", case, error)

    def summary(self) -> str:
        """A few lines for a terminal: counts, the datalist path, then one line per failed case and warning."""
        lines = [
            f"{self.dataset}: {len(self.converted)} case(s) converted, {len(self.failed)} failed; "
            f"training {self.n_training}, validation {self.n_validation}; "
            f"{self.n_lesions} lesion(s) + {self.n_ignored} ignored record(s).",
            f"datalist: {self.datalist if self.datalist is not None else '(none written: no case converted)'}",
        ]
        lines += [f"FAILED {f['case']}: {f['error']}" for f in self.failed]
        lines += [f"warning: {w}" for w in self.warnings]
        return "\n".join(lines)


def read_nifti(path: str | os.PathLike, what: str = "image") -> tuple[np.ndarray, np.ndarray]:
    """Read a NIfTI file's data (all of it, so a truncated file is caught here) and its RAS affine.

    Args:
        path: the ``.nii``/``.nii.gz`` file.
        what: word used in error messages (``"image"``, ``"label"``, ``"mask"``). Defaults to ``"image"``.

    Returns:
        ``(data, affine)``: the array as stored (no scaling to float unless the header asks for it) and the 4x4
        voxel-to-world matrix nibabel reports (sform if set, else qform).

    Raises:
        ConversionError: when the file does not exist or cannot be read as NIfTI (message names the file).
    """
    path = Path(path)
    if not path.is_file():
        raise ConversionError(path, f"{what} file does not exist.")
    try:
        image = nib.load(str(path))
        data = np.asanyarray(image.dataobj)
    except Exception as e:  # nibabel raises many kinds (ImageFileError, EOFError, zlib.error, OSError)
        raise ConversionError(path, f"cannot read the {what} as NIfTI ({_reason(e)}).") from e
    return data, np.asarray(image.affine, dtype=np.float64)


def check_geometry(
    image_shape: Sequence[int],
    image_affine: np.ndarray,
    label_shape: Sequence[int],
    label_affine: np.ndarray,
    label_path: str | os.PathLike,
    image_path: str | os.PathLike,
    atol: float = 1e-3,
) -> None:
    """Check that a label lies on its image's voxel grid: same spatial shape, affines equal within ``atol``.

    The image may carry extra trailing (channel) dimensions, e.g. MSD's 4-modality ``(H, W, D, 4)`` images.

    Args:
        image_shape: the image's array shape, ``(H, W, D[, C])``.
        image_affine: its 4x4 affine.
        label_shape: the label's array shape, ``(H, W, D)``.
        label_affine: its 4x4 affine.
        label_path: the label file (named in the error).
        image_path: the image file (named in the error).
        atol: largest allowed absolute difference of any affine entry (mm). Defaults to 1e-3.

    Raises:
        ConversionError: naming ``label_path``, the image it was compared to, and both shapes or the largest
            affine difference.
    """
    if len(label_shape) != 3 or tuple(image_shape[:3]) != tuple(label_shape):
        raise ConversionError(
            label_path,
            f"geometry mismatch: label shape {tuple(label_shape)} does not match the spatial shape "
            f"{tuple(image_shape[:3])} of image {image_path}.",
        )
    diff = float(np.max(np.abs(np.asarray(image_affine, float) - np.asarray(label_affine, float))))
    if not diff <= atol:  # also catches NaN
        raise ConversionError(
            label_path,
            f"geometry mismatch: label affine differs from the affine of image {image_path} by up to {diff:.4g} "
            f"(tolerance {atol}).",
        )


def size_band(diameter_mm: float, bands: Sequence[Sequence[float]] = SIZE_BANDS_MM) -> str:
    """Name of the size band holding a diameter: ``"3-4"``, ``"4-6"``, ``"6-10"``, ``"10-30"``, else ``"<3"``/``">30"``.

    Bands are half-open ``[lo, hi)`` as in the metrics, except that the last band also holds its upper edge
    (a 30.0 mm lesion is ``"10-30"``, as the 3-30 mm inclusion rule keeps it).

    Args:
        diameter_mm: equivalent diameter in mm.
        bands: ``(lo, hi)`` bands in increasing order. Defaults to :py:data:`SIZE_BANDS_MM`.

    Returns:
        the band's name ``f"{lo:g}-{hi:g}"``, or ``f"<{lo:g}"`` / ``f">{hi:g}"`` outside all bands.
    """
    for lo, hi in bands:
        if lo <= diameter_mm < hi:
            return f"{lo:g}-{hi:g}"
    if diameter_mm == bands[-1][1]:
        return f"{bands[-1][0]:g}-{bands[-1][1]:g}"
    return f"<{bands[0][0]:g}" if diameter_mm < bands[0][0] else f">{bands[-1][1]:g}"


def lesion_records_from_mask(
    mask: np.ndarray, affine: np.ndarray, connectivity: int = 3, **fields: Any
) -> list[dict]:
    """One lesion record per connected component of a binary mask.

    Args:
        mask: binary array (H, W, D); any non-zero voxel is lesion.
        affine: its 4x4 voxel-to-world (RAS) matrix.
        connectivity: 1 (faces), 2 (+ edges) or 3 (+ corners: 26-connectivity). Defaults to 3.
        fields: extra entries copied into every record.

    Returns:
        records as :py:func:`bundle.data.synthetic.synthesis.lesion_record` builds them, plus ``size_band``; in the order
        ``scipy.ndimage.label`` numbers the components.

    Raises:
        ValueError: when ``mask`` is not 3-D or ``connectivity`` is not 1, 2 or 3.
    """
    mask = np.asarray(mask) != 0
    if mask.ndim != 3:
        raise ValueError(f"mask must be 3-D (H, W, D), got shape {mask.shape}.")
    if connectivity not in (1, 2, 3):
        raise ValueError(f"connectivity must be 1, 2 or 3, got connectivity={connectivity}.")
    labels, _ = ndimage.label(mask, structure=ndimage.generate_binary_structure(3, connectivity))
    records = []
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        record = lesion_record(labels[box] == index, affine, offset=[s.start for s in box], **fields)
        record["size_band"] = size_band(record["diameter_mm"])
        records.append(record)
    return records


def patient_band(lesions: Iterable[Mapping[str, Any]], stratify_by: str = "largest") -> str:
    """The size band a patient is stratified by: the band of its largest (or smallest) non-ignored lesion.

    Args:
        lesions: the patient's lesion records (all cases of the patient together).
        stratify_by: ``"largest"`` or ``"smallest"``. Defaults to ``"largest"``.

    Returns:
        a :py:func:`size_band` name, or ``"none"`` when the patient has no non-ignored lesion.

    Raises:
        ValueError: when ``stratify_by`` is neither ``"largest"`` nor ``"smallest"``.
    """
    if stratify_by not in _STRATIFY:
        raise ValueError(f"stratify_by must be one of {_STRATIFY}, got stratify_by={stratify_by!r}.")
    diameters = [float(les["diameter_mm"]) for les in lesions if not les.get("ignore", False)]
    if not diameters:
        return NO_LESION_BAND
    return size_band(max(diameters) if stratify_by == "largest" else min(diameters))


def check_split_args(val_fraction: float, stratify_by: str = "largest") -> None:
    """Check the split arguments every converter takes, before any case is converted.

    Raises:
        ValueError: when ``val_fraction`` is outside [0, 1) or ``stratify_by`` is not ``"largest"``/``"smallest"``.
    """
    if not 0.0 <= float(val_fraction) < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got val_fraction={val_fraction}.")
    if stratify_by not in _STRATIFY:
        raise ValueError(f"stratify_by must be one of {_STRATIFY}, got stratify_by={stratify_by!r}.")


def stratified_split(
    groups: Mapping[str, str], val_fraction: float = 0.3, seed: int = 0
) -> tuple[list[str], list[str]]:
    """Split group ids (patients) into training and validation, stratified by each group's band.

    The validation total is ``round(n * val_fraction)`` (halves round up). It is shared out over the bands in
    proportion to their sizes by the largest-remainder method (ties: the band listed first in size order), so
    each band gets ``floor`` or ``ceil`` of its share. Within a band the ids are sorted, then permuted by
    ``numpy.random.default_rng([seed, band index])``: the same inputs and seed give the same split.

    Args:
        groups: group id -> band name (e.g. from :py:func:`patient_band`).
        val_fraction: share of groups for validation, in [0, 1). Defaults to 0.3.
        seed: seed of the permutation. Defaults to 0.

    Returns:
        ``(training ids, validation ids)``, each sorted.

    Raises:
        ValueError: when ``val_fraction`` is outside [0, 1).
    """
    check_split_args(val_fraction)
    order = [f"{lo:g}-{hi:g}" for lo, hi in SIZE_BANDS_MM]
    bands = sorted(set(groups.values()), key=lambda b: (order.index(b) if b in order else len(order), b))
    members = {b: sorted(g for g, band in groups.items() if band == b) for b in bands}
    total = math.floor(len(groups) * float(val_fraction) + 0.5)
    share = {b: len(members[b]) * float(val_fraction) for b in bands}
    quota = {b: math.floor(share[b]) for b in bands}
    by_remainder = sorted(bands, key=lambda b: -(share[b] - quota[b]))  # stable: ties keep size order
    for b in by_remainder[: max(0, total - sum(quota.values()))]:
        quota[b] += 1
    train, val = [], []
    for index, b in enumerate(bands):
        ids = list(members[b])
        permuted = [ids[i] for i in np.random.default_rng([int(seed), index]).permutation(len(ids))]
        val += permuted[: quota[b]]
        train += permuted[quota[b]:]
    return sorted(train), sorted(val)


def write_split_datalist(
    path: str | os.PathLike,
    entries: Sequence[dict],
    header: Mapping[str, Any],
    report: ConversionReport,
    val_fraction: float = 0.3,
    seed: int = 0,
    stratify_by: str = "largest",
    validation: Sequence[dict] | None = None,
) -> Path | None:
    """Split converted cases by patient (stratified by size band) and write the datalist.

    Args:
        path: the datalist ``.json`` to write.
        entries: converted cases, each with ``image``, ``label``, ``case``, ``patient``, ``lesions``.
        header: top-level keys (``name``, ``description``, ``modality``, ...).
        report: updated in place (``datalist``, counts); its ``failed`` list goes into the file as ``"failed"``.
        val_fraction: share of patients for validation. Defaults to 0.3.
        seed: split seed. Defaults to 0.
        stratify_by: band of each patient's ``"largest"`` or ``"smallest"`` lesion. Defaults to ``"largest"``.
        validation: a given validation list; when not None, ``entries`` all go to training and no split is made.

    Returns:
        the datalist path, or None (nothing written) when there is no entry at all.

    Raises:
        ValueError: on a bad ``val_fraction`` or ``stratify_by``.
    """
    check_split_args(val_fraction, stratify_by)
    validation = list(validation) if validation is not None else None
    if not entries and not validation:
        return None
    lesions_of: dict[str, list] = {}
    for e in entries:
        lesions_of.setdefault(e["patient"], []).extend(e["lesions"])
    bands = {p: patient_band(les, stratify_by) for p, les in lesions_of.items()}
    for e in list(entries) + (validation or []):
        e["size_band"] = patient_band(e["lesions"], stratify_by)
    if validation is None:
        train_ids, val_ids = stratified_split(bands, val_fraction, seed)
        split = {
            "rule": f"by patient, stratified by the size band of each patient's {stratify_by} non-ignored lesion "
            "(largest-remainder quota per band, seeded permutation within a band)",
            "val_fraction": val_fraction,
            "seed": seed,
            "bands": {
                b: {
                    "training": sum(bands[p] == b for p in train_ids),
                    "validation": sum(bands[p] == b for p in val_ids),
                }
                for b in sorted(set(bands.values()))
            },
        }
        val_set = set(val_ids)
        training = [e for e in entries if e["patient"] not in val_set]
        validation = [e for e in entries if e["patient"] in val_set]
    else:
        split = {"rule": "validation list given by the source"}
        training = list(entries)
    everything = training + validation
    datalist = {
        **header,
        "split": split,
        "training": training,
        "validation": validation,
        "failed": list(report.failed),
    }
    written = write_datalist(path, datalist)
    report.datalist = written
    report.n_training, report.n_validation = len(training), len(validation)
    report.n_lesions = sum(not les.get("ignore", False) for e in everything for les in e["lesions"])
    report.n_ignored = sum(bool(les.get("ignore", False)) for e in everything for les in e["lesions"])
    return written


def run_cases(
    cases: Sequence[Mapping[str, Any]],
    convert_one: Callable[[Mapping[str, Any]], dict],
    report: ConversionReport,
) -> list[dict]:
    """Convert cases one by one; a case that raises is recorded in ``report.failed`` and the rest go on.

    Args:
        cases: each with ``case`` (its name) and ``path`` (the file or folder to name when an error is not a
            :py:class:`ConversionError`).
        convert_one: returns the datalist entry of a case.
        report: updated in place (``converted``, ``failed``).

    Returns:
        the entries of the converted cases, in input order.
    """
    entries = []
    for case in cases:
        try:
            entry = convert_one(case)
        except Exception as e:  # one bad case must never stop the batch
            logger.debug("case %s failed", case["case"], exc_info=e)
            report.add_failure(case["case"], e, case["path"])
            continue
        entries.append(entry)
        report.converted.append(case["case"])
        logger.info("converted %s (%d lesion record(s))", case["case"], len(entry.get("lesions", [])))
    return entries


def _case_name(path: str) -> str:
    name = Path(path).name
    for suffix in (".nii.gz", ".nii"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def lesion_label(
    label: np.ndarray,
    affine: np.ndarray,
    label_path: Path,
    out_path: Path,
    label_values: Sequence[int] | None = None,
) -> tuple[np.ndarray, str]:
    """The binary lesion mask of a label, and the label file the datalist should point to.

    The source label is used as it is when it is already binary (values in {0, 1}) and every non-zero value is a
    lesion value; otherwise a binary ``uint8`` copy is written to ``out_path`` (the training config one-hot
    encodes the label into background/lesion, so it must be 0/1).

    Args:
        label: the label array (H, W, D).
        affine: its affine.
        label_path: the source label file.
        out_path: where a binary copy goes when one is needed.
        label_values: label values that are lesions; None: every non-zero value.

    Returns:
        ``(mask, path)``: bool mask (H, W, D) and the label file for the datalist.
    """
    values = np.unique(label)
    if label_values is None:
        mask = label != 0
        binary = bool(np.isin(values, (0, 1)).all())
    else:
        mask = np.isin(label, list(label_values))
        binary = bool(np.isin(values, (0, 1)).all()) and set(int(v) for v in values if v != 0) <= set(label_values)
    if binary:
        return mask, str(label_path)
    from bundle.io.atomic import atomic_save_nifti  # imports MONAI: only when a binary copy must be written

    atomic_save_nifti(out_path, mask.astype(np.uint8), affine, protected=[label_path])
    return mask, str(out_path)


def _resolve(base: Path, value: Any, key: str, index: int, dataset_json: Path) -> Path:
    if not isinstance(value, str) or not value:
        raise ConversionError(dataset_json, f"entry {index}: {key!r} must be a non-empty path string, got {value!r}.")
    path = Path(value)
    return path if path.is_absolute() else (base / path).resolve()


def convert_decathlon(
    dataset_json: str | os.PathLike,
    output_dir: str | os.PathLike | None = None,
    val_fraction: float = 0.3,
    seed: int = 0,
    label_values: Sequence[int] | None = None,
    geometry_atol: float = 1e-3,
    stratify_by: str = "largest",
) -> ConversionReport:
    """Convert an MSD-style ``dataset.json`` into our datalist, checking every entry.

    Every ``training`` (and ``validation``, when present) entry must be a dict with ``image`` and ``label`` paths
    (relative to the ``dataset.json`` folder, as MSD writes ``./imagesTr/x.nii.gz``) that exist, can be read as
    NIfTI, and share one voxel grid (:py:func:`check_geometry`). A bad entry is recorded (one line naming the file
    and the problem) and skipped. Lesion records come from the connected components (26-connectivity) of the
    lesion mask. Images are referenced in place; labels too when they are already binary, else a binary copy is
    written to ``<output_dir>/labels/``. Without a ``validation`` list, the cases are split with
    ``val_fraction``, each case its own patient, stratified by size band.
    MSD's ``test`` list (images without labels) is not used. ``numTraining`` disagreeing with the ``training``
    list is a warning.

    Args:
        dataset_json: the ``dataset.json`` file, or the folder holding it.
        output_dir: folder for ``datalist.json`` (and any binary label copies); None: the ``dataset.json``
            folder. Defaults to None.
        val_fraction: share of cases for validation when the file has no ``validation`` list. Defaults to 0.3.
        seed: split seed. Defaults to 0.
        label_values: label values that are lesions (e.g. ``[2]`` for MSD liver tumours); None: every non-zero
            value. Defaults to None.
        geometry_atol: tolerance on affine entries (mm). Defaults to 1e-3.
        stratify_by: ``"largest"`` or ``"smallest"`` lesion sets a case's band. Defaults to ``"largest"``.

    Returns:
        :py:class:`ConversionReport`; its ``datalist`` is ``<output_dir>/datalist.json`` (None if no case
        converted).

    Raises:
        ValueError: when ``dataset_json`` is missing, not JSON, or has no ``training`` list, or on a bad
            ``val_fraction``, ``stratify_by`` or ``label_values``.
    """
    check_split_args(val_fraction, stratify_by)
    if label_values is not None and (not label_values or any(int(v) <= 0 for v in label_values)):
        raise ValueError(f"label_values must be None or positive label values, got label_values={label_values}.")
    path = Path(dataset_json)
    if path.is_dir():
        path = path / "dataset.json"
    if not path.is_file():
        raise ValueError(f"dataset_json must be an existing dataset.json (or its folder), got {str(dataset_json)!r}.")
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"dataset_json {path} is not valid JSON: {e}.") from e
    if not isinstance(meta, dict) or not isinstance(meta.get("training"), list):
        keys = sorted(meta) if isinstance(meta, dict) else type(meta).__name__
        raise ValueError(f"dataset_json {path} must hold a 'training' list, got keys {keys}.")
    base = path.parent.resolve()
    out = Path(output_dir) if output_dir is not None else base
    report = ConversionReport(dataset=str(meta.get("name", path.parent.name)))
    n_declared = meta.get("numTraining")
    if n_declared is not None and n_declared != len(meta["training"]):
        report.warnings.append(
            f"{path}: numTraining is {n_declared} but the training list has {len(meta['training'])}."
        )

    def cases_of(key: str) -> list[dict]:
        cases = []
        for i, raw in enumerate(meta.get(key) or []):
            image = raw.get("image") if isinstance(raw, dict) else None
            name = _case_name(image) if isinstance(image, str) and image else f"{key}[{i}]"
            cases.append({"case": name, "path": str(path), "raw": raw, "index": i, "key": key})
        return cases

    def convert_one(case: Mapping[str, Any]) -> dict:
        raw, i, key = case["raw"], case["index"], case["key"]
        if not isinstance(raw, dict):
            raise ConversionError(path, f"{key} entry {i} must be a dict with 'image' and 'label', got {raw!r:.80}.")
        for k in ("image", "label"):
            if k not in raw:
                raise ConversionError(path, f"{key} entry {i} ({case['case']}) has no {k!r} key; keys: {sorted(raw)}.")
        image_path = _resolve(base, raw["image"], "image", i, path)
        label_path = _resolve(base, raw["label"], "label", i, path)
        for p, what in ((image_path, "image"), (label_path, "label")):
            if not p.is_file():
                raise ConversionError(p, f"{what} file does not exist ({key} entry {i} of {path}).")
        image, image_affine = read_nifti(image_path, "image")
        label, label_affine = read_nifti(label_path, "label")
        check_geometry(image.shape, image_affine, label.shape, label_affine, label_path, image_path, geometry_atol)
        mask, label_file = lesion_label(label, label_affine, label_path, out / "labels" / label_path.name, label_values)
        return {
            "case": case["case"],
            "patient": case["case"],
            "image": str(image_path),
            "label": label_file,
            "lesions": lesion_records_from_mask(mask, image_affine),
            "source": {"image": str(raw["image"]), "label": str(raw["label"])},
        }

    entries = run_cases(cases_of("training"), convert_one, report)
    validation = run_cases(cases_of("validation"), convert_one, report) if meta.get("validation") else None
    header = {
        "name": str(meta.get("name", path.parent.name)),
        "description": f"converted by bundle.data.converters.convert_decathlon from {path}",
        "source_description": meta.get("description", ""),
        "modality": meta.get("modality", {}),
        "labels": {"0": "background", "1": "lesion"},
        "source_labels": meta.get("labels", {}),
        "lesion_label_values": list(label_values) if label_values is not None else "all non-zero",
        "tensorImageSize": meta.get("tensorImageSize", "3D"),
    }
    write_split_datalist(
        out / "datalist.json", entries, header, report, val_fraction, seed, stratify_by, validation
    )
    return report
