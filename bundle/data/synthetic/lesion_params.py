"""What a synthetic lesion is: the kinds, shapes and locations per modality and organ, the draw of one lesion's
parameters (:py:func:`sample_lesion_params`), and the record that describes a labelled lesion
(:py:func:`lesion_record`, also used by the converters of real data sets).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "CT_KINDS",
    "MR_KINDS",
    "CT_BRAIN_KINDS",
    "ORGANS",
    "SHAPES",
    "LIBRARY_SHAPE",
    "CT_LOCATIONS",
    "MR_LOCATIONS",
    "MODALITIES",
    "kinds_locations",
    "check_organ",
    "sample_lesion_params",
    "lesion_record",
]

CT_KINDS = ("solid", "part-solid", "ggo")
MR_KINDS = ("hyper", "hypo")
# head CT: hyperdense = acute haemorrhage / enhancing metastasis, hypodense = infarct / oedema (docs/data.md)
CT_BRAIN_KINDS = ("hyperdense", "hypodense")
ORGANS = ("lungs", "brain")
SHAPES = ("spherical", "lobulated", "spiculated")
LIBRARY_SHAPE = "lidc"  # a real nodule's shape from the LIDC-IDRI shape library (bundle.data.lidc)
CT_LOCATIONS = ("isolated", "juxta-vascular", "juxta-pleural")
MR_LOCATIONS = ("deep", "border")
MODALITIES = ("CT", "MR")


def kinds_locations(modality: str, organ: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The lesion kinds and locations of a modality and organ: chest CT, head CT (``organ="brain"``) or MR."""
    if modality == "MR":
        return MR_KINDS, MR_LOCATIONS
    return (CT_KINDS, CT_LOCATIONS) if organ == "lungs" else (CT_BRAIN_KINDS, MR_LOCATIONS)


def check_organ(modality: str, organ: str | None) -> str:
    """The organ for a modality: lungs for CT and brain for MR by default; MR must be brain."""
    organ = ("lungs" if modality == "CT" else "brain") if organ is None else organ
    if organ not in ORGANS or (modality == "MR" and organ != "brain"):
        raise ValueError(f"organ must be one of {ORGANS} ('brain' for MR), got organ={organ!r} for {modality}.")
    return organ


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
    if modality not in MODALITIES:
        raise ValueError(f"modality must be one of {MODALITIES}, got {modality!r}.")
    organ = check_organ(modality, organ)
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
