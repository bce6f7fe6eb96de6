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

import fire

from bundle.engines.fp_reduction import fit_rescorer, format_fit, preview_rescorer
from bundle.metrics import format_table


def fit(runs: list[str] | str, output: str = "models/nodule_mode/fp_reduction.json", l2: float = 1.0) -> None:
    """
    Args:
        runs: evaluation folders holding ``features.jsonl`` and ``per_scan.json``.
        output: the model JSON to write.
        l2: L2 penalty on the standardised weights (``C = 1 / l2``).
    """
    try:
        model = fit_rescorer(runs, output, l2)
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f"fp_reduction: {e}")
    print(format_fit(model, output))


def preview(run: str, model: str = "models/nodule_mode/fp_reduction.json", threshold: float = 0.5) -> None:
    """
    Args:
        run: an evaluation folder with ``features.jsonl`` and ``per_scan.json`` (logged without a model).
        model: the fitted model JSON.
        threshold: operating score threshold.
    """
    try:
        before, after = preview_rescorer(run, model, threshold)
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f"fp_reduction: {e}")
    print(f"network score:\n{format_table(before)}\nrescored:\n{format_table(after)}")


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    fire.Fire({"fit": fit, "preview": preview})
