"""Train and evaluate the source paper's ablation and the MONAI baselines with the bundle's own configs.

Usage (from the bundle root; see docs/README.md for the run that produced the table there)::

    python -m scripts.ablation --dataset_dir data/synth_ct_v2 --output_root runs/ablation --epochs 20 \
        --num_train_cases 16 --num_eval_cases 4

Every variant is trained by ``configs/train.json`` (same data, seed, sampling, loss and epochs) and evaluated by
``configs/evaluate.json`` on the held-out host; the table goes to ``<output_root>/ablation.md`` and the numbers to
``<output_root>/ablation.json``. Exits 1 when a variant failed (the others still run).
"""

from __future__ import annotations

import logging
import sys

import fire

from bundle.experiments.ablation import ablation_table, run_ablation


def main(
    dataset_dir: str = "data/synth_ct_v2",
    output_root: str = "runs/ablation",
    epochs: int = 12,
    variants: str | None = None,
    num_eval_cases: int | None = None,
    num_train_cases: int | None = None,
    seed: int = 0,
    time_limit_s: float = 0,
    rescore: bool = False,
) -> None:
    """
    Args:
        dataset_dir: folder with the synthesis ``datalist.json`` (training and held-out ``validation`` lists).
        output_root: where each variant's logs, weights and metrics go.
        epochs: training epochs of every variant (the shared budget).
        variants: comma-separated subset of ``bundle.experiments.ablation.ALL_VARIANTS`` (default: all, in table order).
        num_eval_cases: evaluate on the first N held-out scans only (default: all).
        num_train_cases: train on the first N training cases only (default: all).
        seed: the training seed.
        time_limit_s: wall-clock limit on each variant's training in seconds (0: none); the table reports the
            epochs each one completed.
        rescore: train nothing; score every variant again against the reference lesions of the current code, from
            its stored candidates (``eval/per_scan.json``) or, without them, by evaluating its weights again.
    """
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    results, failures = run_ablation(
        dataset_dir, output_root, epochs, variants, num_eval_cases, seed=seed, num_train_cases=num_train_cases,
        time_limit_s=time_limit_s, rescore=rescore,
    )
    print(ablation_table(results))
    if failures:
        sys.exit("ablation: " + "; ".join(failures))


if __name__ == "__main__":
    fire.Fire(main)
