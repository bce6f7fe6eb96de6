"""Realistic synthetic lesions inserted into real host scans (CT lung nodules, CT and MR brain lesions).

A lesion is an implicit 3-D shape (ellipsoid, union of lobes, or core with thin radial spicules) evaluated on a
sub-voxel grid (about ``r / 6`` mm, so a 5 mm slice is sampled 10-15 times along z) and averaged down to the host
grid (:mod:`bundle.data.synthetic.shapes`): the average is the voxel's occupancy, which gives the partial-volume blur of
the host's own spacing. A small Gaussian point-spread blur is added, then the lesion is blended into the host::

    out = (1 - a) * host + a * lesion_value + sqrt(1 - (1 - a)^2) * noise       (noise matched to the host)
    out = max(host, out)                                                         (CT only)

The lung CT ``max`` keeps vessels crossing a nodule and never paints over the chest wall or bone (juxta-pleural
nodules get a flat pleural base because their occupancy is also cut to the lung mask grown by one voxel).
The label is ``occupancy >= 0.5`` (at least the voxel of highest occupancy). Everything random is drawn from the
``numpy.random.Generator`` passed in, so a seed reproduces a case exactly.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from bundle.data.synthetic.hosts import correlated_noise, estimate_noise, voxel_spacing
from bundle.data.synthetic.shapes import shape_model, unit_volume, voxel_occupancy
from bundle.transforms.lung_mask import body_mask

__all__ = [
    "CT_KINDS",
    "MR_KINDS",
    "CT_BRAIN_KINDS",
    "ORGANS",
    "SHAPES",
    "CT_LOCATIONS",
    "MR_LOCATIONS",
    "HostContext",
    "prepare_host",
    "sample_lesion_params",
    "insert_lesion",
    "synthesize_case",
    "lesion_record",
]

logger = logging.getLogger(__name__)

CT_KINDS = ("solid", "part-solid", "ggo")
MR_KINDS = ("hyper", "hypo")
# head CT: hyperdense = acute haemorrhage / enhancing metastasis, hypodense = infarct / oedema (docs/data.md)
CT_BRAIN_KINDS = ("hyperdense", "hypodense")
ORGANS = ("lungs", "brain")
SHAPES = ("spherical", "lobulated", "spiculated")
CT_LOCATIONS = ("isolated", "juxta-vascular", "juxta-pleural")
MR_LOCATIONS = ("deep", "border")
_MODALITIES = ("CT", "MR")


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


def _kinds_locations(modality: str, organ: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    if modality == "MR":
        return MR_KINDS, MR_LOCATIONS
    return (CT_KINDS, CT_LOCATIONS) if organ == "lungs" else (CT_BRAIN_KINDS, MR_LOCATIONS)


def _check_organ(modality: str, organ: str | None) -> str:
    """The organ for a modality: lungs for CT and brain for MR by default; MR must be brain."""
    organ = ("lungs" if modality == "CT" else "brain") if organ is None else organ
    if organ not in ORGANS or (modality == "MR" and organ != "brain"):
        raise ValueError(f"organ must be one of {ORGANS} ('brain' for MR), got organ={organ!r} for {modality}.")
    return organ


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
    if modality not in _MODALITIES:
        raise ValueError(f"modality must be one of {_MODALITIES}, got {modality!r}.")
    organ = _check_organ(modality, organ)
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


def _choice(rng: np.random.Generator, options: Sequence[str], p: Sequence[float]) -> str:
    return str(options[int(rng.choice(len(options), p=np.asarray(p) / np.sum(p)))])


def sample_lesion_params(
    rng: np.random.Generator,
    modality: str,
    diameter_range_mm: Sequence[float] = (3.0, 30.0),
    organ: str | None = None,
) -> dict:
    """Draw one lesion's kind, shape, location and diameter.

    Diameters are log-uniform in ``diameter_range_mm`` (3-30 mm: 30 % below 6 mm). CT kinds: solid 50 %,
    part-solid 20 % (>= 8 mm only), ground-glass 30 %; shapes: spherical 40 %, lobulated 35 %, spiculated 25 %
    (>= 8 mm only); locations: isolated 40 %, juxta-vascular 30 %, juxta-pleural 30 %. MR: hyper 60 % / hypo 40 %,
    spherical or lobulated, deep 60 % / border 40 % (touching CSF: cortex or ventricle). Head CT
    (``organ="brain"``): hyperdense 50 % / hypodense 50 %, spherical or lobulated, deep 60 % / border 40 %.

    Args:
        rng: numpy Generator.
        modality: ``"CT"`` or ``"MR"``.
        diameter_range_mm: (min, max) equivalent diameter in mm. Defaults to (3, 30).
        organ: ``"lungs"`` or ``"brain"``; None: lungs for CT, brain for MR.

    Returns:
        dict with ``kind``, ``shape``, ``location``, ``diameter_mm``.

    Raises:
        ValueError: when ``modality`` or ``organ`` is unknown or the range is not 0 < min <= max.
    """
    if modality not in _MODALITIES:
        raise ValueError(f"modality must be one of {_MODALITIES}, got {modality!r}.")
    organ = _check_organ(modality, organ)
    lo, hi = (float(x) for x in diameter_range_mm)
    if not 0 < lo <= hi:
        raise ValueError(f"diameter_range_mm must satisfy 0 < min <= max, got diameter_range_mm={diameter_range_mm}.")
    d = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
    if modality == "CT" and organ == "lungs":
        kind = _choice(rng, CT_KINDS, (0.5, 0.2 if d >= 8 else 0.0, 0.3))
        shape = _choice(rng, SHAPES, (0.4, 0.35, 0.25 if d >= 8 else 0.0))
        location = _choice(rng, CT_LOCATIONS, (0.4, 0.3, 0.3))
    else:
        kind = _choice(rng, MR_KINDS, (0.6, 0.4)) if modality == "MR" else _choice(rng, CT_BRAIN_KINDS, (0.5, 0.5))
        shape = _choice(rng, SHAPES[:2], (0.5, 0.5))
        location = _choice(rng, MR_LOCATIONS, (0.6, 0.4))
    return {"kind": kind, "shape": shape, "location": location, "diameter_mm": round(d, 3)}


def lesion_record(mask: np.ndarray, affine: np.ndarray, offset: Sequence[int] = (0, 0, 0), **fields) -> dict:
    """Describe one labelled lesion: center, box, equivalent diameter and volume (+ any extra ``fields``).

    Args:
        mask: bool array holding exactly this lesion (a box of the volume when ``offset`` is given).
        affine: 4x4 voxel-to-world matrix of the full volume.
        offset: index of ``mask[0, 0, 0]`` in the full volume.
        fields: extra entries copied into the record (kind, shape, location, synthetic, ...).

    Returns:
        dict with ``center_voxel`` (label centroid, or the label voxel nearest to it when the centroid falls
        outside the label), ``center_mm`` (RAS), ``box_voxel`` [[lo], [hi]] (hi exclusive), ``diameter_mm``
        (equivalent sphere of the label), ``volume_mm3`` and ``fields``.

    Raises:
        ValueError: when ``mask`` is empty.
    """
    idx = np.argwhere(mask)
    if idx.size == 0:
        raise ValueError("mask must contain at least one voxel, got an empty mask.")
    centroid = idx.mean(axis=0)
    if not mask[tuple(np.round(centroid).astype(int))]:
        centroid = idx[np.argmin(((idx - centroid) ** 2).sum(axis=1))].astype(float)
    center = centroid + np.asarray(offset, dtype=float)
    voxel_mm3 = float(abs(np.linalg.det(np.asarray(affine)[:3, :3])))
    volume = idx.shape[0] * voxel_mm3
    record = {
        "center_voxel": [round(float(c), 2) for c in center],
        "center_mm": [round(float(c), 2) for c in (np.asarray(affine)[:3, :3] @ center + np.asarray(affine)[:3, 3])],
        "box_voxel": [(idx.min(axis=0) + offset).tolist(), (idx.max(axis=0) + 1 + offset).tolist()],
        "diameter_mm": round(float((6.0 * volume / np.pi) ** (1 / 3)), 2),
        "volume_mm3": round(volume, 1),
    }
    record.update(fields)
    return record


def _pick_center(ctx: HostContext, location: str, radius: float, rng: np.random.Generator) -> np.ndarray | None:
    """A random candidate voxel (int array) that fits ``location`` for a lesion of ``radius`` mm, or None."""
    db, dv, df = ctx.dist_boundary_mm, ctx.dist_vessel_mm, ctx.dist_face_mm
    ok = df >= radius + 2.0
    if location == "isolated":
        ok &= (db >= radius + 3.0) & (dv >= 0.8 * radius)
    elif location == "juxta-vascular":
        ok &= (db >= radius + 2.0) & (dv >= 0.3 * radius) & (dv <= 0.9 * radius)
    elif location == "juxta-pleural":
        ok &= (db >= 0.3 * radius) & (db <= 0.75 * radius)
    elif location == "deep":
        ok &= db >= radius + 2.0
    elif location == "border":
        ok &= (db >= 0.4 * radius) & (db <= 0.9 * radius)
    else:
        raise ValueError(f"location must be one of {CT_LOCATIONS + MR_LOCATIONS}, got {location!r}.")
    pool = ctx.candidates[ok]
    if pool.size == 0:
        return None
    return np.array(np.unravel_index(int(rng.choice(pool)), ctx.shape), dtype=int)


def insert_lesion(
    ctx: HostContext,
    image: np.ndarray,
    label: np.ndarray,
    rng: np.random.Generator,
    kind: str,
    shape: str,
    location: str,
    diameter_mm: float,
    occupied: np.ndarray | None = None,
    gap_mm: float = 3.0,
    max_tries: int = 20,
    psf_sigma_mm: float = 0.5,
) -> dict | None:
    """Insert one lesion into ``image`` (in place) and mark it in ``label`` and ``occupied``.

    Args:
        ctx: the host, from :py:func:`prepare_host`.
        image: float32 (H, W, D) to modify, initially a copy of the host volume.
        label: uint8 (H, W, D); lesion voxels are set to 1.
        rng: numpy Generator.
        kind: one of :py:data:`CT_KINDS` (chest CT), :py:data:`CT_BRAIN_KINDS` (head CT) or :py:data:`MR_KINDS`.
        shape: one of :py:data:`SHAPES`.
        location: one of :py:data:`CT_LOCATIONS` (chest CT) or :py:data:`MR_LOCATIONS` (head CT, MR).
        diameter_mm: requested equivalent diameter (volume of the shape without spicules).
        occupied: optional bool (H, W, D) of earlier lesions grown by ``gap_mm``; updated in place.
        gap_mm: minimum distance kept between lesions and from ``ctx.exclusion``. Defaults to 3.
        max_tries: placements tried before giving up. Defaults to 20.
        psf_sigma_mm: in-plane Gaussian point-spread sigma added to the partial-volume occupancy. Defaults to 0.5.

    Returns:
        the lesion's record (see :py:func:`lesion_record`, plus ``kind``, ``shape``, ``location``,
        ``requested_diameter_mm``, ``value_hu`` (CT; part-solid also ``solid_hu``, ``core_fraction``; head CT
        also ``contrast_hu`` over the surrounding parenchyma) or ``value`` and ``contrast`` (MR, relative to the
        surrounding tissue), and ``synthetic: True``),
        or None when no free place was found (logged at DEBUG).

    Raises:
        ValueError: when ``kind``/``shape``/``location`` do not fit the modality or ``diameter_mm`` <= 0.
    """
    kinds, locs = _kinds_locations(ctx.modality, ctx.organ)
    if kind not in kinds:
        raise ValueError(f"kind must be one of {kinds} for {ctx.modality}, got {kind!r}.")
    if shape not in SHAPES:
        raise ValueError(f"shape must be one of {SHAPES}, got {shape!r}.")
    if location not in locs:
        raise ValueError(f"location must be one of {locs} for {ctx.modality}, got {location!r}.")
    if not diameter_mm > 0:
        raise ValueError(f"diameter_mm must be > 0, got diameter_mm={diameter_mm}.")
    spacing = np.asarray(ctx.spacing)
    model = shape_model(shape, rng)
    scale = diameter_mm / 2.0 * (4.0 / 3.0 * np.pi / unit_volume(model)) ** (1 / 3)
    reach = scale * max(
        [float(model["axes"].max())]
        + [float(np.linalg.norm(c) + r) for c, r in model["lobes"]]
    )
    reach = max([reach] + [(1.0 + rel) * scale + extra for _, rel, extra, _ in model["spikes"]])
    core = float(rng.uniform(0.35, 0.6)) if kind == "part-solid" else None
    gap = np.maximum(np.ceil(gap_mm / spacing), 1).astype(int)
    # the lesion is rasterised once, around a random sub-voxel offset; each try only moves it by whole voxels
    half = np.ceil((reach + 3 * psf_sigma_mm + 4.0) / spacing).astype(int) + 1
    frac = rng.uniform(-0.5, 0.5, 3)
    full_occ, full_core = voxel_occupancy(model, scale, half + frac, np.zeros(3, int), 2 * half + 1, spacing, core)
    for _ in range(max_tries):
        voxel = _pick_center(ctx, location, diameter_mm / 2.0, rng)
        if voxel is None:
            logger.debug("no %s place for a %.1f mm lesion in %s", location, diameter_mm, ctx.host_id)
            return None
        lo, hi = np.maximum(voxel - half, 0), np.minimum(voxel + half + 1, ctx.shape)
        box = tuple(slice(a, b) for a, b in zip(lo, hi))
        src = tuple(slice(a - v + h, b - v + h) for a, b, v, h in zip(lo, hi, voxel, half))
        occ = full_occ[src] * ctx.allowed[box]
        core_occ = None if full_core is None else full_core[src]
        lab = occ >= 0.5
        if not lab.any():
            if occ.max() <= 0:
                continue
            lab = occ == occ.max()
        # the lesion and a gap around it must stay clear of earlier lesions and of the excluded region
        glo, ghi = np.maximum(lo - gap, 0), np.minimum(hi + gap, ctx.shape)
        gbox = tuple(slice(a, b) for a, b in zip(glo, ghi))
        grown = np.zeros(tuple(ghi - glo), dtype=bool)
        grown[tuple(slice(a, a + n) for a, n in zip(lo - glo, lab.shape))] = lab
        grown = ndimage.binary_dilation(grown, structure=np.ones(tuple(2 * gap + 1), dtype=bool))
        blocked = ctx.exclusion[gbox] | (occupied[gbox] if occupied is not None else False)
        if np.any(grown & blocked):
            continue
        host = image[box]
        value, texture_std, noise_std, desc = _lesion_value(ctx, kind, host, lab, rng, ctx.region[box])
        lesion = np.full(occ.shape, value, dtype=np.float32)
        if core_occ is not None:
            solid = float(rng.uniform(-50.0, 60.0))
            core_share = np.clip(core_occ * ctx.allowed[box], 0.0, occ) / np.maximum(occ, 1e-6)
            lesion += core_share * (solid - value)
            desc.update(solid_hu=round(solid, 1), core_fraction=round(core, 3))
        corr_vox = [1.5 / s for s in spacing[:2]] + [0.0]
        lesion += _smooth_field(occ.shape, corr_vox, texture_std, rng)
        # ground glass and brain lesions (oedema) have ill-defined margins: wider than the scanner's point spread;
        # on head CT a haematoma is sharp, an infarct or oedema blurred
        if kind == "hypodense":
            edge = psf_sigma_mm + float(rng.uniform(1.0, 2.0))
        elif kind == "hyperdense":
            edge = psf_sigma_mm + float(rng.uniform(0.2, 0.6))
        else:
            ill_defined = kind in ("ggo", "part-solid", "hyper", "hypo")
            edge = psf_sigma_mm + (float(rng.uniform(0.5, 1.2)) if ill_defined else 0.0)
        alpha = ndimage.gaussian_filter(occ, sigma=[edge / s for s in spacing[:2]] + [0.0])
        alpha = np.where(alpha < 0.01, 0.0, np.clip(alpha, 0.0, 1.0))  # keep the blur tails from touching the box
        noise = correlated_noise(occ.shape, noise_std, ctx.noise_sigma_vox, rng)
        out = (1.0 - alpha) * host + alpha * lesion + np.sqrt(1.0 - (1.0 - alpha) ** 2) * noise
        # lungs: a nodule never darkens what it overlaps (vessels, chest wall); brain: hypodense lesions must
        image[box] = np.maximum(host, out) if ctx.modality == "CT" and ctx.organ == "lungs" else out
        label[box] |= lab.astype(label.dtype)
        if occupied is not None:
            occupied[gbox] |= grown
        return lesion_record(
            lab, ctx.affine, offset=lo, kind=kind, shape=shape, location=location,
            requested_diameter_mm=round(float(diameter_mm), 2), **desc, synthetic=True,
        )
    logger.debug("gave up placing a %.1f mm %s lesion in %s", diameter_mm, location, ctx.host_id)
    return None


def _smooth_field(
    shape: tuple[int, ...], sigma_vox: Sequence[float], std: float, rng: np.random.Generator
) -> np.ndarray:
    """Smooth Gaussian random field (lesion texture) of standard deviation ``std``."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma=sigma_vox)
    return field * np.float32(std / max(float(field.std()), 1e-6))


def _lesion_value(
    ctx: HostContext,
    kind: str,
    host: np.ndarray,
    lab: np.ndarray,
    rng: np.random.Generator,
    region: np.ndarray | None = None,
) -> tuple[float, float, float, dict]:
    """Mean lesion value, texture std, noise std and a description for the record."""
    if ctx.modality == "CT" and ctx.organ == "brain":
        # contrast over the surrounding parenchyma (the box's placement region outside the lesion, so no CSF/bone)
        around = host[~lab & region] if region is not None and np.any(~lab & region) else host[lab]
        local = float(np.median(around))
        contrast = float(rng.uniform(25.0, 60.0)) if kind == "hyperdense" else -float(rng.uniform(8.0, 20.0))
        value = local + contrast
        texture = 4.0 if kind == "hyperdense" else 2.0
        return value, texture, ctx.noise_std, {"value_hu": round(value, 1), "contrast_hu": round(contrast, 1)}
    if ctx.modality == "CT":
        value = float(rng.uniform(-50.0, 60.0)) if kind == "solid" else float(rng.uniform(-750.0, -350.0))
        return value, (15.0 if kind == "solid" else 50.0), ctx.noise_std, {"value_hu": round(value, 1)}
    # MR: contrast relative to the surrounding tissue (brighter 70 % of the box outside the lesion, i.e. not CSF)
    ring = host[~lab]
    local = float(np.median(ring[ring >= np.percentile(ring, 30)])) if ring.size else float(np.median(host))
    contrast = float(rng.uniform(0.15, 0.45)) if kind == "hyper" else -float(rng.uniform(0.2, 0.5))
    value = local * (1.0 + contrast)
    return value, 0.06 * abs(local), ctx.noise_std, {"value": round(value, 2), "contrast": round(contrast, 3)}


def synthesize_case(
    ctx: HostContext,
    volume: np.ndarray,
    rng: np.random.Generator,
    n_lesions: int,
    diameter_range_mm: Sequence[float] = (3.0, 30.0),
) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """Build one case: the host with ``n_lesions`` non-overlapping synthetic lesions, their label and records.

    Each lesion's parameters come from :py:func:`sample_lesion_params`; when no place is free for them the
    location is redrawn, then the diameter is halved (down to the range minimum) before the lesion is skipped.

    Args:
        ctx: the host, from :py:func:`prepare_host`.
        volume: the host volume (H, W, D); not modified.
        rng: numpy Generator.
        n_lesions: lesions to insert (>= 0).
        diameter_range_mm: (min, max) equivalent diameter. Defaults to (3, 30).

    Returns:
        ``(image float32 (H, W, D), label uint8 (H, W, D), records)``.

    Raises:
        ValueError: when ``n_lesions`` < 0 or ``volume`` does not match the host's shape.
    """
    if n_lesions < 0:
        raise ValueError(f"n_lesions must be >= 0, got n_lesions={n_lesions}.")
    if tuple(np.shape(volume)) != tuple(ctx.shape):
        raise ValueError(f"volume must have the host's shape {ctx.shape}, got {np.shape(volume)}.")
    image = np.array(volume, dtype=np.float32, copy=True)
    label = np.zeros(ctx.shape, dtype=np.uint8)
    occupied = np.zeros(ctx.shape, dtype=bool)
    records: list[dict] = []
    locations = _kinds_locations(ctx.modality, ctx.organ)[1]
    for _ in range(n_lesions):
        params = sample_lesion_params(rng, ctx.modality, diameter_range_mm, organ=ctx.organ)
        record = None
        for attempt in range(4):
            if attempt == 1:
                params["location"] = str(rng.choice(locations))
            elif attempt > 1:
                params["diameter_mm"] = max(params["diameter_mm"] / 2.0, float(diameter_range_mm[0]))
            record = insert_lesion(ctx, image, label, rng, occupied=occupied, **params)
            if record is not None:
                break
        if record is None:
            logger.warning("could not place lesion %s in %s; skipped.", params, ctx.host_id)
        else:
            records.append(record)
    return image, label, records
