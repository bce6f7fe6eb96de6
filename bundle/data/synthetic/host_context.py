"""A host prepared for lesion insertion (:py:class:`HostContext`): its placement maps (candidate lesion centers
and their distances to the region's boundary, to vessels and to the volume's faces) and its noise model, computed
once per host by :py:func:`prepare_host`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from bundle.data.synthetic.hosts import voxel_spacing
from bundle.data.synthetic.lesion_params import MODALITIES, check_organ
from bundle.data.synthetic.noise import estimate_noise
from bundle.transforms.lung_mask import body_mask

__all__ = ["HostContext", "prepare_host"]

logger = logging.getLogger(__name__)


@dataclass
class HostContext:
    """Everything about one host that lesion insertion needs, computed once per host.

    Attributes:
        host_id: the host's id.
        modality: ``"CT"`` or ``"MR"``.
        affine: 4x4 voxel-to-world (RAS) matrix.
        spacing: voxel size in mm along (H, W, D).
        shape: volume shape (H, W, D).
        region: bool (H, W, D), lungs (CT) or brain tissue (MR).
        allowed: bool (H, W, D), ``region`` grown by one voxel in-plane; lesion occupancy is cut to it.
        exclusion: bool (H, W, D), voxels no synthetic lesion (nor its margin) may touch, e.g. a real tumour.
        noise_std: host noise standard deviation (HU or MR units).
        noise_sigma_vox: in-plane correlation sigma of the host noise, in voxels.
        candidates: flat indices of voxels where a lesion center may go (lung parenchyma / brain tissue).
        dist_boundary_mm: distance (mm) of each candidate to the outside of ``region``.
        dist_vessel_mm: distance (mm) of each candidate to the nearest vessel (CT; +inf for MR).
        dist_face_mm: distance (mm) of each candidate to the in-plane faces of the volume.
        organ: ``"lungs"`` (chest CT) or ``"brain"`` (head CT, MR).
    """

    host_id: str
    modality: str
    affine: np.ndarray
    spacing: tuple[float, float, float]
    shape: tuple[int, int, int]
    region: np.ndarray
    allowed: np.ndarray
    exclusion: np.ndarray
    noise_std: float
    noise_sigma_vox: float
    candidates: np.ndarray
    dist_boundary_mm: np.ndarray
    dist_vessel_mm: np.ndarray
    dist_face_mm: np.ndarray
    organ: str = "lungs"


def _inplane(radius: int = 1) -> np.ndarray:
    st = np.zeros((2 * radius + 1,) * 2 + (3,), dtype=bool)
    st[:, :, 1] = True
    return st


def prepare_host(
    volume: np.ndarray,
    affine: np.ndarray,
    modality: str,
    region: np.ndarray,
    exclusion: np.ndarray | None = None,
    noise_mask: np.ndarray | None = None,
    host_id: str = "host",
    organ: str | None = None,
) -> HostContext:
    """Precompute a host's placement maps and noise model.

    Args:
        volume: host volume (H, W, D), HU for CT.
        affine: 4x4 voxel-to-world matrix.
        modality: ``"CT"`` or ``"MR"``.
        region: bool (H, W, D), where lesions may be (lung mask / brain tissue mask).
        exclusion: optional bool (H, W, D) no lesion may touch (real tumour and its surroundings).
        noise_mask: optional bool (H, W, D) homogeneous region for :py:func:`estimate_noise`; by default soft
            tissue (-100..150 HU) of the body eroded by 2 voxels in-plane (chest CT), ``region`` eroded by 2
            voxels in-plane (head CT), the brighter 30 % of the tissue mask eroded by 2 voxels (MR, i.e. white
            matter).
        host_id: name used in logs and records.
        organ: ``"lungs"`` or ``"brain"``; None: lungs for CT, brain for MR.

    Returns:
        :py:class:`HostContext`.

    Raises:
        ValueError: when ``modality`` or ``organ`` is unknown, ``volume`` is not 3-D, or a mask's shape differs.
    """
    if modality not in MODALITIES:
        raise ValueError(f"modality must be one of {MODALITIES}, got {modality!r}.")
    organ = check_organ(modality, organ)
    volume = np.asarray(volume, dtype=np.float32)
    if volume.ndim != 3:
        raise ValueError(f"volume must be 3-D (H, W, D), got shape {volume.shape}.")
    exclusion = np.zeros(volume.shape, dtype=bool) if exclusion is None else np.asarray(exclusion, dtype=bool)
    region = np.asarray(region, dtype=bool)
    for name, m in (("region", region), ("exclusion", exclusion), ("noise_mask", noise_mask)):
        if m is not None and np.shape(m) != volume.shape:
            raise ValueError(f"{name} must have the volume's shape {volume.shape}, got {np.shape(m)}.")
    spacing = voxel_spacing(affine)
    if noise_mask is None:
        if modality == "CT" and organ == "brain":
            noise_mask = ndimage.binary_erosion(region, structure=_inplane(2))
        elif modality == "CT":
            noise_mask = (volume > -100) & (volume < 150) & body_mask(volume)
            noise_mask = ndimage.binary_erosion(noise_mask, structure=_inplane(2))
        else:
            cut = np.percentile(volume[region], 70) if region.any() else np.inf
            noise_mask = ndimage.binary_erosion(region & (volume > cut), iterations=2)
    noise_std, noise_sigma = estimate_noise(volume, noise_mask)
    if modality == "CT" and organ == "lungs":
        parenchyma = region & (volume < -500)
        # large airways (trachea, main bronchi) are darker than lung parenchyma once smoothed over ~2 mm
        smooth = ndimage.gaussian_filter(volume, sigma=[2.0 / s for s in spacing[:2]] + [0.0])
        parenchyma &= smooth > -950
        vessel = region & (volume > -300)
        dist_vessel = ndimage.distance_transform_edt(~vessel, sampling=spacing) if vessel.any() else None
    else:
        parenchyma, dist_vessel = region.copy(), None
    parenchyma &= ~exclusion
    candidates = np.flatnonzero(parenchyma)
    dist_b = ndimage.distance_transform_edt(region, sampling=spacing).ravel()[candidates].astype(np.float32)
    dv = np.full(candidates.size, np.inf, np.float32) if dist_vessel is None else dist_vessel.ravel()[candidates]
    ijk = np.unravel_index(candidates, volume.shape)
    face = [np.minimum(ijk[a], volume.shape[a] - 1 - ijk[a]) * spacing[a] for a in range(2)]
    allowed = ndimage.binary_dilation(region, structure=_inplane(1))
    logger.info(
        "host %s: %d candidate voxels, noise std %.1f, corr sigma %.2f vox", host_id, candidates.size, noise_std,
        noise_sigma,
    )
    return HostContext(
        host_id=host_id, modality=modality, affine=np.asarray(affine, dtype=float), spacing=spacing,
        shape=volume.shape, region=region, allowed=allowed, exclusion=exclusion, noise_std=noise_std,
        noise_sigma_vox=noise_sigma, candidates=candidates, dist_boundary_mm=dist_b,
        dist_vessel_mm=dv.astype(np.float32), dist_face_mm=np.minimum(*face).astype(np.float32), organ=organ,
    )
