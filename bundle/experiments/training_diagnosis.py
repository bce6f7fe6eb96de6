"""Diagnosis of the training pipeline (issue #22): does the network still see the lesions, and can it fit one case?

- :func:`lesion_contrasts`: per lesion of a case, the lesion-minus-ring intensity difference in the raw image and
  after the percentile clip of the MRI preprocessing, and the share of lesion voxels above the upper percentile.
- :func:`overfit_case`: train a fresh network on one training case of a bundle config (its own preprocessing,
  sampling and augmentation, loss, optimiser) for ``steps`` steps, then report the Dice of the case's own lesions
  (sliding window over the whole preprocessed case), the lesions touched and the false-positive components.

Command line: ``python -m scripts.training_diagnosis`` (``contrast`` and ``overfit``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch
from scipy import ndimage

__all__ = ["lesion_contrasts", "dataset_contrasts", "overfit_case"]


def lesion_contrasts(
    image: np.ndarray, label: np.ndarray, lower: float = 0.5, upper: float = 99.5, ring_voxels: int = 2
) -> list[dict[str, float]]:
    """
    Per label component: mean intensity inside minus mean in a ring around it, before and after clipping the image
    to its ``[lower, upper]`` percentiles (``ClipIntensityPercentilesd``, as ``mri_preprocessing`` does).

    Args:
        image: the image (any spatial shape).
        label: its lesion mask, same shape.
        lower: lower percentile. Defaults to 0.5.
        upper: upper percentile. Defaults to 99.5.
        ring_voxels: ring width in voxels. Defaults to 2.

    Returns:
        one dict per component (label order): ``voxels``, ``raw`` and ``clipped`` contrasts, ``above_upper`` (share
        of the lesion's voxels above the upper percentile, which the clip flattens).
    """
    image = np.asarray(image, np.float64)
    components, n = ndimage.label(np.asarray(label) > 0.5)
    lo, hi = np.percentile(image, [lower, upper])
    clipped = np.clip(image, lo, hi)
    out = []
    for i in range(1, n + 1):
        inside = components == i
        ring = ndimage.binary_dilation(inside, iterations=ring_voxels) & ~inside
        out.append({
            "voxels": int(inside.sum()),
            "raw": float(image[inside].mean() - image[ring].mean()),
            "clipped": float(clipped[inside].mean() - clipped[ring].mean()),
            "above_upper": float((image[inside] > hi).mean()),
        })  # fmt: skip
    return out


def dataset_contrasts(dataset_dir: str | Path, split: str = "training", lower: float = 0.5,
                      upper: float = 99.5) -> dict[str, Any]:  # fmt: skip
    """
    :func:`lesion_contrasts` over every case of a data set's ``datalist.json`` split, summarised.

    Returns:
        ``lesions``, ``median_kept`` (median of clipped / raw contrast), ``flattened`` (lesions keeping less than
        half their contrast) and ``per_lesion`` (case, the dict of :func:`lesion_contrasts`).
    """
    root = Path(dataset_dir)
    cases = json.loads((root / "datalist.json").read_text())[split]
    rows = []
    for case in cases:
        image = nib.load(str(root / case["image"])).get_fdata()
        label = nib.load(str(root / case["label"])).get_fdata()
        rows += [{"case": case.get("case", case["image"]), **c} for c in lesion_contrasts(image, label, lower, upper)]
    kept = [r["clipped"] / r["raw"] for r in rows if abs(r["raw"]) > 1e-6]
    return {
        "lesions": len(rows),
        "median_kept": float(np.median(kept)) if kept else float("nan"),
        "flattened": int(sum(k < 0.5 for k in kept)),
        "per_lesion": rows,
    }


def overfit_case(
    config_files: Sequence[str],
    steps: int = 300,
    case_index: int = 0,
    overrides: Mapping[str, Any] | None = None,
    seed: int = 0,
    threads: int = 2,
) -> dict[str, Any]:
    """
    Fit a fresh network to one training case with the config's own training pipeline, and score it on that case.

    The config's ``preprocessing`` runs once on the case; each step draws ``num_samples`` patches through the rest of
    ``train#preprocessing`` (sampling and augmentation), then one optimiser step on ``loss``. Afterwards MONAI's
    sliding window (``patch_size``, overlap 0.25) predicts the whole preprocessed case.

    Args:
        config_files: the bundle configs, e.g. ``["configs/train.json", "configs/variants/mri_train.json"]``.
        steps: optimiser steps. Defaults to 300.
        case_index: which case of ``train_datalist``. Defaults to 0.
        overrides: config ids set before parsing, e.g. ``{"preprocessing#headroom": 0.5}``.
        seed: ``monai.utils.set_determinism`` seed. Defaults to 0.
        threads: ``torch.set_num_threads``. Defaults to 2.

    Returns:
        ``dice`` (voxels, threshold 0.5), ``lesions_hit`` / ``lesions`` (label components with a predicted voxel),
        ``fp_components`` (predicted components more than 3 voxels from any lesion), ``first_loss``, ``last_loss``,
        ``loss_curve`` (mean loss of each tenth of the steps), ``steps``, ``minutes``.
    """
    from monai.bundle import ConfigParser
    from monai.inferers import sliding_window_inference
    from monai.transforms import Compose
    from monai.utils import set_determinism

    if steps < 1:
        raise ValueError(f"steps must be >= 1, got steps={steps!r}.")
    set_determinism(seed)
    torch.set_num_threads(threads)
    parser = ConfigParser()
    parser.read_config([str(f) for f in config_files])
    for key, value in (overrides or {}).items():
        parser[key] = value
    preprocessing = parser.get_parsed_content("preprocessing")
    chain = parser.get_parsed_content("train#preprocessing").transforms
    sample = Compose(list(chain[len(preprocessing.transforms) :]))
    cases = parser.get_parsed_content("train_datalist")
    if not 0 <= case_index < len(cases):
        raise ValueError(f"case_index must be in [0, {len(cases)}) (training cases), got case_index={case_index!r}.")
    case = cases[case_index]
    data = preprocessing(dict(case))
    network = parser.get_parsed_content("network_def")
    loss_fn = parser.get_parsed_content("loss")
    optimiser = torch.optim.Adam(network.parameters(), lr=float(parser.get_parsed_content("learning_rate")))
    start, losses = time.time(), []
    network.train()
    for _ in range(steps):
        patches = sample(dict(data))
        x = torch.stack([p["image"].as_tensor() for p in patches])
        y = torch.stack([p["label"].as_tensor() for p in patches])
        loss = loss_fn(network(x), y)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(float(loss))
    network.eval()
    with torch.no_grad():
        roi = tuple(parser.get_parsed_content("patch_size"))
        logits = sliding_window_inference(data["image"].as_tensor()[None], roi, 4, network, overlap=0.25)
    prob = logits.softmax(1)[0, 1].numpy()
    label = data["label"].as_tensor()[0].numpy() > 0.5
    pred = prob >= 0.5
    components, n = ndimage.label(label)
    hit = int(sum(bool(pred[components == i].any()) for i in range(1, n + 1)))
    fp = int(ndimage.label(pred & ~ndimage.binary_dilation(label, iterations=3))[1])
    return {
        "dice": float(2 * (pred & label).sum() / max(1, int(pred.sum() + label.sum()))),
        "lesions_hit": hit,
        "lesions": int(n),
        "fp_components": fp,
        "first_loss": losses[0],
        "last_loss": losses[-1],
        "loss_curve": [round(float(np.mean(chunk)), 4) for chunk in np.array_split(np.asarray(losses), min(10, steps))],
        "steps": steps,
        "minutes": round((time.time() - start) / 60, 2),
    }
