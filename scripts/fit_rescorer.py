"""Fit the false-positive-reduction rescorer (``bundle/lesions/rescore.py``) on an evaluation's candidates.

Usage (from the bundle root), as ``models/nodule_mode/fp_reduction.json`` was made: evaluate the network with the
features logged and no rescorer on cases it never trained on, then fit on that run (``docs/README.md``, "Nodule
mode")::

    python -m monai.bundle run \\
        --config_file "['configs/train.json','configs/evaluate.json','configs/variants/nodule_mode_evaluate.json']" \\
        --datalist_file data/synth_ct_v2/fpr_fit_datalist.json --ckpt_dir runs/train_sl --eval_dir runs/fpr_fit \\
        --rescorer_model "" --rescorer_features_log runs/fpr_fit/features.jsonl
    python -m scripts.fit_rescorer fit --runs "['runs/fpr_fit']" --output runs/train_sl/fp_reduction.json

``preview`` applies a fitted model to another logged run and prints the detection table it would give (the
evaluation with ``configs/variants/nodule_mode_evaluate.json`` and the model is the reference; the two agree when
both see the same candidates).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import fire
import numpy as np

if __package__ in (None, ""):  # run as a file: make the bundle root (parent of scripts/) importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bundle.metrics import evaluate_detection, format_table, save_json  # noqa: E402
from bundle.lesions.rescore import FEATURE_NAMES, CandidateRescorer  # noqa: E402
from bundle.lesions.rescorer_fit import fit_logistic, join_features  # noqa: E402


def _load(run: str):
    folder = Path(run)
    for name in ("features.jsonl", "per_scan.json"):
        if not (folder / name).is_file():
            sys.exit(f"fp_reduction: {folder / name}: no such file (evaluate with --rescorer_features_log first).")
    try:
        return join_features(folder / "features.jsonl", folder / "per_scan.json")
    except (ValueError, KeyError) as e:
        sys.exit(f"fp_reduction: {folder}: {e}")


def fit(runs: list[str] | str, output: str = "models/nodule_mode/fp_reduction.json", l2: float = 1.0) -> None:
    """
    Args:
        runs: evaluation folders holding ``features.jsonl`` and ``per_scan.json``.
        output: the model JSON to write.
        l2: L2 penalty on the standardised weights (``C = 1 / l2``).
    """
    runs = [runs] if isinstance(runs, str) else list(runs)
    parts = [_load(r)[:2] for r in runs]
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    try:
        model = fit_logistic(x, y, l2=l2)
    except ValueError as e:
        sys.exit(f"fp_reduction: {e}")
    model["fitted_on"] = runs
    save_json(model, output)
    print(f"fitted on {y.size} candidates ({int(y.sum())} hits) of {runs}; wrote {output}")
    for name, w in sorted(zip(FEATURE_NAMES, model["weights"]), key=lambda t: -abs(t[1])):
        print(f"  {name:12s} {w:+.3f}")


def preview(run: str, model: str = "models/nodule_mode/fp_reduction.json", threshold: float = 0.5) -> None:
    """
    Args:
        run: an evaluation folder with ``features.jsonl`` and ``per_scan.json`` (logged without a model).
        model: the fitted model JSON.
        threshold: operating score threshold.
    """
    try:
        rescorer = CandidateRescorer(model)
    except ValueError as e:
        sys.exit(f"fp_reduction: {e}")
    _, _, scans = _load(run)
    before, after = [], []
    for scan in scans:
        cands = scan["candidates"]
        scores = rescorer.probability(np.asarray([c["features"] for c in cands]).reshape(-1, len(FEATURE_NAMES)))
        before.append(([{"center_mm": c["center_mm"], "score": c["score"]} for c in cands], scan["lesions"]))
        rescored = [{"center_mm": c["center_mm"], "score": float(s)} for c, s in zip(cands, scores)]
        after.append((rescored, scan["lesions"]))
    before, after = evaluate_detection(before, threshold), evaluate_detection(after, threshold)
    print(f"network score:\n{format_table(before)}\nrescored:\n{format_table(after)}")


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    fire.Fire({"fit": fit, "preview": preview})
