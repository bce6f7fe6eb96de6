"""Output writing: atomic files, per-case outputs (seg.nii.gz, lesions.json, overlay.png) and summary.json."""

from __future__ import annotations

from .atomic import atomic_save_nifti, atomic_write_bytes, atomic_write_text
from .writers import (
    case_done,
    check_output_dir,
    render_overlay,
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
