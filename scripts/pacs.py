"""From PACS to PACS over DICOMweb: pull a study, run the bundle, store its DICOM-SEG and Structured Report back.

Usage (from the bundle root)::

    python -m scripts.pacs --url http://127.0.0.1:8042/dicom-web --study_uid 1.2.3... --work_dir runs/pacs

Other flags are settings of ``configs/inference.json`` (``--ckpt_path``, ``--roi_size``...).

Prints one JSON line (series processed, instances stored, instances the server held already, failed cases) and
exits with status 1 when a case failed. A rerun stores nothing twice. See :py:mod:`bundle.io.pacs`.
"""

from __future__ import annotations

import json
import sys

import fire

from bundle.io.errors import install_excepthook
from bundle.io.pacs import process_study


def main(url: str, study_uid: str, work_dir: str = "runs/pacs", series_uids: list[str] | None = None,
         quiet: bool = True, **overrides) -> None:  # fmt: skip
    """
    Args:
        url: the DICOMweb base address, e.g. http://127.0.0.1:8042/dicom-web (Orthanc's DICOMweb plugin).
        study_uid: the StudyInstanceUID to process.
        work_dir: local folder for the pulled series and the outputs. Defaults to runs/pacs.
        series_uids: only these series. Defaults to every CT and MR series of the study.
        quiet: no progress bar. Defaults to True.
        overrides: more ``configs/inference.json`` settings, as on the ``monai.bundle run`` line (e.g.
            ``--ckpt_path other.pt``).
    """
    install_excepthook()
    result = process_study(url, str(study_uid), work_dir, series_uids, overrides={"quiet": bool(quiet), **overrides})
    print(json.dumps({k: result[k] for k in ("study", "series", "cases_failed")} | {
        "stored": [r["sop_instance_uid"] for r in result["stored"]],
        "already_stored": [r["sop_instance_uid"] for r in result["already_stored"]],
    }))  # fmt: skip
    if result["cases_failed"]:
        sys.exit(1)


if __name__ == "__main__":
    fire.Fire(main)
