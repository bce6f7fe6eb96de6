"""The CNN false-positive-reduction stage: a small 3-D CNN (:py:class:`bundle.networks.nets.candidate_net.CandidateNet`)
rescores every candidate of the segmentation network from a multi-scale patch of the image around it
(:py:func:`bundle.lesions.patches.candidate_patches`), as the second stage of the LUNA16 detectors does.

- :py:class:`CandidateClassifier`: the stage, called like :py:class:`bundle.lesions.rescore.CandidateRescorer`
  (``stage(candidates, image, prob, affine)``), so inference and evaluation take it as their ``rescorer``;
- :py:func:`collect_patches`: the training data, from evaluation runs (``per_scan.json``: every candidate of the first
  stage with its hit / false-positive status, and every reference lesion) and the images they were made from;
- :py:func:`fit_candidate_net`: the training loop (class-balanced binary cross-entropy, flips, in-plane quarter
  turns, shifts and intensity jitter), and :py:func:`save_candidate_net` for the checkpoint the stage loads.

Command line: ``scripts/fit_candidate_cnn.py``; the experiment and its numbers: ``docs/README.md``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import pickle
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from bundle.io.atomic import atomic_path
from bundle.lesions.geometry import world_to_voxel
from bundle.lesions.patches import PATCH_SCALES, PATCH_SHAPE, candidate_patches
from bundle.networks.nets.candidate_net import CandidateNet

__all__ = ["CandidateClassifier", "collect_patches", "fit_candidate_net", "save_candidate_net"]

logger = logging.getLogger(__name__)


def save_candidate_net(net: CandidateNet, config: Mapping[str, Any], path: str | os.PathLike) -> None:
    """Write ``{"state_dict", "config"}`` to ``path`` (atomically, :py:func:`bundle.io.atomic.atomic_path`); ``config`` holds
    what :py:class:`CandidateClassifier` needs to rebuild the net and its patches (``channels``, ``shape``,
    ``scales``) and anything worth keeping about the fit."""
    with atomic_path(path) as tmp:
        torch.save({"state_dict": net.state_dict(), "config": dict(config)}, tmp)


class CandidateClassifier:
    """
    Rescore each candidate with the CNN's probability ``p`` that it is a lesion; the network's score ``s`` is kept as
    ``cnn_score`` (the key :py:class:`bundle.lesions.rescore.CandidateRescorer` uses for it) and ``p`` as
    ``classifier_score``.

    Args:
        model: the checkpoint of :py:func:`save_candidate_net`.
        combine: the new score: ``"replace"`` is ``p``; ``"geometric"`` is ``sqrt(s * p)``, so that the second stage
            can lower a candidate's score but cannot lift a faint one far above what the network gave it.
            Default ``"replace"``.
        batch_size: patches per forward pass. Default 64.
        device: torch device. Default ``"cpu"``.
        max_diameter_mm: candidates larger than this keep the network's score (``p`` is still recorded): a mass
            above a nodule's 30 mm is outside what a nodule classifier learned and what its patches see. None
            (default) rescores every candidate.

    Raises:
        ValueError: when the checkpoint is missing, unreadable or not a candidate-net checkpoint (the message names
            the file), ``combine`` is unknown or ``max_diameter_mm`` is not positive.
    """

    COMBINE = ("replace", "geometric")

    def __init__(
        self,
        model: str | os.PathLike,
        combine: str = "replace",
        batch_size: int = 64,
        device: str | torch.device = "cpu",
        max_diameter_mm: float | None = None,
    ) -> None:
        if combine not in self.COMBINE:
            raise ValueError(f"combine must be one of {self.COMBINE}, got combine={combine!r}.")
        if max_diameter_mm is not None and not float(max_diameter_mm) > 0:
            raise ValueError(f"max_diameter_mm must be positive or None, got max_diameter_mm={max_diameter_mm!r}.")
        self.combine = combine
        self.max_diameter_mm = None if max_diameter_mm is None else float(max_diameter_mm)
        path = Path(model)
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
        except (OSError, RuntimeError, ValueError, EOFError, pickle.UnpicklingError) as exc:
            first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ValueError(f"{path}: cannot read the candidate classifier ({first_line}).") from exc
        if not isinstance(ckpt, Mapping) or "state_dict" not in ckpt or "config" not in ckpt:
            raise ValueError(f"{path}: not a candidate classifier checkpoint (expected 'state_dict' and 'config').")
        config = ckpt["config"]
        self.shape = tuple(config.get("shape", PATCH_SHAPE))
        self.scales = tuple(config.get("scales", PATCH_SCALES))
        self.net = CandidateNet(in_channels=len(self.scales), channels=tuple(config["channels"]))
        try:
            self.net.load_state_dict(ckpt["state_dict"])
        except RuntimeError as exc:
            raise ValueError(f"{path}: the weights do not fit the network of its config ({exc}).") from exc
        self.device = torch.device(device)
        self.net.to(self.device).eval()
        self.batch_size = int(batch_size)

    @torch.no_grad()
    def probability(self, patches: np.ndarray) -> np.ndarray:
        """The lesion probability of patches (N, scales, *shape)."""
        out = []
        for start in range(0, len(patches), self.batch_size):
            x = torch.as_tensor(patches[start : start + self.batch_size], device=self.device)
            out.append(torch.sigmoid(self.net(x)).cpu().numpy())
        return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)

    def __call__(
        self, candidates: Sequence[Mapping[str, Any]], image: np.ndarray | torch.Tensor, *unused: Any
    ) -> list[dict[str, Any]]:
        """Rescored copies of ``candidates`` (dicts with ``center_voxel`` and ``score``) from the preprocessed
        ``image``, highest new score first. Called as ``stage(candidates, image, prob, affine)`` like every rescorer;
        the probability map and the affine are not needed here."""
        if not candidates:
            return []
        patches = candidate_patches(image, [c["center_voxel"] for c in candidates], self.shape, self.scales)
        p = self.probability(patches).astype(np.float64)
        s = np.asarray([float(c["score"]) for c in candidates])
        new = p if self.combine == "replace" else np.sqrt(s * p)
        if self.max_diameter_mm is not None:  # masses keep the network's score
            large = np.asarray([float(c.get("diameter_mm", 0.0)) > self.max_diameter_mm for c in candidates])
            new = np.where(large, s, new)
        out = [{**c, "cnn_score": float(a), "classifier_score": float(b), "score": float(n)}
               for c, a, b, n in zip(candidates, s, p, new)]  # fmt: skip
        out.sort(key=lambda c: -c["score"])
        return out


def collect_patches(
    items: Sequence[Mapping[str, Any]],
    per_scan: str | os.PathLike,
    preprocess: Callable[[dict[str, Any]], dict[str, Any]],
    shape: Sequence[int] = PATCH_SHAPE,
    scales: Sequence[int] = PATCH_SCALES,
    lesions: bool = True,
    negatives_per_scan: int = 0,
    negative_level: float = 0.55,
    negative_margin_mm: float = 5.0,
    mask_key: str = "lung_mask",
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """
    The patches of one evaluation run: every first-stage candidate that hit a lesion (label 1) or nothing (label 0),
    candidates on ignored lesions left out, and with ``lesions`` every reference lesion's centre as a positive too.

    Args:
        items: the datalist entry of each scan (``image``, ``label``...), in the order of ``per_scan.json`` (the
            evaluated datalist's order).
        per_scan: the run's ``per_scan.json`` (:py:func:`bundle.engines.report.per_scan_report`).
        preprocess: the evaluation's preprocessing, called on a copy of each entry; it must return the preprocessed
            ``image`` (a MetaTensor with its affine), on which the candidates' world centres are read.
        shape, scales: see :py:func:`bundle.lesions.patches.candidate_patches`.
        lesions: add every reference lesion (not ignored) as a positive. Default True.
        negatives_per_scan: also add this many negatives per scan, drawn uniformly among the voxels inside the
            candidate mask (``mask_key`` of the preprocessed data, when ``preprocess`` makes it) that are at least as
            bright as ``negative_level`` (0.55 of the [-1000, 400] HU window is -230 HU: vessels, airway walls,
            pleura, soft tissue) and farther than its radius plus ``negative_margin_mm`` from every reference lesion
            (ignored ones included). Default 0.
        negative_level, negative_margin_mm, mask_key: see ``negatives_per_scan``.
        seed: seeds the draw of the negatives. Default 0.

    Returns:
        ``{"patches" (N, scales, *shape) float16, "labels" (N,) uint8, "scan" (N,) int, "kind" (N,) str
        ("candidate", "lesion" or "sampled"), "diameter_mm" (N,) float (of the lesion hit; 0 for a negative),
        "center_voxel" (N, 3) float (on the preprocessed grid)}``.

    Raises:
        ValueError: when ``items`` and ``per_scan.json`` do not have the same number of scans, or an entry cannot be
            preprocessed (the message names its image).
    """
    scans = json.loads(Path(per_scan).read_text())["scans"]
    if len(scans) != len(items):
        raise ValueError(f"{per_scan}: {len(scans)} scans, but {len(items)} datalist entries were given.")
    parts: dict[str, list] = {"patches": [], "labels": [], "scan": [], "kind": [], "diameter_mm": [], "center_voxel": []}
    rng = np.random.default_rng(seed)
    for index, (item, scan) in enumerate(zip(items, scans)):
        path = item["image"]
        try:
            data = preprocess(dict(item))
            image = data["image"]
        except (OSError, RuntimeError, KeyError, ValueError) as exc:  # MONAI wraps a transform's error in RuntimeError
            raise ValueError(f"{path}: cannot preprocess it ({exc.__cause__ or exc}).") from exc
        affine = np.asarray(torch.as_tensor(image.affine), dtype=np.float64)
        rows = [c for c in scan["candidates"] if c["status"] in ("tp", "double", "fp")]
        refs = [les for les in scan["lesions"] if not les["ignore"]] if lesions else []
        voxels = world_to_voxel([c["center_mm"] for c in rows] + [les["center_mm"] for les in refs], affine)
        sampled = np.zeros((0, 3))
        if negatives_per_scan > 0:
            sampled = _sample_negatives(image, data.get(mask_key), affine, scan["lesions"], negatives_per_scan,
                                        negative_level, negative_margin_mm, rng)  # fmt: skip
        voxels = np.concatenate([voxels, sampled])
        if not len(voxels):
            continue
        patches = candidate_patches(image, voxels, shape, scales)
        parts["patches"].append(patches.astype(np.float16))
        parts["center_voxel"].append(voxels)
        parts["labels"] += [int(c["status"] != "fp") for c in rows] + [1] * len(refs) + [0] * len(sampled)
        parts["scan"] += [index] * len(voxels)
        parts["kind"] += ["candidate"] * len(rows) + ["lesion"] * len(refs) + ["sampled"] * len(sampled)
        parts["diameter_mm"] += [
            float(scan["lesions"][c["lesion"]]["diameter_mm"]) if c["status"] != "fp" else 0.0 for c in rows
        ] + [float(les["diameter_mm"]) for les in refs] + [0.0] * len(sampled)
        logger.info("%s: %d candidates (%d hits), %d lesions, %d sampled negatives", path, len(rows),
                    sum(c["status"] != "fp" for c in rows), len(refs), len(sampled))  # fmt: skip
    empty = np.zeros((0, len(scales), *shape), dtype=np.float16)
    return {
        "patches": np.concatenate(parts["patches"]) if parts["patches"] else empty,
        "labels": np.asarray(parts["labels"], dtype=np.uint8),
        "scan": np.asarray(parts["scan"], dtype=int),
        "kind": np.asarray(parts["kind"], dtype=str),
        "diameter_mm": np.asarray(parts["diameter_mm"], dtype=np.float64),
        "center_voxel": np.concatenate(parts["center_voxel"]) if parts["center_voxel"] else np.zeros((0, 3)),
    }


def _sample_negatives(
    image: torch.Tensor,
    mask: torch.Tensor | None,
    affine: np.ndarray,
    lesions: Sequence[Mapping[str, Any]],
    count: int,
    level: float,
    margin_mm: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Up to ``count`` voxel indices (k, 3) drawn uniformly among the bright voxels inside ``mask`` (all voxels when
    it is None) away from every lesion (see :py:func:`collect_patches`)."""
    img = np.asarray(torch.as_tensor(image).detach().cpu(), dtype=np.float32)
    img = img[0] if img.ndim == 4 else img
    allowed = img >= level
    if mask is not None:
        m = np.asarray(torch.as_tensor(mask).detach().cpu()) > 0
        allowed &= m[0] if m.ndim == 4 else m
    points = np.argwhere(allowed)
    if len(points) and len(lesions):
        world = (affine[:3, :3] @ points.T).T + affine[:3, 3]
        centres = np.asarray([les["center_mm"] for les in lesions], dtype=np.float64)
        radius = np.asarray([les["diameter_mm"] / 2.0 + margin_mm for les in lesions], dtype=np.float64)
        far = np.ones(len(points), dtype=bool)
        for c, r in zip(centres, radius):
            far &= ((world - c) ** 2).sum(1) > r**2
        points = points[far]
    if not len(points):
        return np.zeros((0, 3))
    return points[rng.choice(len(points), size=min(count, len(points)), replace=False)].astype(np.float64)


def _augment(x: torch.Tensor, generator: torch.Generator, max_shift: int = 2) -> torch.Tensor:
    """Random flips of the three axes, a random quarter turn in the (isotropic) x-y plane, a shift of up to
    ``max_shift`` voxels per axis, and intensity scale 0.9-1.1 with Gaussian noise (sd 0.01), per batch."""
    for axis in (2, 3, 4):
        if torch.rand(1, generator=generator).item() < 0.5:
            x = x.flip(axis)
    x = torch.rot90(x, int(torch.randint(0, 4, (1,), generator=generator)), dims=(2, 3))
    shifts = [int(s) for s in torch.randint(-max_shift, max_shift + 1, (3,), generator=generator)]
    x = torch.roll(x, shifts=shifts, dims=(2, 3, 4))
    scale = 0.9 + 0.2 * torch.rand(1, generator=generator).item()
    return x * scale + 0.01 * torch.randn(x.shape, generator=generator)


def fit_candidate_net(
    patches: np.ndarray,
    labels: np.ndarray,
    channels: Sequence[int] = (8, 16, 32),
    epochs: int = 30,
    batch_size: int = 32,
    learning_rate: float = 1e-3,
    weight_decay: float = 1e-4,
    seed: int = 0,
    augment: bool = True,
) -> tuple[CandidateNet, list[dict[str, float]]]:
    """
    Train a :py:class:`CandidateNet` on labelled patches.

    Each batch is drawn with the two classes equally likely (sampling with replacement by inverse class frequency),
    so the loss is plain binary cross-entropy; Adam with cosine decay of the learning rate to 0.

    Args:
        patches: (N, scales, *shape) patches from :py:func:`collect_patches`.
        labels: (N,) 0/1.
        channels: :py:class:`CandidateNet` channels. Default (8, 16, 32).
        epochs: passes of N samples each. Default 30.
        batch_size: default 32.
        learning_rate, weight_decay: Adam's. Defaults 1e-3, 1e-4.
        seed: seeds the weights, the sampling and the augmentation. Default 0.
        augment: see :py:func:`_augment`. Default True.

    Returns:
        (the trained net in eval mode, one ``{"epoch", "loss", "accuracy"}`` per epoch, on the training draws).

    Raises:
        ValueError: when the shapes disagree or a class is missing.
    """
    x_all = torch.as_tensor(np.asarray(patches, dtype=np.float32))
    y_all = torch.as_tensor(np.asarray(labels, dtype=np.float32)).reshape(-1)
    if x_all.ndim != 5 or x_all.shape[0] != y_all.numel():
        raise ValueError(f"patches must be (N, C, H, W, D) with N = len(labels), got {tuple(x_all.shape)}, {y_all.numel()}.")
    n_pos = int(y_all.sum())
    if n_pos == 0 or n_pos == y_all.numel():
        raise ValueError("labels must hold both classes (lesions and false positives) to fit the candidate net.")
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    net = CandidateNet(in_channels=x_all.shape[1], channels=tuple(channels))
    optimizer = torch.optim.Adam(net.parameters(), lr=learning_rate, weight_decay=weight_decay)
    steps_per_epoch = max(1, math.ceil(y_all.numel() / batch_size))
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * steps_per_epoch)
    weights = torch.where(y_all > 0, 0.5 / n_pos, 0.5 / (y_all.numel() - n_pos)).double()
    history = []
    for epoch in range(1, epochs + 1):
        net.train()
        total, correct, seen = 0.0, 0, 0
        for _ in range(steps_per_epoch):
            index = torch.multinomial(weights, batch_size, replacement=True, generator=generator)
            x, y = x_all[index], y_all[index]
            if augment:
                x = _augment(x, generator)
            logits = net(x)
            loss = F.binary_cross_entropy_with_logits(logits, y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            total += float(loss.detach()) * len(y)
            correct += int(((logits > 0).float() == y).sum())
            seen += len(y)
        history.append({"epoch": epoch, "loss": total / seen, "accuracy": correct / seen})
        logger.info("candidate net epoch %d/%d: loss %.4f, accuracy %.3f", epoch, epochs, total / seen, correct / seen)
    net.eval()
    return net, history
