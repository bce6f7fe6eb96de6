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

The host is prepared once (:py:mod:`bundle.data.synthetic.host_context`); the lesion's kind, shape, location and
size come from :py:mod:`bundle.data.synthetic.lesion_params`, which also builds its record.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage

from bundle.data.synthetic.host_context import HostContext
from bundle.data.synthetic.lesion_params import (
    CT_KINDS,
    CT_LOCATIONS,
    LIBRARY_SHAPE,
    MR_LOCATIONS,
    SHAPES,
    kinds_locations,
    lesion_record,
    sample_lesion_params,
)
from bundle.data.synthetic.noise import correlated_noise
from bundle.data.synthetic.shapes import library_shape_model, shape_model, shape_reach, unit_volume, voxel_occupancy

if TYPE_CHECKING:
    from bundle.data.lidc import ShapeLibrary

__all__ = ["insert_lesion", "synthesize_case", "pick_library_nodule", "draw_library_lesion"]

logger = logging.getLogger(__name__)

MAX_LIBRARY_SLICE_MM = 2.5  # library nodules read on thicker slices are staircases: not used as shapes


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
    library: ShapeLibrary | None = None,
    nodule: int | None = None,
) -> dict | None:
    """Insert one lesion into ``image`` (in place) and mark it in ``label`` and ``occupied``.

    Args:
        ctx: the host, from :py:func:`prepare_host`.
        image: float32 (H, W, D) to modify, initially a copy of the host volume.
        label: uint8 (H, W, D); lesion voxels are set to 1.
        rng: numpy Generator.
        kind: one of :py:data:`CT_KINDS` (chest CT), :py:data:`CT_BRAIN_KINDS` (head CT) or :py:data:`MR_KINDS`.
        shape: one of :py:data:`SHAPES`, or :py:data:`LIBRARY_SHAPE` (``"lidc"``): a real nodule's shape from
            ``library``, chosen at random among those of the kind's texture (see :func:`pick_library_nodule`).
        location: one of :py:data:`CT_LOCATIONS` (chest CT) or :py:data:`MR_LOCATIONS` (head CT, MR).
        diameter_mm: requested equivalent diameter (volume of the shape without spicules).
        occupied: optional bool (H, W, D) of earlier lesions grown by ``gap_mm``; updated in place.
        gap_mm: minimum distance kept between lesions and from ``ctx.exclusion``. Defaults to 3.
        max_tries: placements tried before giving up. Defaults to 20.
        psf_sigma_mm: in-plane Gaussian point-spread sigma added to the partial-volume occupancy. Defaults to 0.5.
        library: the LIDC-IDRI nodule shapes (:class:`bundle.data.lidc.ShapeLibrary`) of ``shape="lidc"``.
        nodule: the library nodule to use (``shape="lidc"``). Defaults to a random one of the kind's texture.

    Returns:
        the lesion's record (see :py:func:`lesion_record`, plus ``kind``, ``shape``, ``location``,
        ``requested_diameter_mm``, ``value_hu`` (CT; part-solid also ``solid_hu``, ``core_fraction``; head CT
        also ``contrast_hu`` over the surrounding parenchyma) or ``value`` and ``contrast`` (MR, relative to the
        surrounding tissue), and ``synthetic: True``),
        or None when no free place was found (logged at DEBUG).

    Raises:
        ValueError: when ``kind``/``shape``/``location`` do not fit the modality or ``diameter_mm`` <= 0.
    """
    kinds, locs = kinds_locations(ctx.modality, ctx.organ)
    if kind not in kinds:
        raise ValueError(f"kind must be one of {kinds} for {ctx.modality}, got {kind!r}.")
    if shape not in SHAPES and not (shape == LIBRARY_SHAPE and library is not None):
        hint = " (and 'lidc' with a shape library)" if shape == LIBRARY_SHAPE else ""
        raise ValueError(f"shape must be one of {SHAPES}{hint}, got {shape!r}.")
    if location not in locs:
        raise ValueError(f"location must be one of {locs} for {ctx.modality}, got {location!r}.")
    if not diameter_mm > 0:
        raise ValueError(f"diameter_mm must be > 0, got diameter_mm={diameter_mm}.")
    spacing = np.asarray(ctx.spacing)
    if shape == LIBRARY_SHAPE:
        nodule = pick_library_nodule(library, kind, rng) if nodule is None else int(nodule)
        model = library_shape_model(library.mask(nodule), library.records[nodule]["spacing_mm"], rng)
    else:
        nodule, model = None, shape_model(shape, rng)
    scale = diameter_mm / 2.0 * (4.0 / 3.0 * np.pi / unit_volume(model)) ** (1 / 3)
    reach = scale * shape_reach(model)
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
        if nodule is not None:
            desc.update(lidc_nodule=nodule, lidc_patient=library.records[nodule]["patient_id"])
        return lesion_record(
            lab, ctx.affine, offset=lo, kind=kind, shape=shape, location=location,
            requested_diameter_mm=round(float(diameter_mm), 2), **desc, synthetic=True,
        )
    logger.debug("gave up placing a %.1f mm %s lesion in %s", diameter_mm, location, ctx.host_id)
    return None


def pick_library_nodule(library: ShapeLibrary, kind: str, rng: np.random.Generator) -> int:
    """A random nodule of ``library`` whose readers' mean texture rating gives ``kind``
    (:func:`bundle.data.lidc.texture_kind`; kinds of other organs: any nodule) and whose slices are at most
    :data:`MAX_LIBRARY_SLICE_MM` apart (thick-slice outlines are staircases); any nodule when none fits."""
    from bundle.data.lidc import texture_kind

    fits = [i for i, r in enumerate(library.records)
            if r["spacing_mm"][2] <= MAX_LIBRARY_SLICE_MM
            and (kind not in CT_KINDS or texture_kind(r["ratings"]["texture"]) == kind)]  # fmt: skip
    return int(rng.choice(fits)) if fits else int(rng.integers(len(library)))


def draw_library_lesion(
    library: ShapeLibrary, pool: Sequence[int], rng: np.random.Generator, diameter_range_mm: Sequence[float]
) -> dict | None:
    """A nodule of ``pool`` drawn uniformly (so sizes and textures follow the LIDC readings; thin-slice readings
    only, see :func:`pick_library_nodule`), with its own kind (:func:`bundle.data.lidc.texture_kind`) and equivalent
    diameter; None when no nodule of the pool lies in ``diameter_range_mm``."""
    from bundle.data.lidc import texture_kind

    lo, hi = float(diameter_range_mm[0]), float(diameter_range_mm[1])
    fits = [i for i in pool if lo <= library.records[i]["diameter_mm"] <= hi
            and library.records[i]["spacing_mm"][2] <= MAX_LIBRARY_SLICE_MM]  # fmt: skip
    if not fits:
        return None
    i = int(rng.choice(fits))
    record = library.records[i]
    return {"kind": texture_kind(record["ratings"]["texture"]), "shape": LIBRARY_SHAPE,
            "diameter_mm": float(record["diameter_mm"]), "nodule": i}  # fmt: skip


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
    shape_library: ShapeLibrary | None = None,
    library_share: float = 0.0,
    library_pool: Sequence[int] | None = None,
) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """Build one case: the host with ``n_lesions`` non-overlapping synthetic lesions, their label and records.

    Each lesion's parameters come from :py:func:`sample_lesion_params`; when no place is free for them the
    location is redrawn, then the diameter is halved (down to the range minimum) before the lesion is skipped.
    With a ``shape_library``, a share ``library_share`` of the lesions are real LIDC-IDRI nodules instead: a nodule
    of ``library_pool`` drawn uniformly gives the shape, the kind (its texture rating) and the diameter (its own,
    within ``diameter_range_mm``), so those lesions follow the readings' size and texture distribution; the
    location is drawn as for the others.

    Args:
        ctx: the host, from :py:func:`prepare_host`.
        volume: the host volume (H, W, D); not modified.
        rng: numpy Generator.
        n_lesions: lesions to insert (>= 0).
        diameter_range_mm: (min, max) equivalent diameter. Defaults to (3, 30).
        shape_library: LIDC-IDRI nodule shapes (:class:`bundle.data.lidc.ShapeLibrary`). Defaults to None.
        library_share: the share of lesions taken from ``shape_library`` (0-1). Defaults to 0.
        library_pool: the library nodules to draw from. Defaults to all.

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
    locations = kinds_locations(ctx.modality, ctx.organ)[1]
    for _ in range(n_lesions):
        params = sample_lesion_params(rng, ctx.modality, diameter_range_mm, organ=ctx.organ)
        if shape_library is not None and rng.random() < library_share:
            pool = range(len(shape_library)) if library_pool is None else library_pool
            params.update(draw_library_lesion(shape_library, pool, rng, diameter_range_mm) or {})
        record = None
        for attempt in range(4):
            if attempt == 1:
                params["location"] = str(rng.choice(locations))
            elif attempt > 1:
                params["diameter_mm"] = max(params["diameter_mm"] / 2.0, float(diameter_range_mm[0]))
            record = insert_lesion(ctx, image, label, rng, occupied=occupied, library=shape_library, **params)
            if record is not None:
                break
        if record is None:
            logger.warning("could not place lesion %s in %s; skipped.", params, ctx.host_id)
        else:
            records.append(record)
    return image, label, records
