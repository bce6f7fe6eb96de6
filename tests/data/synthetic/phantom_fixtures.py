"""A small chest phantom for the synthetic-lesion tests, and a data set built on it instead of the real hosts."""

from __future__ import annotations

from pathlib import Path
from unittest import mock

import numpy as np

from bundle.data.synthetic.build import build_dataset
from bundle.data.synthetic.host_context import prepare_host
from bundle.data.synthetic.synthesis import insert_lesion
from bundle.transforms.lung_mask import lung_mask

SPACING = (1.0, 1.0, 2.5)
AFFINE = np.diag([-1.0, -1.0, 2.5, 1.0])
AFFINE[:3, 3] = (30.0, 20.0, -50.0)


def make_phantom(noise: float = 20.0, vessel: bool = True, seed: int = 0) -> tuple[np.ndarray, dict]:
    """64x56x20 chest at 1 x 1 x 2.5 mm: body 40 HU, lungs -850 HU (16 slices), one vessel in the left lung."""
    x, y, z = np.meshgrid(np.arange(64), np.arange(56), np.arange(20), indexing="ij")
    body = ((x - 31.5) / 30.0) ** 2 + ((y - 27.5) / 26.0) ** 2 <= 1.0
    zin = (z >= 2) & (z < 18)
    lung_r = (((x - 17) / 10.0) ** 2 + ((y - 27.5) / 17.0) ** 2 <= 1.0) & zin
    lung_l = (((x - 46) / 10.0) ** 2 + ((y - 27.5) / 17.0) ** 2 <= 1.0) & zin
    ves = (((x - 46) ** 2 + (y - 33) ** 2) <= 1.5**2) & lung_l & vessel
    hu = np.full(x.shape, -1000.0, dtype=np.float32)
    hu[body] = 40.0
    hu[lung_r | lung_l] = -850.0
    hu[ves] = 40.0
    hu[body] += np.random.default_rng(seed).normal(0.0, noise, int(body.sum())).astype(np.float32)
    return hu, {"body": body, "lung_right": lung_r, "lung_left": lung_l, "vessel": ves}


def make_context(exclusion: np.ndarray | None = None, vessel: bool = True):
    hu, truth = make_phantom(vessel=vessel)
    region = lung_mask(hu, SPACING, closing_mm=0.0)
    return hu, truth, prepare_host(hu, AFFINE, "CT", region, exclusion=exclusion, host_id="phantom")


def run_insert(kind, shape, location, diameter, seed=0, ctx_parts=None):
    hu, truth, ctx = ctx_parts or make_context()
    image, label = hu.copy(), np.zeros(hu.shape, dtype=np.uint8)
    record = insert_lesion(ctx, image, label, np.random.default_rng(seed), kind, shape, location, diameter)
    return hu, truth, ctx, image, label, record


def phantom_with_tumour() -> tuple[np.ndarray, np.ndarray]:
    """The phantom and a "real tumour" (a flat blob in the left lung) that the phantom's ``:left`` half holds."""
    hu, truth = make_phantom()
    blob = truth["lung_left"] & (np.indices(hu.shape)[0] > 50) & (np.indices(hu.shape)[2] == 9)
    return hu, blob


def build_phantom_dataset(out: Path, seed: int = 0, outlined: bool = False, **kwargs) -> Path:
    """:py:func:`build_dataset` on the phantom (hosts ``phantom:right`` / ``phantom:left``; the real hosts take
    minutes): 2 training and 1 validation case, 1-2 lesions of 3-8 mm each; ``kwargs`` go to ``build_dataset``.
    ``outlined``: the left half's real lesion is one that readers outlined (its meta carries a note, as
    LIDC-IDRI-0001's)."""
    hu, blob = phantom_with_tumour()

    def fake_load(host_id):
        meta = {"host_id": host_id, "modality": "CT", "subject": "phantom", "source": "test"}
        meta["spacing"] = list(SPACING)
        if outlined and host_id.endswith(":left"):
            meta["known_lesion_note"] = "outlined by readers"
        return hu.copy(), AFFINE.copy(), meta

    def fake_region(volume, meta):
        return lung_mask(volume, SPACING, closing_mm=0.0)

    def fake_known(volume, affine, meta, region):
        tumour = blob if meta["host_id"].endswith(":left") else np.zeros(volume.shape, bool)
        return tumour, tumour.copy()

    with (
        mock.patch("bundle.data.synthetic.build.load_host", side_effect=fake_load),
        mock.patch("bundle.data.synthetic.build.host_region_mask", side_effect=fake_region),
        mock.patch("bundle.data.synthetic.build.known_lesion_mask", side_effect=fake_known),
    ):
        kwargs = {"train_hosts": ["phantom:right"], "val_hosts": ["phantom:left"], **kwargs}
        return build_dataset(out, "ct", n_train=2, n_val=1, lesions_per_case=(1, 2), seed=seed,
                             diameter_range_mm=(3, 8), progress=False, **kwargs)
