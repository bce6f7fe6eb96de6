"""The source paper's ablation and the MONAI baselines: every variant trained and evaluated by the bundle's own configs.

Each variant is one network definition trained by ``configs/train.json`` with the same data, seed, patch sampling,
loss, schedule and number of epochs, then evaluated by ``configs/evaluate.json`` on the held-out host scans (the
datalist's ``validation`` list), each in its own ``python -m monai.bundle run`` process. Variants:

- ``unet``: the bundle's U-Net without Ghost modules or Coordinate Attention (same widths);
- ``ghost``: + Ghost modules at the middle level; ``ca``: + Coordinate Attention after decoder stage 3;
- ``ghost_ca``: both (the bundle's network, routing off); ``ghost_ca_routed``: the same weights, routing on;
- ``monai_unet``, ``monai_basicunet``, ``monai_segresnet``: MONAI's networks at the settings of the benchmark
  (:py:func:`bundle.experiments.benchmark.build_network`);
- ``swinunetr``: MONAI's ``SwinUNETR`` (the source paper's CNN-Transformer hybrid; feature size 12, the smallest);
- ``retinanet_resnet50``, ``retinanet_resnet10``: MONAI's RetinaNet detectors (:py:mod:`bundle.experiments.comparison`),
  trained on the same patches by ``python -m scripts.detector_baseline`` and scored by the same lesion metrics.

The shared budget is the number of epochs and, optionally, a wall-clock limit on training (``time_limit_s``,
:py:class:`bundle.engines.TrainingTimeLimit`): heavy networks cannot train 50 epochs on 2 CPU cores in hours, so
they get the seconds the bundle's network needs and the table says how many epochs they completed.

The table has recall, precision, F1, CPM, parameters, seconds per volume (as timed by the evaluation, in the
same run: comparable with each other only when nothing else loads the machine) and the training reached.
Running a subset of variants into an existing ``output_root`` keeps the other variants' rows when the run
settings (epochs, case counts, seed, reference merge gap) are the same.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bundle.experiments.reevaluate import rescore_evaluation
from bundle.experiments.comparison.retinanet import DETECTORS
from bundle.io.atomic import atomic_write_text
from bundle.lesions.reference import MERGE_GAP_MM

__all__ = ["ALL_VARIANTS", "VARIANTS", "variant_overrides", "run_variant", "ablation_table", "run_ablation"]

logger = logging.getLogger(__name__)

_GHOST = "bundle.networks.GhostCAUNet"
_BASE = {"spatial_dims": 3, "in_channels": 1, "out_channels": 2, "features": [8, 24, 48, 96], "norm": "batch",
         "ca_drop_prob": 0.3}

# name -> (network_def, routing at evaluation, weights shared with another variant or None)
VARIANTS: dict[str, tuple[dict[str, Any], bool, str | None]] = {
    "unet": ({"_target_": _GHOST, **_BASE, "ghost_levels": [], "ca_stages": []}, False, None),
    "ghost": ({"_target_": _GHOST, **_BASE, "ghost_levels": [2], "ca_stages": []}, False, None),
    "ca": ({"_target_": _GHOST, **_BASE, "ghost_levels": [], "ca_stages": [3]}, False, None),
    "ghost_ca": ({"_target_": _GHOST, **_BASE, "ghost_levels": [2], "ca_stages": [3]}, False, None),
    "ghost_ca_routed": ({"_target_": _GHOST, **_BASE, "ghost_levels": [2], "ca_stages": [3]}, True, "ghost_ca"),
    "monai_unet": (
        {"_target_": "monai.networks.nets.UNet", "spatial_dims": 3, "in_channels": 1, "out_channels": 2,
         "channels": [16, 32, 64, 128, 256], "strides": [2, 2, 2, 2], "num_res_units": 2, "norm": "batch"},
        False,
        None,
    ),
    "monai_basicunet": (
        {"_target_": "monai.networks.nets.BasicUNet", "spatial_dims": 3, "in_channels": 1, "out_channels": 2},
        False,
        None,
    ),
    "monai_segresnet": (
        {"_target_": "monai.networks.nets.SegResNet", "spatial_dims": 3, "in_channels": 1, "out_channels": 2,
         "init_filters": 16},
        False,
        None,
    ),
    "swinunetr": (
        {"_target_": "monai.networks.nets.SwinUNETR", "spatial_dims": 3, "in_channels": 1, "out_channels": 2,
         "feature_size": 12},
        False,
        None,
    ),
}

LABELS = {
    "unet": "U-Net (same widths)",
    "ghost": "+ Ghost",
    "ca": "+ Coordinate Attention",
    "ghost_ca": "+ Ghost + CA (bundle network)",
    "ghost_ca_routed": "+ Ghost + CA + routing",
    "monai_unet": "MONAI UNet",
    "monai_basicunet": "MONAI BasicUNet",
    "monai_segresnet": "MONAI SegResNet",
    "swinunetr": "MONAI SwinUNETR (CNN-Transformer)",
    "retinanet_resnet50": "MONAI RetinaNet, ResNet-50 FPN (zoo lung nodule detector)",
    "retinanet_resnet10": "MONAI RetinaNet, ResNet-10 FPN-64 (light detector)",
}
ALL_VARIANTS = [*VARIANTS, *DETECTORS]
_SETTINGS = ("epochs", "num_train_cases", "num_eval_cases", "seed", "merge_gap_mm")


def variant_overrides(
    name: str, num_eval_cases: int | None = None, num_train_cases: int | None = None
) -> dict[str, Any]:
    """The config override of one variant (a JSON object merged after train.json / evaluate.json).

    Args:
        name: a key of :py:data:`VARIANTS` or :py:data:`bundle.experiments.comparison.DETECTORS` (whose override holds the
            data selection only).
        num_eval_cases: evaluate on the first N held-out cases only (None: all).
        num_train_cases: train on the first N training cases only (None: all; train.json holds back its last
            ``num_val_cases`` of them for validation, which the ablation does not run).

    Raises:
        ValueError: for an unknown variant, ``num_eval_cases`` < 1 or ``num_train_cases`` < 3.
    """
    _check_name(name)
    if num_eval_cases is not None and num_eval_cases < 1:
        raise ValueError(f"num_eval_cases must be >= 1, got num_eval_cases={num_eval_cases}.")
    if num_train_cases is not None and num_train_cases < 3:
        raise ValueError(f"num_train_cases must be >= 3, got num_train_cases={num_train_cases}.")
    overrides: dict[str, Any] = {}
    if name in VARIANTS:
        network_def, routing, _ = VARIANTS[name]
        overrides.update(network_def=network_def, routing=routing)
        if network_def["_target_"] != _GHOST:  # no screening head to calibrate
            overrides["finalize"] = ["$torch.save(@network.state_dict(), os.path.join(@ckpt_dir, 'model.pt'))"]
    if num_eval_cases is not None:
        overrides["heldout_datalist"] = (
            "$[{'image': d['image'], 'label': d['label']} for d in "
            f"bundle.data.datalist.load_datalist(@datalist_file, 'validation')][:{int(num_eval_cases)}]"
        )
    if num_train_cases is not None:
        overrides["train_all"] = (
            "$[{'image': d['image'], 'label': d['label']} for d in "
            f"bundle.data.datalist.load_datalist(@datalist_file, 'training')][:{int(num_train_cases)}]"
        )
    return overrides


def _check_name(name: str) -> None:
    if name not in ALL_VARIANTS:
        raise ValueError(f"unknown ablation variant {name!r}; choose from {sorted(ALL_VARIANTS)}.")


def _bundle_run(config_files: Sequence[str], args: dict[str, Any], log_path: Path, bundle_root: str) -> None:
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", json.dumps(list(config_files))]
    _run(cmd, args, log_path, bundle_root)


def _run(cmd: list[str], args: dict[str, Any], log_path: Path, bundle_root: str) -> None:
    for key, value in args.items():
        cmd = [*cmd, f"--{key}", str(value)]
    logger.info("running %s", " ".join(cmd))
    with open(log_path, "w") as log:
        proc = subprocess.run(cmd, cwd=bundle_root, stdout=log, stderr=subprocess.STDOUT, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:5])} failed with exit status {proc.returncode}; see {log_path}.")


def run_variant(
    name: str,
    dataset_dir: str,
    output_root: str,
    epochs: int,
    num_eval_cases: int | None = None,
    bundle_root: str = ".",
    seed: int = 0,
    num_train_cases: int | None = None,
    time_limit_s: float = 0,
    rescore: bool = False,
) -> dict[str, Any]:
    """Train (unless its weights are shared) and evaluate one variant; returns the evaluation's metrics dict with
    ``training``: what the training reached (``train_time.json`` of :py:class:`bundle.engines.TrainingTimeLimit`,
    None when absent).

    With ``rescore=True`` nothing is trained: a variant whose ``eval/per_scan.json`` exists is scored again
    against the reference lesions the current code reads from the label maps (:py:mod:`bundle.experiments.reevaluate`,
    written to ``eval_rescored/``), and one without it has its existing weights evaluated again.

    Writes under ``output_root/<name>/``: ``override.json``, ``train.log``, ``train_time.json``, ``model.pt``,
    ``evaluate.log`` and ``eval/metrics.json`` (the evaluation's
    :py:class:`bundle.engines.report.DetectionReportHandler` output). ``time_limit_s`` > 0 stops training after that many seconds.
    """
    out = Path(output_root).resolve() / name
    out.mkdir(parents=True, exist_ok=True)
    override = out / "override.json"
    root = os.path.abspath(bundle_root)
    common = {"bundle_root": root, "dataset_dir": os.path.abspath(dataset_dir), "seed": seed}
    overrides = variant_overrides(name, num_eval_cases, num_train_cases)
    if name in DETECTORS:
        overrides.update(common)
    if not (rescore and override.is_file()):  # a rescore keeps the override the variant was evaluated with
        atomic_write_text(override, json.dumps(overrides, indent=4) + "\n")
    shared = VARIANTS[name][2] if name in VARIANTS else None
    ckpt_dir = out.parent / shared if shared else out
    if rescore and (out / "eval" / "per_scan.json").is_file():
        configs = [os.path.join(root, "configs", f) for f in ("train.json", "evaluate.json")] + [str(override)]
        rescore_evaluation(out / "eval", configs, out / "eval_rescored", common)
        return _with_training(out / "eval_rescored" / "metrics.json", ckpt_dir / "train_time.json")
    if rescore and not (ckpt_dir / "model.pt").is_file():
        raise RuntimeError(f"variant {name}: nothing to rescore, no {out / 'eval' / 'per_scan.json'} and no weights.")
    if name in DETECTORS:
        script = [sys.executable, "-m", "scripts.detector_baseline"]  # run in the bundle root
        args = {"name": name, "overrides_file": override}
        if not rescore:
            _run([*script, "train"], {**args, "output_dir": out, "epochs": epochs, "time_limit_s": time_limit_s},
                 out / "train.log", root)
        _run([*script, "evaluate"], {**args, "weights": out / "model.pt", "eval_dir": out / "eval"},
             out / "evaluate.log", root)
        return _with_training(out / "eval" / "metrics.json", out / "train_time.json")
    train_cfg = os.path.join(root, "configs", "train.json")
    eval_cfg = os.path.join(root, "configs", "evaluate.json")
    if shared is not None and not (ckpt_dir / "model.pt").is_file():
        raise RuntimeError(f"variant {name} evaluates the weights of {shared}, but {ckpt_dir / 'model.pt'} does not "
                           f"exist: run {shared} first.")
    if shared is None and not rescore:
        _bundle_run(
            [train_cfg, str(override)],
            {**common, "epochs": epochs, "val_interval": epochs + 1, "output_dir": out, "ckpt_dir": out,
             "train_time_limit_s": time_limit_s},
            out / "train.log",
            root,
        )
    _bundle_run(
        [train_cfg, eval_cfg, str(override)],
        {**common, "ckpt_dir": ckpt_dir, "eval_dir": out / "eval"},
        out / "evaluate.log",
        root,
    )
    return _with_training(out / "eval" / "metrics.json", ckpt_dir / "train_time.json")


def _with_training(metrics_path: Path, record: Path) -> dict[str, Any]:
    with open(metrics_path) as f:
        metrics = json.load(f)
    metrics["training"] = json.loads(record.read_text()) if record.is_file() else None
    return metrics


def _trained(record: dict[str, Any] | None) -> str:
    if not record:
        return "n/a"
    text = f"{record['epochs_completed']} ep, {record['train_seconds'] / 60:.0f} min"
    return text + " (time limit)" if record.get("time_limit_reached") else text


def ablation_table(results: dict[str, dict[str, Any]]) -> str:
    """Markdown table: one row per variant with TP / FP / FN, recall, precision, F1, CPM, parameters, seconds per
    volume and the training reached (epochs completed and minutes, "n/a" when not recorded). Precision is "n/a"
    for a variant without any candidate at the threshold (the metrics' convention reports 1.0 there)."""
    lines = [
        "| Variant | TP / FP / FN | Recall | Precision | F1 | CPM | Params (M) | s / volume | Trained |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, m in results.items():
        sec = m.get("seconds_per_volume")
        counts = [m.get(k) for k in ("tp", "fp", "fn")]
        tp_fp_fn = "n/a" if None in counts else " / ".join(str(c) for c in counts)
        prec = "n/a" if counts[:2] == [0, 0] else f"{m['precision']:.3f}"
        lines.append(
            f"| {LABELS.get(name, name)} | {tp_fp_fn} | {m['recall']:.3f} | {prec} | {m['f1']:.3f} | {m['cpm']:.3f} | "
            f"{m['params_millions']:.3f} | {'n/a' if sec is None else f'{sec:.1f}'} | {_trained(m.get('training'))} |"
        )
    return "\n".join(lines)


def _in_table_order(rows: dict[str, Any]) -> dict[str, Any]:
    order = ALL_VARIANTS
    return {n: rows[n] for n in sorted(rows, key=lambda n: order.index(n) if n in order else len(order))}


def _previous_results(output_root: str, settings: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The rows of an earlier ``ablation.json`` in ``output_root`` run with the same settings (else none)."""
    path = Path(output_root) / "ablation.json"
    if not path.is_file():
        return {}
    try:
        previous = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        logger.warning("ignoring %s: %s", path, err)
        return {}
    if any(previous.get(k) != v for k, v in settings.items()):
        logger.warning("%s was run with other settings (%s); its rows are not kept.", path,
                       {k: previous.get(k) for k in settings})
        return {}
    rows = dict(previous.get("results", {}))
    for name, row in rows.items():  # a training record written after the row (or by an older version of this code)
        shared = VARIANTS[name][2] if name in VARIANTS else None
        record = Path(output_root) / (shared or name) / "train_time.json"
        if row.get("training") is None and record.is_file():
            row["training"] = json.loads(record.read_text())
    return rows


def run_ablation(
    dataset_dir: str,
    output_root: str,
    epochs: int,
    variants: str | Sequence[str] | None = None,
    num_eval_cases: int | None = None,
    bundle_root: str = ".",
    seed: int = 0,
    num_train_cases: int | None = None,
    time_limit_s: float = 0,
    rescore: bool = False,
) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Run the variants in order (those sharing weights after their source); returns (results, failures).

    A variant that fails is logged and listed; the others still run. ``output_root/ablation.json`` and
    ``output_root/ablation.md`` are rewritten after every variant, so a long run can be read while it goes; rows of
    variants not run this time are kept from an earlier ``ablation.json`` with the same settings. ``results`` holds
    every row, in table order. ``time_limit_s`` > 0 limits each variant's training to that many seconds.
    ``rescore=True`` trains nothing and scores the variants again (see :py:func:`run_variant`). ``variants`` is a
    list of names or one string of comma-separated names; None or empty runs every variant.
    """
    if isinstance(variants, str):
        variants = [v.strip() for v in variants.split(",")]
    names = list(variants) if variants else list(ALL_VARIANTS)
    for name in names:
        _check_name(name)
    settings = {"epochs": epochs, "num_train_cases": num_train_cases, "num_eval_cases": num_eval_cases, "seed": seed,
                "merge_gap_mm": MERGE_GAP_MM}
    rows = _previous_results(output_root, settings)
    failures: list[str] = []
    for name in names:
        try:
            rows[name] = run_variant(
                name, dataset_dir, output_root, epochs, num_eval_cases, bundle_root, seed, num_train_cases,
                time_limit_s, rescore,
            )
        except (RuntimeError, OSError, KeyError, ValueError) as err:
            logger.error("ablation variant %s failed: %s", name, err)
            failures.append(f"{name}: {err}")
        results = _in_table_order(rows)
        summary = {**settings, "results": results, "failures": failures}
        atomic_write_text(Path(output_root) / "ablation.json", json.dumps(summary, indent=4) + "\n")
        atomic_write_text(Path(output_root) / "ablation.md", ablation_table(results) + "\n")
    return _in_table_order(rows), failures
