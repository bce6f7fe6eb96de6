"""From PACS to PACS over DICOMweb: pull a study's image series, run the bundle on them, store the results back.

:func:`process_study` is the loop a hospital runs between its DICOM server and this bundle:

1. QIDO-RS: the study's CT and MR series (``dicomweb-client``'s ``search_for_series``);
2. WADO-RS: each series' instances into ``<work_dir>/inputs/<study>/<series>/`` (files already there are kept);
3. the bundle's own inference config (``configs/inference.json``, run in-process by ``monai.bundle.run``) with
   ``dicom_seg`` and ``dicom_sr`` on, one case per series, outputs in ``<work_dir>/outputs/<study>/``;
4. STOW-RS: each case's ``seg.dcm`` and ``sr.dcm``, unless the server already holds that SOP instance (a QIDO
   query by SOPInstanceUID first). The SEG and SR UIDs derive from the source series, the bundle version and the
   content (:py:func:`bundle.io.dicom.derived_uid`), so a rerun with the same result stores nothing twice, and a
   different result (another model version) arrives as new instances.

The result (series, what was stored or already there, failed cases) is written to ``<work_dir>/pacs_<study>.json``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pydicom
from monai.config import PathLike

from bundle.io.atomic import atomic_write_bytes, atomic_write_text
from bundle.io.dicom import SEG_DICOM_FILENAME
from bundle.io.dicom_sr import SR_DICOM_FILENAME
from bundle.io.writers import safe_case_name

__all__ = ["IMAGE_MODALITIES", "connect", "image_series", "pull_series", "store_if_absent", "process_study"]

IMAGE_MODALITIES = ("CT", "MR")
BUNDLE_ROOT = Path(__file__).resolve().parents[2]
_MODALITY, _SERIES_UID, _SERIES_NUMBER = "00080060", "0020000E", "00200011"


def connect(url: str) -> Any:
    """A ``dicomweb_client.DICOMwebClient`` for ``url`` (e.g. ``http://127.0.0.1:8042/dicom-web``)."""
    from dicomweb_client.api import DICOMwebClient

    if not url.startswith(("http://", "https://")):
        raise ValueError(f"url must be a DICOMweb base address starting with http:// or https://, got url={url!r}.")
    return DICOMwebClient(url=url.rstrip("/"))


def _value(attributes: Mapping[str, Any], tag: str) -> Any:
    values = attributes.get(tag, {}).get("Value") or [None]
    return values[0]


def image_series(client: Any, study_uid: str, series_uids: Sequence[str] | None = None) -> list[str]:
    """
    The study's CT and MR series (QIDO-RS), by series number; only ``series_uids`` when given.

    Raises:
        ValueError: when the study has no such series (or does not exist on the server).
        ConnectionError: when the server does not answer.
    """
    import requests

    try:
        found = client.search_for_series(study_instance_uid=study_uid)
    except requests.exceptions.RequestException as e:  # the innermost cause would not name the server
        raise ConnectionError(f"DICOMweb server {client.base_url} did not answer: {type(e).__name__}: {e}") from None
    rows = [
        (_value(s, _SERIES_NUMBER) or 0, _value(s, _SERIES_UID))
        for s in found
        if _value(s, _MODALITY) in IMAGE_MODALITIES and (not series_uids or _value(s, _SERIES_UID) in series_uids)
    ]
    if not rows:
        wanted = f" among series {list(series_uids)}" if series_uids else ""
        raise ValueError(f"study {study_uid} has no {' or '.join(IMAGE_MODALITIES)} series on {client.base_url}{wanted}.")
    return [uid for _, uid in sorted(rows)]


def pull_series(client: Any, study_uid: str, series_uid: str, folder: PathLike) -> int:
    """
    WADO-RS: every instance of a series into ``folder/<SOPInstanceUID>.dcm`` (atomically; existing files kept).

    Returns:
        the number of instances the server returned.
    """
    folder = Path(folder)
    datasets = client.retrieve_series(study_instance_uid=study_uid, series_instance_uid=series_uid)
    for ds in datasets:
        path = folder / f"{ds.SOPInstanceUID}.dcm"
        if not path.is_file():
            buffer = pydicom.filebase.DicomBytesIO()
            ds.save_as(buffer, enforce_file_format=True)
            atomic_write_bytes(path, buffer.getvalue())
    return len(datasets)


def store_if_absent(client: Any, path: PathLike) -> bool:
    """
    STOW-RS: store a DICOM file unless the server already holds its SOP instance.

    Returns:
        True when stored, False when the server had it already.
    """
    ds = pydicom.dcmread(str(path))
    held = client.search_for_instances(
        study_instance_uid=ds.StudyInstanceUID,
        series_instance_uid=ds.SeriesInstanceUID,
        search_filters={"SOPInstanceUID": ds.SOPInstanceUID},
    )
    if held:
        return False
    client.store_instances(datasets=[ds])
    return True


def process_study(
    url: str,
    study_uid: str,
    work_dir: PathLike,
    series_uids: Sequence[str] | None = None,
    config_file: PathLike | Sequence[PathLike] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """
    Pull a study from a DICOMweb server, run the bundle on its CT/MR series, store SEG + SR back (see module doc).

    Args:
        url: the server's DICOMweb base address, e.g. ``http://127.0.0.1:8042/dicom-web``.
        study_uid: the StudyInstanceUID.
        work_dir: the local folder for the pulled series, the bundle's outputs and ``pacs_<study>.json``.
        series_uids: process only these series. Defaults to every CT and MR series of the study.
        config_file: the bundle config(s). Defaults to ``configs/inference.json`` of this bundle.
        overrides: more config overrides (e.g. ``{"ckpt_path": ...}``), as on the ``monai.bundle run`` line.

    Returns:
        ``{"study", "series", "stored", "already_stored", "cases_failed", "summary"}``: the series processed, the
        SOP instances stored and those the server held already (``{"case", "file", "sop_instance_uid"}``), the
        failed cases (as in ``summary.json``) and the path of the bundle's ``summary.json``.

    Raises:
        ValueError: on a malformed ``url`` or a study without CT/MR series.
        ConnectionError: when the server does not answer.
    """
    from monai.bundle import run

    client = connect(url)
    series = image_series(client, study_uid, series_uids)
    work = Path(work_dir)
    inputs, outputs = work / "inputs" / study_uid, work / "outputs" / study_uid
    for uid in series:
        pull_series(client, study_uid, uid, inputs / uid)
    configs = config_file or str(BUNDLE_ROOT / "configs" / "inference.json")
    settings = {"bundle_root": str(BUNDLE_ROOT), "dataset_dir": str(inputs), "output_dir": str(outputs),
                "dicom_seg": True, "dicom_sr": True, **(overrides or {})}  # fmt: skip
    try:
        run(config_file=configs, **settings)
    except SystemExit as exc:  # the inference config exits with its one failure line when cases failed
        if exc.code not in (None, 0) and not (outputs / "summary.json").is_file():
            raise
    summary = json.loads((outputs / "summary.json").read_text())
    stored, already = [], []
    for case in summary.get("cases_done", []) + summary.get("cases_skipped", []):
        for name in (SEG_DICOM_FILENAME, SR_DICOM_FILENAME):
            path = outputs / safe_case_name(case) / name
            if not path.is_file():
                continue
            uid = str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)
            record = {"case": case, "file": str(path), "sop_instance_uid": uid}
            (stored if store_if_absent(client, path) else already).append(record)
    result = {
        "study": study_uid,
        "series": series,
        "stored": stored,
        "already_stored": already,
        "cases_failed": summary.get("cases_failed", []),
        "summary": str(outputs / "summary.json"),
    }
    atomic_write_text(work / f"pacs_{study_uid}.json", json.dumps(result, indent=2))
    return result
