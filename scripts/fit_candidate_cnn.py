"""Train the CNN false-positive-reduction stage (``bundle/engines/candidate_classifier.py``) on the candidates of
evaluation runs.

Usage (from the bundle root; the experiment of issue #21 in ``docs/README.md``)::

    # 1. evaluate the first stage on the cases to learn from (their datalist's "validation" entries)
    python -m monai.bundle run --config_file "['configs/train.json','configs/evaluate.json']" \\
        --datalist_file data/synth_ct_fit/fit_datalist.json --eval_dir runs/cnn_fit
    # 2. crop a multi-scale patch around every candidate (hit or false positive) and every reference lesion
    python -m scripts.fit_candidate_cnn collect --datalist data/synth_ct_fit/fit_datalist.json \\
        --run runs/cnn_fit --output runs/candidate_cnn/fit.npz
    # 3. train on one or more collections
    python -m scripts.fit_candidate_cnn fit --data "['runs/candidate_cnn/fit.npz']" \\
        --output runs/candidate_cnn/candidate_net.pt
    # 4. evaluate with the stage (without --candidate_model the layer adds no stage)
    python -m monai.bundle run --config_file \\
        "['configs/train.json','configs/evaluate.json','bundle/experiments/configs/candidate_cnn_evaluate.json']" \\
        --candidate_model runs/candidate_cnn/candidate_net.pt --eval_dir runs/cnn_heldout
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

import fire
import numpy as np

from bundle.data.datalist import load_datalist
from bundle.engines.candidate_classifier import collect_patches, fit_candidate_net, save_candidate_net
from bundle.io.atomic import atomic_path, atomic_write_text
from bundle.lesions.patches import PATCH_SCALES, PATCH_SHAPE


def collect(datalist: str, run: str, output: str, config_file: str = "configs/train.json",
            split: str = "validation", lesions: bool = True, negatives_per_scan: int = 0, seed: int = 0) -> None:
    """
    Args:
        datalist: the datalist the run evaluated.
        run: the evaluation folder (its ``per_scan.json`` is read).
        output: the ``.npz`` to write (patches, labels, scan, kind, diameter_mm).
        config_file: the bundle config whose ``preprocessing`` the evaluation used. Default configs/train.json.
        split: the datalist's section the run evaluated. Default "validation".
        lesions: also add every reference lesion as a positive. Default True.
        negatives_per_scan: also add this many bright voxels of the lung mask (``lung_mask`` of the config) away
            from every lesion as negatives (:py:func:`bundle.engines.candidate_classifier.collect_patches`). Default 0.
        seed: seeds that draw. Default 0.
    """
    from monai.bundle import ConfigParser
    from monai.transforms import Compose

    try:
        items = load_datalist(datalist, split)
        parser = ConfigParser()
        parser.read_config(config_file)
        preprocess = parser.get_parsed_content("preprocessing")
        if negatives_per_scan:
            preprocess = Compose([preprocess, parser.get_parsed_content("lung_mask")])
        data = collect_patches(items, Path(run) / "per_scan.json", preprocess, lesions=lesions,
                               negatives_per_scan=negatives_per_scan, seed=seed)
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        sys.exit(f"fit_candidate_cnn: {e}")
    with atomic_path(output) as tmp:
        np.savez_compressed(tmp, **data)
    kinds = {k: int((data["kind"] == k).sum()) for k in ("candidate", "lesion", "sampled")}
    print(f"{output}: {len(data['labels'])} patches ({int(data['labels'].sum())} positive; {kinds})")


def fit(data: list[str] | str, output: str, epochs: int = 30, channels: list[int] | tuple[int, ...] = (8, 16, 32),
        batch_size: int = 32, learning_rate: float = 1e-3, seed: int = 0) -> None:
    """
    Args:
        data: ``.npz`` collections from ``collect``.
        output: the checkpoint to write (``{"state_dict", "config"}``).
        epochs, channels, batch_size, learning_rate, seed: see
            :py:func:`bundle.engines.candidate_classifier.fit_candidate_net`.
    """
    files = [data] if isinstance(data, str) else list(data)
    try:
        parts = [np.load(f) for f in files]
        patches = np.concatenate([p["patches"] for p in parts])
        labels = np.concatenate([p["labels"] for p in parts])
        start = time.perf_counter()
        net, history = fit_candidate_net(patches, labels, channels=tuple(channels), epochs=epochs,
                                         batch_size=batch_size, learning_rate=learning_rate, seed=seed)
    except (OSError, ValueError, KeyError) as e:
        sys.exit(f"fit_candidate_cnn: {e}")
    seconds = time.perf_counter() - start
    config = {"channels": list(channels), "shape": list(PATCH_SHAPE), "scales": list(PATCH_SCALES),
              "fitted_on": files, "n_fit": int(labels.size), "n_positive": int(labels.sum()), "epochs": epochs,
              "batch_size": batch_size, "learning_rate": learning_rate, "seed": seed, "seconds": round(seconds, 1)}
    save_candidate_net(net, config, output)
    atomic_write_text(Path(output).with_suffix(".json"), json.dumps({**config, "history": history}, indent=1))
    last = history[-1]
    print(f"{output}: {labels.size} patches ({int(labels.sum())} positive), {epochs} epochs in {seconds:.0f} s; "
          f"last epoch loss {last['loss']:.4f}, accuracy {last['accuracy']:.3f}")


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    fire.Fire({"collect": collect, "fit": fit})
