"""Masks of a host scan: where synthetic lesions may be placed (lungs, brain parenchyma, brain tissue) and the
mask of the real lesion a host holds (the first chest CT's tumour, approximate; the second's nodule, outlined by
readers), which placement must avoid.
"""

from __future__ import annotations

import logging
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from bundle.data.synthetic.head_ct import cranium
from bundle.data.synthetic.hosts import load_host, voxel_spacing
from bundle.transforms.lung_mask import lung_mask

__all__ = ["host_region_mask", "known_lesion_mask"]

logger = logging.getLogger(__name__)

# synthetic lesions stay this far (mm) from a real lesion that readers outlined
READER_MARGIN_MM = 10.0


def _mr_brain(meta: dict, shape: tuple[int, ...]) -> np.ndarray:
    """Brain mask of an MR host from its companion files, cropped like the volume."""
    paths = {Path(p).name: Path(p) for p in meta["paths"]}
    if meta["subject"] == "MNI152-2009a":
        gm = next(v for k, v in paths.items() if "_gm_" in k)
        wm = next(v for k, v in paths.items() if "_wm_" in k)
        prob = np.asarray(nib.load(str(gm)).dataobj, np.float32) + np.asarray(nib.load(str(wm)).dataobj, np.float32)
        brain = prob > 0.5 * 255.0
    else:
        brain = np.asarray(nib.load(str(paths["ch2bet.nii.gz"])).dataobj) > 0
    if "crop_voxel" in meta:
        (lo, hi) = meta["crop_voxel"]
        brain = brain[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
    if brain.shape != tuple(shape):
        raise ValueError(f"brain mask shape {brain.shape} does not match the volume shape {tuple(shape)}.")
    return brain


def host_region_mask(volume: np.ndarray, meta: dict) -> np.ndarray:
    """Where lesions may be placed: the lungs of a chest CT, the brain parenchyma of a head CT
    (:py:func:`bundle.data.synthetic.head_ct.cranium_brain_mask`), the brain tissue (no CSF) of an MR host.

    Args:
        volume: host volume (H, W, D) from :py:func:`load_host`.
        meta: its meta dict.

    Returns:
        bool array (H, W, D).

    Raises:
        ValueError: when ``meta["modality"]`` is neither CT nor MR.
    """
    modality = meta.get("modality")
    if modality == "CT" and meta.get("organ") == "brain":
        # the mask needs the whole skull: segmented once on the whole scan (cached), then cropped like the volume
        brain = cranium(meta["paths"][0])[2]
        if "crop_voxel" in meta:
            (lo, hi) = meta["crop_voxel"]
            brain = brain[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
        if brain.shape != volume.shape:
            raise ValueError(f"brain mask shape {brain.shape} does not match the volume shape {volume.shape}.")
        return brain.copy()
    if modality == "CT":
        if "parent" not in meta:
            return lung_mask(volume, meta["spacing"])
        # a half is not a closed body (the cut opens it): segment the whole scan, then crop like the volume
        parent, _, parent_meta = load_host(meta["parent"])
        (lo, hi) = meta["crop_voxel"]
        return lung_mask(parent, parent_meta["spacing"])[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
    if modality == "MR":
        from skimage.filters import threshold_multiotsu

        brain = _mr_brain(meta, volume.shape)
        csf_cut = threshold_multiotsu(volume[brain], classes=3)[0]  # CSF | grey | white in T1
        tissue = brain & (volume > csf_cut)
        return ndimage.binary_opening(tissue, iterations=1)
    raise ValueError(f"meta['modality'] must be 'CT' or 'MR', got {modality!r}.")


def known_lesion_mask(
    volume: np.ndarray, affine: np.ndarray, meta: dict, region: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Mask of the real lesion a host holds, empty when it holds none.

    When readers outlined it (``meta["known_lesion_mask"]``, LIDC-IDRI-0001) that mask is the lesion and the
    region within ``READER_MARGIN_MM`` of it is kept free of synthetic lesions. Otherwise (the A0001 tumour) the
    mask is approximated as follows.

    For a head CT (``meta["organ"] == "brain"``) only the region is returned (the tumour mask stays empty): the
    Cranium's real hypodensity is excluded from placement, not labelled.

    Inside the tumour's ellipsoidal region (``meta["known_lesion_roi"]``) soft tissue (-300..250 HU) is kept where
    it lies inside the slice-wise convex hull of the lung mask (this cuts it from the chest wall and the
    spine), then opened in-plane; the largest component with its holes filled is the tumour.

    Args:
        volume: host volume (H, W, D) in HU.
        affine: its 4x4 affine.
        meta: its meta dict.
        region: optional precomputed lung mask.

    Returns:
        ``(tumour, roi)``: bool arrays (H, W, D); ``roi`` is the whole ellipsoid, used as an exclusion zone.
    """
    empty = np.zeros(volume.shape, dtype=bool)
    if meta.get("known_lesion_mask") is not None:  # outlined by readers: exact; kept free around it
        tumour = np.asarray(meta["known_lesion_mask"], dtype=bool)
        dist = ndimage.distance_transform_edt(~tumour, sampling=voxel_spacing(affine)) if tumour.any() else None
        return tumour, empty if dist is None else dist <= READER_MARGIN_MM
    roi_def = meta.get("known_lesion_roi")
    if roi_def is None:
        return empty, empty
    from skimage.morphology import convex_hull_image

    spacing = np.asarray(voxel_spacing(affine))
    center = np.linalg.solve(affine, np.append(roi_def["center_mm"], 1.0))[:3]
    radii = np.asarray(roi_def["radii_mm"]) / spacing
    grids = np.ogrid[tuple(slice(0, n) for n in volume.shape)]
    roi = sum(((g - c) / r) ** 2 for g, c, r in zip(grids, center, radii)) <= 1.0
    if meta.get("organ") == "brain":
        return empty, roi
    lungs = lung_mask(volume, spacing) if region is None else region
    hull = np.zeros_like(roi)
    for k in np.flatnonzero(roi.any(axis=(0, 1))):
        if lungs[:, :, k].sum() > 10:
            hull[:, :, k] = convex_hull_image(lungs[:, :, k])
    candidate = roi & hull & (volume > -300) & (volume < 250)
    inplane = np.zeros((3, 3, 3), dtype=bool)
    inplane[:, :, 1] = ndimage.generate_binary_structure(2, 1)
    candidate = ndimage.binary_opening(candidate, structure=inplane, iterations=2)
    labels, n = ndimage.label(candidate)
    if n == 0:
        logger.warning("known_lesion_mask: no soft tissue found in the known lesion region of %s.", meta["host_id"])
        return empty, roi
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    tumour = ndimage.binary_fill_holes(labels == int(np.argmax(sizes)), structure=inplane)
    return tumour, roi
