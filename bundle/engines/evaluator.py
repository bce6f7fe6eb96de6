"""Robust case-by-case lesion inference on MONAI's ``SupervisedEvaluator`` (ignite).

For every case: run the inferer, find lesions on the preprocessed grid (where the network, the routing tiers and
the candidate mask live, as the held-out evaluation does), bring the lesion label map and the image for the overlay
back to the input's own grid through the two affines (world coordinates are the same in both: each lesion's voxel
centre and box, and the label map by nearest neighbour inside the lesions' boxes only), and write ``seg.nii.gz``,
``overlay.png`` (drawn on the preprocessed grid, where the lesions were found) and ``lesions.json``. Nothing is
resampled over the whole volume, which keeps time and memory small for large inputs. A case that failed to load (an error record from :py:class:`bundle.data.dataset.SafeDataset`)
or raises anywhere in this chain is recorded with a one-line reason and the run goes on. ``summary.json`` is
written at the end, also when the run itself is interrupted.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ignite.engine import Events
from monai.config import PathLike
from monai.data import MetaTensor, decollate_batch
from monai.engines import SupervisedEvaluator
from monai.inferers import Inferer
from monai.utils import ForwardMode, convert_to_tensor
from torch.utils.data import DataLoader
from tqdm import tqdm

from bundle import __version__ as bundle_version
from bundle.engines.console import case_bar, case_result_line
from bundle.inferers.stats import inferer_tier_codes, scalar_stats, skipped_fraction, window_counts
from bundle.io.errors import describe_exception
from bundle.io.dicom import dicom_case_outputs
from bundle.io.atomic import atomic_write_text
from bundle.io.writers import (
    SUMMARY_FILENAME, case_done, check_output_dir, safe_case_name, write_case_outputs, write_summary,
)  # fmt: skip
from bundle.lesions.extract import extract_lesions, lesion_probability
from bundle.lesions.find import find_lesions
from bundle.lesions.geometry import input_grid, label_map_to_grid, lesions_to_grid
from bundle.lesions.rescore import check_rescore_threshold

__all__ = ["LesionInferenceEvaluator"]

logger = logging.getLogger(__name__)


def _check_flags(**flags: Any) -> None:
    """Raise TypeError unless every flag is a bool: a config override such as ``--overwrite maybe`` arrives as a
    (truthy) string and would silently mean True."""
    for name, value in flags.items():
        if not isinstance(value, (bool, np.bool_)):
            raise TypeError(f"{name} must be True or False, got {name}={value!r} ({type(value).__name__}).")


class LesionInferenceEvaluator(SupervisedEvaluator):
    """
    Case-by-case lesion inference that survives bad cases, usable as the bundle's ``evaluator`` (``run`` is
    ``"$@evaluator.run()"``).

    Per case (``val_data_loader`` yields one case per batch: ``DataLoader(SafeDataset(...), batch_size=1)``, as
    an error record does not collate with loaded cases; larger batches are split back into cases, and an iterable
    of case dicts or of lists of case dicts also works):

    1. a batch item with an ``"error"`` key (from :py:class:`bundle.data.dataset.SafeDataset`) is recorded as
       failed;
    2. the inferer runs on ``item[image_key][None]`` (1, C, *spatial) -> logits (1, K, *spatial) -> the lesion
       probability (:py:func:`bundle.lesions.extract.lesion_probability`);
    3. ``inferer.last_stats`` / ``inferer.last_tier_map`` are read when the inferer has them (routed inferer);
    4. :py:func:`bundle.lesions.extract.extract_lesions` on the preprocessed grid's probability with the tier map,
       the optional ``mask_key`` mask and the optional rescorer;
    5. with ``preprocessing`` (the geometry changed), lesion centres and boxes go to the input's grid
       (:py:func:`bundle.lesions.geometry.lesions_to_grid`) and so does the label map, nearest neighbour inside the
       lesions' boxes (:py:func:`bundle.lesions.geometry.label_map_to_grid`, equal to MONAI's nearest ``Invertd``);
       the input's grid is the image's ``original_affine`` and ``spatial_shape`` that MONAI's ``LoadImage``
       recorded;
    6. :py:func:`bundle.io.writers.write_case_outputs` writes ``seg.nii.gz`` (the lesion label map), ``overlay.png``,
       ``meta.json`` (timing, routing statistics) and ``lesions.json``.

    Any exception in 2-6 fails that case only: its one-line reason is put in ``summary.json``, the traceback is
    logged at DEBUG. MONAI's postprocessing hook is not used (all of the above happens inside :py:meth:`_iteration`),
    so nothing else runs on a failed case. Each case ends with one result line, e.g. ``[2/5] Chest_CT: done,
    5 lesions in 29.4 s, 58 % of windows skipped`` (INFO; a failed case: ``[3/5] x: failed after 0.2 s: <reason>``,
    WARNING). After all cases, ``output_dir/summary.json`` is written (see
    :py:func:`bundle.io.writers.write_summary`, with ``ignored_entries``) and one summary line is logged; with
    ``raise_on_failure=True`` a single RuntimeError listing the failed cases is raised after that. Ignite's own
    start/epoch/finish INFO lines are silenced (its engine logger is set to WARNING): the lines above replace them.

    Args:
        device: device of the network and the forward pass.
        val_data_loader: iterable of batches (see above).
        network: the segmentation network.
        output_dir: folder of the per-case outputs and summary.json.
        preprocessing: the preprocessing transform (the ``Compose`` used by the dataset); when given, the outputs are
            mapped back to the input's grid. None when the preprocessing leaves the geometry unchanged (the
            prediction is then taken as in the input's grid).
        inferer: e.g. the routed sliding-window inferer; default :py:class:`monai.inferers.SimpleInferer`.
        dataset_dir: the input folder; when given, an ``output_dir`` equal to or inside it is refused (see
            :py:func:`bundle.io.writers.check_output_dir`) and nothing is ever written inside it.
        allow_inside: accept an ``output_dir`` inside ``dataset_dir``.
        overwrite: False skips cases whose ``lesions.json`` exists (logged, listed as skipped); True redoes them.
        raise_on_failure: raise one RuntimeError listing all failed cases after the run (and summary.json).
        image_key: key of the image (MetaTensor (C, *spatial)) in each case dict. Default ``"image"``.
        case_key: key of the case name. Default ``"case"``.
        mask_key: optional key of a candidate mask (1, *spatial) that went through the same preprocessing,
            e.g. a dilated lung mask; lesions centred outside it are dropped, and an inferer with a ``mask_gate``
            attribute (:py:class:`bundle.inferers.RoutedSlidingWindowInferer`) gets it as ``mask=`` so that windows
            without a mask voxel are skipped.
        foreground_channel: lesion channel of the network output. Default 1.
        lesion_kwargs: keyword arguments of :py:func:`bundle.lesions.find.find_lesions` (``threshold``,
            ``min_diameter_mm``, ``nms_iou``...); checked at construction.
        overlay_window: overlay intensity window; None uses the 1st-99th percentiles of the (preprocessed)
            image, e.g. ``[0, 1]`` when the preprocessing already windowed to [0, 1].
        max_panels: overlay panel cap. Default 12.
        progress: show one live tqdm bar over cases on stderr when stderr is a terminal; a log file, pipe or CI
            console never gets a bar (the per-case result lines are its progress). Default True.
        ignored_entries: ``{"path", "reason"}`` of every entry of the input folder that is no case (the ``skipped``
            list of :py:func:`bundle.io.cases.scan_dataset`), listed under ``entries_ignored`` in ``summary.json``
            and counted in the summary line; they never fail the run. Default none.
        rescorer: optional false-positive-reduction stage
            (:py:class:`bundle.lesions.rescore.CandidateRescorer`): every lesion of step 4 is rescored from
            the preprocessed image and the probability map, and only those scoring at least ``rescore_threshold``
            are kept (:py:func:`bundle.lesions.rescore.rescore_lesions`). ``lesion_kwargs["threshold"]``
            is then the candidate threshold (e.g. 0.2, as the evaluation's candidates).
        rescore_threshold: the lowest rescored score kept. Default 0.5.
        dicom_seg: for a DICOM series input, also write ``seg.dcm`` (a DICOM-SEG of the lesion map on the source
            slices, :py:func:`bundle.io.dicom.write_dicom_seg`). The series' patient/study/series identifiers
            go into ``meta.json`` (``"dicom"``) for every DICOM input. The SEG has one segment per lesion
            (``lesion n`` is lesion ``n`` of ``lesions.json``). Default False.
        dicom_sr: with ``dicom_seg``, also write ``sr.dcm``: the lesion list as a DICOM Structured Report (TID 1500
            Measurement Report referencing the SEG's segments, :py:mod:`bundle.io.dicom_sr`). Default False.
        software_version: the version recorded in the DICOM outputs and the report. Default: the bundle's
            (``bundle.__version__``).
        html_report: also write ``report.html`` per case (:py:mod:`bundle.io.report`: the lesion table with size
            bands, the axial slice and a zoom per lesion, the time to the lesion list). Default False.
        records_file: for one shard of a distributed run: write the per-case records to this file of
            ``output_dir`` instead of ``summary.json``, for :py:func:`bundle.engines.distributed.merge_shards`.
            Default None (write ``summary.json``).
        epoch_length, non_blocking, val_handlers, amp, mode, amp_kwargs: as in
            :py:class:`monai.engines.SupervisedEvaluator`.

    Raises:
        ValueError: When ``output_dir`` is refused, ``preprocessing`` is not callable, ``lesion_kwargs`` are
            invalid or ``foreground_channel`` < 0.
        TypeError: When ``allow_inside``, ``overwrite``, ``raise_on_failure`` or ``progress`` is not a bool.
        RuntimeError: from :py:meth:`run`, when ``raise_on_failure`` and any case failed.

    """

    def __init__(
        self,
        device: torch.device | str,
        val_data_loader: Iterable | DataLoader,
        network: torch.nn.Module,
        output_dir: PathLike,
        preprocessing: Callable | None = None,
        inferer: Inferer | None = None,
        dataset_dir: PathLike | None = None,
        allow_inside: bool = False,
        overwrite: bool = False,
        raise_on_failure: bool = False,
        image_key: str = "image",
        case_key: str = "case",
        mask_key: str | None = None,
        foreground_channel: int = 1,
        lesion_kwargs: Mapping[str, Any] | None = None,
        overlay_window: Sequence[float] | None = None,
        max_panels: int = 12,
        progress: bool = True,
        ignored_entries: Sequence[Mapping[str, Any]] = (),
        dicom_seg: bool = False,
        dicom_sr: bool = False,
        software_version: str | None = None,
        html_report: bool = False,
        records_file: str | None = None,
        rescorer: Any = None,
        rescore_threshold: float = 0.5,
        epoch_length: int | None = None,
        non_blocking: bool = False,
        val_handlers: Sequence | None = None,
        amp: bool = False,
        mode: ForwardMode | str = ForwardMode.EVAL,
        amp_kwargs: dict | None = None,
    ) -> None:
        _check_flags(
            allow_inside=allow_inside, overwrite=overwrite, raise_on_failure=raise_on_failure, progress=progress
        )
        super().__init__(
            device=torch.device(device),
            val_data_loader=val_data_loader,
            network=network,
            epoch_length=epoch_length,
            non_blocking=non_blocking,
            inferer=inferer,
            postprocessing=None,
            val_handlers=val_handlers,
            amp=amp,
            mode=mode,
            decollate=False,  # cases are split in _iteration, where each one can fail on its own
            amp_kwargs=amp_kwargs,
        )
        self.output_dir = Path(output_dir)
        self.protected: list[PathLike] = []
        if dataset_dir is not None:
            self.output_dir = check_output_dir(dataset_dir, output_dir, allow_inside)
            if not allow_inside:
                self.protected.append(dataset_dir)
        if foreground_channel < 0:
            raise ValueError(f"foreground_channel must be >= 0, got foreground_channel={foreground_channel}.")
        self.lesion_kwargs = dict(lesion_kwargs or {})
        find_lesions(np.zeros((1, 1, 1), np.float32), np.eye(4), **self.lesion_kwargs)  # fail early on bad kwargs
        if preprocessing is not None and not callable(preprocessing):
            raise ValueError(f"preprocessing must be a transform (callable) or None, got {type(preprocessing).__name__}.")
        self.to_input_grid = preprocessing is not None
        self.overwrite = overwrite
        self.raise_on_failure = raise_on_failure
        self.image_key = image_key
        self.case_key = case_key
        self.mask_key = mask_key
        self.foreground_channel = foreground_channel
        self.overlay_window = overlay_window
        self.max_panels = max_panels
        if dicom_sr and not dicom_seg:
            raise ValueError("dicom_sr=True needs dicom_seg=True: the Structured Report references the SEG's segments.")
        self.dicom_seg = dicom_seg
        self.dicom_sr = dicom_sr
        self.software_version = bundle_version if software_version is None else str(software_version)
        self.html_report = html_report
        self.records_file = records_file
        self.rescorer = rescorer
        self.rescore_threshold = check_rescore_threshold(rescore_threshold)
        self.batched = isinstance(val_data_loader, DataLoader) and val_data_loader.batch_size is not None
        self.records: list[dict[str, Any]] = []
        self.summary_path: Path | None = None
        self.progress = progress
        self.ignored_entries = [dict(e) for e in ignored_entries]
        self._case_start = time.perf_counter()
        self._n_cases: int | None = None
        self._bar: tqdm | None = None
        self.add_event_handler(Events.GET_BATCH_STARTED, self._start_clock)  # per-case time includes loading
        self.logger.setLevel(logging.WARNING)  # ignite's start/epoch/finish lines: the result lines replace them

    @property
    def failed_cases(self) -> list[dict[str, str]]:
        """``{"case", "image", "error"}`` of every case that failed in the last :py:meth:`run`."""
        return [{k: str(r.get(k)) for k in ("case", "image", "error")} for r in self.records if r["status"] == "failed"]

    def _start_clock(self, engine: LesionInferenceEvaluator) -> None:
        self._case_start = time.perf_counter()

    def run(self, global_epoch: int = 1) -> None:  # type: ignore[override]
        """
        Process every case, then write ``summary.json`` and log one summary line (also when interrupted).

        Raises:
            RuntimeError: When ``raise_on_failure`` is True and any case failed (after summary.json is written).

        """
        self.records = []
        self._n_cases = self._count_cases()
        start = time.perf_counter()
        try:
            with case_bar(self.progress, self._n_cases) as self._bar:
                super().run(global_epoch)
        finally:
            self._bar = None
            seconds = time.perf_counter() - start
            if self.records_file is None:
                self.summary_path = write_summary(
                    self.output_dir, self.records, seconds, self.protected, ignored=self.ignored_entries
                )
            else:  # one shard of a distributed run: rank 0 merges the shards' records into summary.json
                part = {"records": self.records, "seconds": seconds, "ignored": self.ignored_entries}
                atomic_write_text(self.output_dir / self.records_file, json.dumps(part, default=str), self.protected)
                self.summary_path = self.output_dir / SUMMARY_FILENAME
            counts = {s: sum(r["status"] == s for r in self.records) for s in ("done", "failed", "skipped")}
            logger.info(
                "lesion inference: %d done, %d failed, %d skipped of %d cases in %.1f s; %d input entries ignored; "
                "summary: %s", counts["done"], counts["failed"], counts["skipped"], len(self.records), seconds,
                len(self.ignored_entries), self.summary_path,
            )  # fmt: skip
        message = self.failure_message()
        if self.raise_on_failure and message:
            raise RuntimeError(message)

    def _count_cases(self) -> int | None:
        """The number of cases the loader will yield when it can tell (a sized dataset or list), else None."""
        data = self.data_loader
        sized = data.sampler if isinstance(data, DataLoader) else data  # a distributed sampler: this shard's cases
        try:
            return len(sized)  # type: ignore[arg-type]
        except TypeError:
            return None

    def failure_message(self) -> str | None:
        """One line listing the cases that failed in the last :py:meth:`run` (None when none failed).

        ``configs/inference.json`` ends its ``run`` with ``sys.exit(evaluator.failure_message())`` when cases
        failed, so the command prints this line (no traceback) and exits with status 1 after all cases ran.
        """
        failed = self.failed_cases
        if not failed:
            return None
        listing = "; ".join(f"{f['case']} ({f['error']})" for f in failed)
        return f"{len(failed)} of {len(self.records)} cases failed: {listing}. See {self.summary_path}."

    def _iteration(self, engine: LesionInferenceEvaluator, batchdata: Any) -> list[dict[str, Any]]:  # type: ignore[override]
        """
        Process the case(s) of one batch, each on its own; a failing case never raises.

        Returns:
            the per-case records (also appended to ``self.records``), stored by ignite in ``engine.state.output``.

        """
        if isinstance(batchdata, Mapping):
            items = decollate_batch(batchdata, detach=True) if engine.batched else [batchdata]
        else:
            items = list(batchdata)
        records = []
        for item in items:
            if engine._bar is not None:
                engine._bar.set_postfix_str(engine._case_identity(item)[0])
            record = engine._process_case(item)
            record["seconds"] = round(time.perf_counter() - engine._case_start, 3)
            engine._case_start = time.perf_counter()
            engine.records.append(record)
            records.append(record)
            logger.log(*case_result_line(record, len(engine.records), engine._n_cases))
            if engine._bar is not None:
                engine._bar.update(1)
        return records

    def _case_identity(self, item: Mapping[str, Any]) -> tuple[str, str]:
        """(case name, input path) of a case dict, loaded or not."""
        image = item.get(self.image_key)
        path = image.meta.get("filename_or_obj", "") if isinstance(image, MetaTensor) else image
        path = str(path or "")
        case = item.get(self.case_key) or Path(path).name.split(".")[0] or "unnamed"
        return str(case), path

    def _process_case(self, item: Mapping[str, Any]) -> dict[str, Any]:
        """Infer, invert, find lesions and write outputs for one case; returns its record."""
        case, path = self._case_identity(item)
        record: dict[str, Any] = {"case": case, "image": path}
        if "error" in item:  # failed to load: the result line of _iteration reports it
            return {**record, "status": "failed", "error": str(item["error"])}
        if not self.overwrite and case_done(self.output_dir, case):
            return {**record, "status": "skipped"}
        try:
            return {**record, **self._infer_case(item, case, path)}
        except Exception as exc:  # one bad case must never stop the run
            logger.debug("case %s traceback", case, exc_info=exc)
            return {**record, "status": "failed", "error": f"{path}: {describe_exception(exc)}"}

    def _infer_case(self, item: Mapping[str, Any], case: str, path: str) -> dict[str, Any]:
        """The work of one case, allowed to raise."""
        clock = [time.perf_counter()]  # the end of each stage (the loader read and preprocessed the case before)
        stage_seconds = {"load_preprocess": round(clock[0] - self._case_start, 3)}

        def stage_done(name: str) -> None:
            clock.append(time.perf_counter())
            stage_seconds[name] = round(clock[-1] - clock[-2], 3)

        image = item[self.image_key]
        if not isinstance(image, torch.Tensor) or image.ndim < 3:
            raise ValueError(f"'{self.image_key}' must be a channel-first image tensor, got {type(image).__name__}.")
        inputs = image[None].to(self.state.device, non_blocking=self.non_blocking)  # (1, C, *spatial)
        # an inferer with a candidate-mask gate (the routed inferer) skips the windows without a mask voxel
        gate = {"mask": item[self.mask_key]} if self.mask_key is not None and hasattr(self.inferer, "mask_gate") else {}
        with self.mode(self.network), torch.no_grad():
            if self.amp:
                with torch.autocast(self.state.device.type, **self.amp_kwargs):
                    logits = self.inferer(inputs, self.network, **gate)
            else:
                logits = self.inferer(inputs, self.network, **gate)
        logits = convert_to_tensor(logits, track_meta=False)  # (1, K, *spatial)
        prob = lesion_probability(logits[0], self.foreground_channel, inplace=True)  # the logits are ours
        del logits
        stage_done("network")
        stats = getattr(self.inferer, "last_stats", None)
        spatial = tuple(image.shape[1:])
        tiers = inferer_tier_codes(self.inferer, spatial, case)
        mask = None
        if self.mask_key is not None:
            mask = np.asarray(torch.as_tensor(item[self.mask_key]).reshape(spatial).cpu()) > 0.5
        pre_affine = image.affine if isinstance(image, MetaTensor) else torch.eye(len(spatial) + 1)
        prob_np = np.asarray(prob.cpu())
        lesions, labels = extract_lesions(
            prob_np, pre_affine, self.lesion_kwargs, tier_map=tiers, mask=mask, rescorer=self.rescorer,
            image=image[0], rescore_threshold=self.rescore_threshold, return_label_map=True,
        )  # fmt: skip
        del prob, prob_np, tiers, mask
        overlay_np = np.asarray((image[:1].as_tensor() if isinstance(image, MetaTensor) else image[:1]).float().cpu())[0]
        overlay = {"overlay_seg": labels, "overlay_affine": pre_affine, "overlay_lesions": lesions}
        affine, shape = pre_affine, spatial
        if self.to_input_grid:  # the geometry changed: the outputs go back to the input's own grid
            affine, shape = input_grid(getattr(image, "meta", {}), case)
            lesions = lesions_to_grid(lesions, pre_affine, affine, shape)
            labels = label_map_to_grid(labels, pre_affine, affine, shape)
        windows, skipped = window_counts(stats), skipped_fraction(stats)
        stage_done("lesions")
        meta = {
            "case": case,
            "image": path,
            "input_shape": list(labels.shape),
            "preprocessed_shape": list(spatial),
            "affine": np.asarray(affine, dtype=np.float64).round(6).tolist(),
            "lesion_kwargs": self.lesion_kwargs,
            "windows": windows,
            "inferer_stats": scalar_stats(stats),
        }
        dicom = dicom_case_outputs(
            path, self.output_dir / safe_case_name(case), labels, affine, self.dicom_seg, self.protected,
            self.software_version, lesions, self.dicom_sr,
        )  # fmt: skip  # None for non-DICOM inputs; written before lesions.json, which marks a finished case
        if dicom is not None:
            meta["dicom"] = dicom
        seconds = round(time.perf_counter() - self._case_start, 3)
        report = {"seconds": seconds, "software_version": self.software_version} if self.html_report else None
        write_case_outputs(
            self.output_dir,
            case,
            path,
            labels,
            affine,
            lesions,
            image_for_overlay=overlay_np,
            **overlay,
            extra_meta=meta,
            protected=self.protected,
            window=self.overlay_window,
            max_panels=self.max_panels,
            report=report,
        )
        stage_done("outputs")
        return {
            "status": "done", "windows": windows, "skipped_fraction": skipped, "n_lesions": len(lesions),
            "stage_seconds": stage_seconds,
            "largest_diameter_mm": round(max((float(les["diameter_mm"]) for les in lesions), default=0.0), 2),
            "max_score": round(max((float(les["score"]) for les in lesions), default=0.0), 4),
        }  # fmt: skip
