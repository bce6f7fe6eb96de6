"""The source paper's analyses on the bundle's data (thin CLI over ``bundle.experiments.analysis``); see ``docs/analysis.md``.

Examples::

    python -m scripts.analyze features --datalist data/synth_ct/datalist.json --prefix docs/figures/analysis_features_ct
    python -m scripts.analyze layers --prefix docs/figures/analysis_layers --max_cases 4
    python -m scripts.analyze attention --prefix docs/figures/analysis_attention --max_cases 4
    python -m scripts.analyze explain --case_dir outputs/Chest_CT
    python -m scripts.analyze case_layers --case_dir outputs/Chest_CT --lesion 4 --prefix docs/figures/analysis_layers_chest_ct
    python -m scripts.analyze agreement --datalist data/lidc/datalist.json
    python -m scripts.analyze lidc_agreement --library data/lidc_shapes

Paths of configs and weights are the bundle folder's. The network-based analyses import torch when they run.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import fire


def features(
    datalist: str = "data/synth_ct/datalist.json",
    prefix: str = "docs/figures/analysis_features_ct",
    split: str = "all",
    ring_mm: float = 3.0,
    max_cases: int | None = None,
    unit: str = "HU",
) -> None:
    """Lesion vs surrounding grey-level mean/variance and edge gradient by size band (paper 3.1.1)."""
    from bundle.experiments.analysis.pipeline import run_features

    result = run_features(datalist, prefix, split, ring_mm, max_cases, unit)
    print(f"{result['n_lesions']} lesions of {result['n_cases']} cases ({result['n_outside_bands']} outside the bands)")
    print(Path(prefix).with_suffix(".md").read_text())


def layers(
    datalist: str = "data/synth_ct/datalist.json",
    prefix: str = "docs/figures/analysis_layers",
    split: str = "validation",
    max_cases: int | None = None,
    config: str = "configs/inference.json",
    ckpt: str = "models/model.pt",
    train_config: str = "configs/train.json",
    threads: int = 1,
) -> None:
    """Shallow / middle / deep stage responses inside vs outside lesions (paper 3.1.2)."""
    from bundle.experiments.analysis.loading import network_and_preprocessing
    from bundle.experiments.analysis.pipeline import run_layers

    net, pre = network_and_preprocessing(config, ckpt, train_config, "preprocessing", threads)
    result = run_layers(net, pre, datalist, prefix, split=split, max_cases=max_cases)
    print(f"{result['n_windows']} lesion windows of {result['n_cases']} cases")
    print(Path(prefix).with_suffix(".md").read_text())


def attention(
    datalist: str = "data/synth_ct/datalist.json",
    prefix: str = "docs/figures/analysis_attention",
    split: str = "validation",
    max_cases: int | None = None,
    config: str = "configs/inference.json",
    ckpt: str = "models/model.pt",
    train_config: str = "configs/train.json",
    threads: int = 1,
) -> None:
    """Coordinate Attention gain in lesions and the screening score's ROC AUC (paper 4.2)."""
    from bundle.experiments.analysis.loading import network_and_preprocessing
    from bundle.experiments.analysis.pipeline import run_attention

    net, pre = network_and_preprocessing(config, ckpt, train_config, "preprocessing", threads)
    result = run_attention(net, pre, datalist, prefix, split=split, max_cases=max_cases)
    print(f"{result['n_lesion_windows']} lesion windows of {result['n_cases']} cases")
    print(Path(prefix).with_suffix(".md").read_text())


def explain(
    case_dir: str = "outputs/Chest_CT",
    max_lesions: int | None = None,
    target_layer: str = "net.decoder.1",
    config: str = "configs/inference.json",
    ckpt: str = "models/model.pt",
    threads: int = 1,
) -> None:
    """Grad-CAM and input gradient of each detection of ``<case_dir>/lesions.json``, as ``<case_dir>/explain_<k>.png``."""
    from bundle.engines.explain import explain_case
    from bundle.experiments.analysis.loading import inference_parts

    net, pre, roi = inference_parts(config, ckpt, threads)
    for path in explain_case(net, pre, case_dir, roi, max_lesions, target_layer):
        print(path)


def case_layers(
    case_dir: str = "outputs/Chest_CT",
    prefix: str = "docs/figures/analysis_layers_chest_ct",
    lesion: int = 1,
    config: str = "configs/inference.json",
    ckpt: str = "models/model.pt",
    threads: int = 1,
) -> None:
    """Stage response maps over the whole axial slice through detection ``#lesion`` of an inference case."""
    from bundle.experiments.analysis.loading import inference_parts
    from bundle.experiments.analysis.pipeline import run_case_layers

    net, pre, roi = inference_parts(config, ckpt, threads)
    result = run_case_layers(net, pre, case_dir, prefix, lesion, roi)
    print(f"{result['case']}: axial slice {result['slice']} (slab {result['slab']}), detection #{result['lesion']}")
    print(Path(prefix).with_suffix(".md").read_text())


def agreement(datalist: str, split: str = "all") -> None:
    """Lesion-level reader agreement of a converted multi-reader datalist (records with ``reader_sessions``)."""
    from bundle.experiments.analysis.pipeline import dataset_entries
    from bundle.metrics.agreement import pooled_agreement

    print(json.dumps(pooled_agreement(dataset_entries(datalist, split)), indent=1))


def lidc_agreement(library: str = "data/lidc_shapes") -> None:
    """Fleiss' kappa of the LIDC-IDRI readers (4 per scan) over the nodules of the shape library
    (``python -m scripts.lidc_shapes``): how many readers marked each nodule, overall and by consensus diameter."""
    from bundle.data.lidc import ShapeLibrary
    from bundle.metrics.agreement import count_agreement

    lib = ShapeLibrary(library)
    marked = [r["readers"] for r in lib.records]
    print(json.dumps(count_agreement(marked, 4, [r["diameter_mm"] for r in lib.records]), indent=1))


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        fire.Fire({"features": features, "layers": layers, "attention": attention, "explain": explain,
                   "case_layers": case_layers, "agreement": agreement, "lidc_agreement": lidc_agreement})
    except ValueError as e:  # bad input: one clear line, no traceback
        sys.exit(f"error: {e}")
