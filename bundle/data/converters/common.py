"""The pieces every converter shares (:py:mod:`bundle.data.converters.decathlon`, ``isles`` and ``lidc``):

- :py:class:`ConversionError` (a ``ValueError`` naming the offending file) and :py:class:`ConversionReport`
  (cases converted, cases failed with their one-line reasons, warnings);
- :py:func:`read_nifti`, :py:func:`check_geometry`: read a NIfTI file / compare an image's and a label's grids;
- :py:func:`lesion_records_from_mask`: one lesion record per connected component
  (:py:func:`bundle.data.synthetic.lesion_params.lesion_record`), with its :py:func:`size_band`;
- :py:func:`lesion_label`: the binary lesion mask of a label and the label file the datalist should point to;
- :py:func:`run_cases`: convert case by case, recording failures.

The patient-level split and the datalist it writes are in :py:mod:`bundle.data.converters.split`.
A converter never stops at a bad case: the case is recorded in the report (``failed``) and in the datalist's
``"failed"`` list, and the rest is converted.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from scipy import ndimage

from bundle.data.synthetic.lesion_params import lesion_record

__all__ = [
    "SIZE_BANDS_MM",
    "ConversionError",
    "ConversionReport",
    "read_nifti",
    "check_geometry",
    "lesion_records_from_mask",
    "size_band",
    "run_cases",
    "lesion_label",
]

logger = logging.getLogger(__name__)

# the detection metrics' bands (bundle.metrics.lesion.SIZE_BANDS_MM; not imported here: that pulls in torch)
SIZE_BANDS_MM: tuple[tuple[float, float], ...] = ((3.0, 4.0), (4.0, 6.0), (6.0, 10.0), (10.0, 30.0))


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
        records as :py:func:`bundle.data.synthetic.lesion_params.lesion_record` builds them, plus ``size_band``;
        in the order ``scipy.ndimage.label`` numbers the components.

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
