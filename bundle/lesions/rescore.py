"""Second-stage false-positive reduction: rescore lesion candidates from their local 3-D appearance.

The segmentation network scores a small nodule and a vessel cut across at nearly the same probability on 5 mm-slice
CT (see ``docs/README.md``, "Experiments that did not help"). Their 3-D shape differs: a nodule is a bright blob
(three Hessian eigenvalues of similar, negative size), a vessel a bright tube (one eigenvalue near zero, along its
axis). :py:func:`candidate_features` measures that and a few other local quantities at each candidate's centre,
and :py:class:`CandidateRescorer` maps them to a new score with a logistic regression fitted by
:py:func:`bundle.lesions.rescorer_fit.fit_logistic` (``scripts/fit_rescorer.py``), as the false-positive-reduction
stage of classical lung nodule CAD systems (Setio et al., IEEE TMI 2016) does with a CNN.

Features (all computed on the preprocessed grid, the image windowed to [0, 1], anisotropic spacing respected):

- ``logit_score``: logit of the network's candidate score (clipped to [1e-4, 1 - 1e-4]);
- ``log_mass``: ``log(1 + sum of the probability within 5 mm (x, y) / 5 mm (z) of the centre, in mm^3)``;
- ``blob_<s>`` / ``tube_<s>`` / ``bright_<s>`` at Gaussian scales ``s`` of 1.5 and 3 mm: with the Hessian
  eigenvalues ordered by magnitude ``|l1| <= |l2| <= |l3|``, ``l1 / l3`` (1 for a sphere, 0 for a tube),
  ``l2 / l3`` (1 for a sphere or a tube, 0 for a plate) and the scale-normalised negative Laplacian
  ``-s^2 (l1 + l2 + l3)`` (positive for a bright structure);
- ``centre``: mean intensity of the 3 x 3 x 1 voxels at the centre;
- ``contrast``: ``centre`` minus the mean over the shell 6-10 mm from the centre;
- ``air``: fraction of voxels below ``air_level`` (0.3 of the window, -580 HU for the CT window [-1000, 400])
  within 15 mm of the centre: about 1 in the lung, 0 in the mediastinum or the liver.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import ndimage

__all__ = [
    "FEATURE_NAMES",
    "candidate_features",
    "CandidateRescorer",
    "rescore_lesions",
    "check_rescore_threshold",
]

HESSIAN_SCALES_MM: tuple[float, ...] = (1.5, 3.0)
FEATURE_NAMES: tuple[str, ...] = (
    "logit_score",
    "log_mass",
    *(f"{name}_{s:g}" for s in HESSIAN_SCALES_MM for name in ("blob", "tube", "bright")),
    "centre",
    "contrast",
    "air",
)


def _spacing(affine: np.ndarray) -> np.ndarray:
    affine = np.asarray(affine, dtype=np.float64)
    nd = affine.shape[0] - 1
    return np.linalg.norm(affine[:nd, :nd], axis=0)


def _crop(array: np.ndarray, centre: np.ndarray, half: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The box of ``half`` voxels around the nearest voxel to ``centre`` (clipped to the array), and the centre's
    index inside the box."""
    index = np.clip(np.round(centre).astype(int), 0, np.asarray(array.shape) - 1)
    lo = np.maximum(index - half, 0)
    hi = np.minimum(index + half + 1, array.shape)
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    return array[box], index - lo


def _hessian_features(crop: np.ndarray, at: np.ndarray, spacing: np.ndarray, sigma_mm: float) -> list[float]:
    """(l1 / l3, l2 / l3, -sigma^2 (l1 + l2 + l3)) of the Hessian at voxel ``at`` of ``crop`` (mm units)."""
    nd = crop.ndim
    sigma = sigma_mm / spacing
    hessian = np.zeros((nd, nd))
    for i in range(nd):
        for j in range(i, nd):
            order = [0] * nd
            order[i] += 1
            order[j] += 1
            # 'nearest' keeps a crop cut by the volume border from inventing an edge
            deriv = ndimage.gaussian_filter(crop, sigma, order=order, mode="nearest", truncate=3.0)
            hessian[i, j] = hessian[j, i] = deriv[tuple(at)] / (spacing[i] * spacing[j])
    eig = np.linalg.eigvalsh(hessian)
    eig = eig[np.argsort(np.abs(eig))]  # |l1| <= |l2| <= |l3|
    l3 = eig[-1] if abs(eig[-1]) > 1e-12 else 1e-12
    return [float(eig[0] / l3), float(eig[1] / l3), float(-(sigma_mm**2) * eig.sum())]


def _distance_mm(shape: tuple[int, ...], at: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """Distance in mm of every voxel of a box of ``shape`` to its voxel ``at``."""
    grids = np.meshgrid(*[(np.arange(n) - a) * s for n, a, s in zip(shape, at, spacing)], indexing="ij")
    return np.sqrt(sum(g**2 for g in grids))


def candidate_features(
    image: np.ndarray | torch.Tensor,
    prob: np.ndarray | torch.Tensor,
    candidates: Sequence[Mapping[str, Any]],
    affine: np.ndarray | torch.Tensor,
    air_level: float = 0.3,
) -> np.ndarray:
    """
    The features of :py:data:`FEATURE_NAMES` for each candidate (see the module docstring).

    Args:
        image: the preprocessed image (H, W, D), windowed to [0, 1] (a leading channel axis of size 1 is dropped).
        prob: the lesion probability map on the same grid.
        candidates: dicts with ``center_voxel`` (fractional indices of ``image``) and ``score``, as
            :py:func:`bundle.lesions.find.find_lesions` returns them.
        affine: voxel-to-world matrix of the grid (only the voxel spacing is used).
        air_level: intensity below which a voxel counts as air / lung for ``air``. Default 0.3.

    Returns:
        float64 array (N, len(FEATURE_NAMES)).

    Raises:
        ValueError: when ``image`` and ``prob`` differ in shape or are not 3-D.
    """
    img = np.asarray(torch.as_tensor(image).detach().cpu(), dtype=np.float32)
    pr = np.asarray(torch.as_tensor(prob).detach().cpu(), dtype=np.float32)
    img = img[0] if img.ndim == 4 and img.shape[0] == 1 else img
    pr = pr[0] if pr.ndim == 4 and pr.shape[0] == 1 else pr
    if img.ndim != 3 or img.shape != pr.shape:
        raise ValueError(f"image and prob must be 3-D arrays of one shape, got {img.shape} and {pr.shape}.")
    spacing = _spacing(np.asarray(torch.as_tensor(affine).cpu()))
    voxel_mm3 = float(np.prod(spacing))
    half_hessian = np.ceil(3.0 * max(HESSIAN_SCALES_MM) / spacing).astype(int) + 1
    half_mass = np.ceil(5.0 / spacing).astype(int)
    half_ring = np.ceil(10.0 / spacing).astype(int)
    half_air = np.ceil(15.0 / spacing).astype(int)
    rows = []
    for cand in candidates:
        centre = np.asarray(cand["center_voxel"], dtype=np.float64)
        score = float(np.clip(cand["score"], 1e-4, 1 - 1e-4))
        row = [math.log(score / (1 - score))]
        mass, _ = _crop(pr, centre, half_mass)
        row.append(math.log1p(float(mass.sum()) * voxel_mm3))
        crop, at = _crop(img, centre, half_hessian)
        for sigma in HESSIAN_SCALES_MM:
            row.extend(_hessian_features(crop, at, spacing, sigma))
        core, _ = _crop(img, centre, np.array([1, 1, 0]))
        centre_value = float(core.mean())
        ring, at_ring = _crop(img, centre, half_ring)
        dist = _distance_mm(ring.shape, at_ring, spacing)
        shell = ring[(dist >= 6.0) & (dist <= 10.0)]
        row.extend([centre_value, centre_value - float(shell.mean()) if shell.size else 0.0])
        around, at_air = _crop(img, centre, half_air)
        inside = _distance_mm(around.shape, at_air, spacing) <= 15.0
        row.append(float((around[inside] < air_level).mean()))
        rows.append(row)
    return np.asarray(rows, dtype=np.float64).reshape(len(rows), len(FEATURE_NAMES))


class CandidateRescorer:
    """
    Replace each candidate's ``score`` by the fitted logistic model's probability that it is a lesion; the
    network's score is kept as ``cnn_score`` and the features as ``features``.

    Args:
        model: a dict from :py:func:`bundle.lesions.rescorer_fit.fit_logistic`, or the path of its JSON file; None
            keeps the network's score and only attaches ``features`` (to collect the data that
            :py:func:`bundle.lesions.rescorer_fit.fit_logistic` fits).
        air_level: see :py:func:`candidate_features`. Default 0.3.
        features_log: optional JSON-lines file, emptied here; every call appends one line
            ``{"candidates": [{"center_mm", "cnn_score", "score", "features"}, ...]}`` in the order returned, which is
            the order of the scans and candidates in the evaluation's ``per_scan.json`` (``scripts/fit_rescorer.py``
            joins the two to fit the model).

    Raises:
        ValueError: when the model file is missing or unreadable, or its feature names differ from
            :py:data:`FEATURE_NAMES` (a model fitted by another version of the features).
    """

    def __init__(
        self,
        model: Mapping[str, Any] | str | os.PathLike | None,
        air_level: float = 0.3,
        features_log: str | os.PathLike | None = None,
    ) -> None:
        self.air_level = air_level
        self.features_log = None if not features_log else Path(features_log)
        if self.features_log is not None:
            self.features_log.parent.mkdir(parents=True, exist_ok=True)
            self.features_log.write_text("")
        self.fitted = model is not None
        if model is None:
            return
        if not isinstance(model, Mapping):
            path = Path(model)
            try:
                model = json.loads(path.read_text())
            except (OSError, ValueError) as exc:
                raise ValueError(f"{path}: cannot read the rescorer model ({exc}).") from exc
        names = list(model.get("feature_names", []))
        if names != list(FEATURE_NAMES):
            raise ValueError(f"rescorer model features {names} differ from this version's {list(FEATURE_NAMES)}.")
        self.mean = np.asarray(model["mean"], dtype=np.float64)
        self.std = np.asarray(model["std"], dtype=np.float64)
        self.weights = np.asarray(model["weights"], dtype=np.float64)
        self.bias = float(model["bias"])

    def probability(self, features: np.ndarray) -> np.ndarray:
        """The model's lesion probability for feature rows (N, F)."""
        z = (np.asarray(features, dtype=np.float64) - self.mean) / self.std
        return 1.0 / (1.0 + np.exp(-(z @ self.weights + self.bias)))

    def __call__(
        self,
        candidates: Sequence[Mapping[str, Any]],
        image: np.ndarray | torch.Tensor,
        prob: np.ndarray | torch.Tensor,
        affine: np.ndarray | torch.Tensor,
    ) -> list[dict[str, Any]]:
        """Rescored copies of ``candidates`` (see :py:func:`candidate_features` for the arguments), sorted by the
        new score, highest first."""
        features = candidate_features(image, prob, candidates, affine, self.air_level)
        scores = self.probability(features) if self.fitted else [c["score"] for c in candidates]
        out = [
            {**c, "cnn_score": float(c["score"]), "score": float(s), "features": [round(float(v), 6) for v in f]}
            for c, s, f in zip(candidates, scores, features)
        ]
        out.sort(key=lambda c: -c["score"])
        if self.features_log is not None:
            keys = ("center_mm", "cnn_score", "score", "features")
            with self.features_log.open("a") as f:
                f.write(json.dumps({"candidates": [{k: _plain(c[k]) for k in keys} for c in out]}) + "\n")
        return out


def _plain(value: Any) -> Any:
    return np.asarray(value).tolist() if isinstance(value, (np.ndarray, torch.Tensor)) else value


def check_rescore_threshold(threshold: float) -> float:
    """``threshold`` as a float in [0, 1] (rescored scores are probabilities); ValueError otherwise."""
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0.0 <= threshold <= 1.0:
        raise ValueError(f"rescore_threshold must be a number in [0, 1], got rescore_threshold={threshold!r}.")
    return float(threshold)


def rescore_lesions(
    rescorer: Any,
    lesions: Sequence[Mapping[str, Any]],
    image: np.ndarray | torch.Tensor,
    prob: np.ndarray | torch.Tensor,
    affine: np.ndarray | torch.Tensor,
    threshold: float = 0.5,
    label_map: np.ndarray | None = None,
) -> tuple[list[dict[str, Any]], np.ndarray | None]:
    """
    Rescore the lesions of :py:func:`bundle.lesions.find.find_lesions` and keep those whose new score is at
    least ``threshold``; the label map (``n`` on the ``n``-th lesion) is renumbered to match (dropped lesions -> 0).

    Args:
        rescorer: e.g. :py:class:`CandidateRescorer`, called as ``rescorer(lesions, image, prob, affine)``.
        lesions: ``find_lesions`` output, in its order (lesion ``n`` has label ``n``).
        image, prob, affine: see :py:func:`candidate_features`.
        threshold: the lowest new score kept. Default 0.5.
        label_map: optional ``find_lesions`` label map.

    Returns:
        (kept lesions, highest new score first; the renumbered label map or None).
    """
    threshold = check_rescore_threshold(threshold)
    tagged = [{**les, "_label": n} for n, les in enumerate(lesions, start=1)]
    kept = [les for les in rescorer(tagged, image, prob, affine) if les["score"] >= threshold]
    if label_map is not None:
        lut = np.zeros(len(lesions) + 1, dtype=label_map.dtype)
        for new, les in enumerate(kept, start=1):
            lut[les["_label"]] = new
        label_map = lut[label_map]
    return [{k: v for k, v in les.items() if k != "_label"} for les in kept], label_map
