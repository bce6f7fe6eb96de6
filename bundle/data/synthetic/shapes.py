"""Random 3-D lesion shapes and their partial-volume occupancy on a scan's voxel grid.

A shape lives in units of its nominal radius: a slightly anisotropic, randomly rotated ellipsoid, plus lobes
(``lobulated``) or a core with thin radial spicules (``spiculated``); or a real nodule's consensus mask from the
LIDC-IDRI annotations (:func:`library_shape_model`, :mod:`bundle.data.lidc`), in units of its equivalent radius.
:func:`voxel_occupancy` evaluates it on a sub-voxel grid (about ``r / 6`` mm) and averages down to the voxels, which
gives the blur of the host's own spacing.
:mod:`bundle.data.synthetic.synthesis` scales a shape to the requested volume and blends it into a host.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["random_rotation", "unit_vectors", "shape_model", "library_shape_model", "shape_occupancy", "shape_reach",
           "unit_volume", "voxel_occupancy"]  # fmt: skip


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    return q * np.sign(np.diag(r))


def unit_vectors(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.standard_normal((n, 3))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def shape_model(shape: str, rng: np.random.Generator) -> dict:
    """Random shape in units of the nominal radius (scaled later to the requested volume)."""
    axes = np.exp(rng.normal(0.0, 0.1, 3))
    model: dict = {"rot": random_rotation(rng), "axes": axes / np.prod(axes) ** (1 / 3), "lobes": [], "spikes": []}
    if shape in ("lobulated", "spiculated"):
        n = int(rng.integers(2, 5)) if shape == "lobulated" else int(rng.integers(0, 3))
        for u in unit_vectors(rng, n):
            model["lobes"].append((u * rng.uniform(0.45, 0.8), rng.uniform(0.4, 0.7)))
    if shape == "spiculated":
        dirs = unit_vectors(rng, int(rng.integers(12, 25))) * [1.0, 1.0, 0.6]  # favour the axial plane
        for u in dirs / np.linalg.norm(dirs, axis=1, keepdims=True):
            # (direction, length beyond the surface: in radii + in mm, base half-width in mm; spicules are
            # strands ~1-3 mm thick reaching 3-15 mm into the lung whatever the nodule size)
            model["spikes"].append((u, rng.uniform(0.3, 0.9), rng.uniform(2.0, 7.0), rng.uniform(0.7, 1.6)))
    return model


def library_shape_model(mask: np.ndarray, spacing_mm: Sequence[float], rng: np.random.Generator) -> dict:
    """A real nodule's mask (bool, (rows, columns, slices) at ``spacing_mm``) as a shape in units of its equivalent
    radius. It is turned about the scanner's z axis only and mirrored in-plane at random: its readers outlined it on
    axial slices, and a tilted stack of thick-slice contours would show steps no scanner makes.

    Raises:
        ValueError: on an empty mask.
    """
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        raise ValueError("library_shape_model needs a non-empty mask.")
    step = np.asarray(spacing_mm, dtype=float)
    radius = (3.0 * mask.sum() * np.prod(step) / (4.0 * np.pi)) ** (1 / 3)
    grid = mask[:: rng.choice((-1, 1)), :: rng.choice((-1, 1))].astype(np.float32)
    centre = np.argwhere(grid).mean(0)
    offsets_mm = (np.argwhere(grid) - centre) * step
    angle = rng.uniform(0.0, 2.0 * np.pi)
    c, s = np.cos(angle), np.sin(angle)
    rot = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    reach = (np.linalg.norm(offsets_mm, axis=1).max() + 0.5 * np.linalg.norm(step)) / radius  # + half a voxel
    return {"rot": rot, "axes": np.ones(3), "lobes": [], "spikes": [], "grid": grid, "grid_step": step / radius,
            "grid_centre": centre, "reach": float(reach)}  # fmt: skip


def shape_reach(model: dict) -> float:
    """How far the shape reaches from its centre, in units of its radius (spicules: see ``insert_lesion``)."""
    if "grid" in model:
        return float(model["reach"])
    return max([float(model["axes"].max())] + [float(np.linalg.norm(c) + r) for c, r in model["lobes"]])


def shape_occupancy(q: list[np.ndarray], model: dict, scale: float, pitch: float = 0.0, spikes: bool = True) -> np.ndarray:
    """Occupancy in [0, 1] of the shape scaled to ``scale`` mm at rotated coordinates ``q`` (broadcastable arrays).

    The body (ellipsoid + lobes) is a binary inside test; spicules, often thinner than the sample ``pitch`` (mm),
    get an anti-aliased edge ``clip((half_width - distance) / pitch + 0.5, 0, 1)`` so their partial volume survives.
    """
    if "grid" in model:  # a library shape: its mask, interpolated at the sample points
        from scipy import ndimage

        shape = np.broadcast_shapes(*(np.shape(v) for v in q))
        step, centre = model["grid_step"], model["grid_centre"]
        idx = [np.broadcast_to(q[i] / (scale * step[i]) + centre[i], shape) for i in range(3)]
        return (ndimage.map_coordinates(model["grid"], idx, order=1, cval=0.0) >= 0.5).astype(np.float32)
    a = model["axes"] * scale
    inside = (q[0] / a[0]) ** 2 + (q[1] / a[1]) ** 2 + (q[2] / a[2]) ** 2 <= 1.0
    for center, radius in model["lobes"]:
        c = center * scale
        inside |= (q[0] - c[0]) ** 2 + (q[1] - c[1]) ** 2 + (q[2] - c[2]) ** 2 <= (radius * scale) ** 2
    occ = inside.astype(np.float32)
    if spikes and model["spikes"]:
        rr = q[0] ** 2 + q[1] ** 2 + q[2] ** 2
        for u, rel, extra, width in model["spikes"]:
            t = q[0] * u[0] + q[1] * u[1] + q[2] * u[2]
            tip = (1.0 + rel) * scale + extra
            half = width * np.clip(2.0 * (tip - t) / (tip - 0.8 * scale), 0.0, 1.0)  # tapers over its outer half
            dist = np.sqrt(np.maximum(rr - t**2, 0.0))
            soft = np.clip((half - dist) / max(pitch, 1e-3) + 0.5, 0.0, 1.0) * ((t > 0) & (t < tip))
            np.maximum(occ, soft, out=occ)
    return occ


def unit_volume(model: dict) -> float:
    """Volume of the shape (no spikes) at scale 1, on a 48^3 grid (a library shape's is 4/3 pi by construction)."""
    if "grid" in model:
        return 4.0 / 3.0 * np.pi
    g = np.linspace(-2.0, 2.0, 48)
    step = g[1] - g[0]
    q = [g[:, None, None], g[None, :, None], g[None, None, :]]
    return float(shape_occupancy(q, model, 1.0, spikes=False).sum() * step**3)


def voxel_occupancy(
    model: dict,
    scale: float,
    center: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    spacing: Sequence[float],
    core: float | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Average a supersampled evaluation of the shape down to the voxels of box [lo, hi).

    The sample pitch is about ``scale / 6`` mm (0.3-1.0 mm), so a 5 mm slice holds 5-17 samples along z.
    Returns the occupancy (and the solid core's occupancy for part-solid nodules), float32 of the box's shape.
    """
    sub_mm = float(np.clip(scale / 6.0, 0.3, 1.0))
    n = [max(1, int(np.ceil(s / sub_mm))) for s in spacing]
    axes_mm = []
    for a in range(3):
        offsets = (np.arange(n[a]) + 0.5) / n[a] - 0.5
        axes_mm.append(((np.arange(lo[a], hi[a])[:, None] + offsets[None, :]).ravel() - center[a]) * spacing[a])
    p = [ax.astype(np.float32) for ax in axes_mm]
    p = [p[0][:, None, None], p[1][None, :, None], p[2][None, None, :]]
    rot = model["rot"]
    q = [rot[0, i] * p[0] + rot[1, i] * p[1] + rot[2, i] * p[2] for i in range(3)]  # world -> shape frame
    size = tuple(int(h - l_) for l_, h in zip(lo, hi))

    pitch = float(max(s / k for s, k in zip(spacing, n)))

    def down(mask: np.ndarray) -> np.ndarray:  # (H*n0, W*n1, D*n2) -> (H, W, D)
        m = mask.reshape(size[0], n[0], size[1], n[1], size[2], n[2])
        return m.mean(axis=(1, 3, 5), dtype=np.float32)

    occ = down(shape_occupancy(q, model, scale, pitch))
    core_occ = None if core is None else down(shape_occupancy(q, model, scale * core, pitch, spikes=False))
    return occ, core_occ
