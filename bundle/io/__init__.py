"""Reading inputs and writing outputs.

- :py:mod:`~bundle.io.readers`: volume and 2D image readers (``LargestSeriesITKReader``, ``LoadVolumed``, ``load_2d``);
- :py:mod:`~bundle.io.dicom_series`: DICOM series folders grouped, sorted and read with pydicom as ITK's GDCM does;
- :py:mod:`~bundle.io.cases`: case discovery in a dataset folder (``scan_dataset``, ``list_cases``);
- :py:mod:`~bundle.io.checks`: checks that an image read is one the bundle can process;
- :py:mod:`~bundle.io.dicom`: DICOM series identifiers and DICOM SEG outputs;
- :py:mod:`~bundle.io.atomic`: the one atomic file writer, which never writes over an input;
- :py:mod:`~bundle.io.writers`: per-case outputs (seg.nii.gz, lesions.json, overlay.png) and summary.json;
- :py:mod:`~bundle.io.overlay`: the overlay.png rendering;
- :py:mod:`~bundle.io.errors`: one-line error descriptions and records;
- :py:mod:`~bundle.io.arguments`: command-line values in the forms the bundle's functions take.
"""

from __future__ import annotations

from .atomic import atomic_save_nifti, atomic_write_bytes, atomic_write_text
from .overlay import render_overlay
from .writers import (
    case_done,
    check_output_dir,
    safe_case_name,
    write_case_outputs,
    write_summary,
)

__all__ = [
    "atomic_save_nifti",
    "atomic_write_bytes",
    "atomic_write_text",
    "case_done",
    "check_output_dir",
    "render_overlay",
    "safe_case_name",
    "write_case_outputs",
    "write_summary",
]
