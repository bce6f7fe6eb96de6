"""Build a synthetic-lesion dataset on the real host scans (thin CLI over ``bundle.data.synthetic.build``).

Examples::

    python -m scripts.make_dataset --output_dir data/synth_ct --modality ct --n_train 32 --n_val 8 \
        --lesions_per_case 3-6 --diameter_range_mm 3-40 --seed 0 --figure docs/figures/synthetic_lesions_ct.png
    python -m scripts.make_dataset --output_dir data/synth_mri --modality mri --n_train 24 --n_val 8 \
        --lesions_per_case 3-6 --seed 0 --figure docs/figures/synthetic_lesions_mri.png
    python -m scripts.make_dataset --output_dir data/synth_ct_head --modality ct_head --n_train 8 --n_val 4 \
        --lesions_per_case 3-6 --seed 0 --figure docs/figures/synthetic_lesions_ct_head.png
    python -m scripts.make_dataset --output_dir data/synth_ct_2host --modality ct --n_train 32 --n_val 8 \
        --lesions_per_case 3-6 --diameter_range_mm 3-40 --seed 0 \
        --train_hosts lung_dx_a0001:right,lidc_idri_0001:right --val_hosts lung_dx_a0001:left
"""

from __future__ import annotations

import logging

import fire

from bundle.data.synthetic.build import build_dataset
from bundle.data.synthetic.gallery import plot_lesion_gallery
from bundle.io.arguments import value_pair


def main(
    output_dir: str = "data/synth_ct",
    modality: str = "ct",
    n_train: int = 24,
    n_val: int = 8,
    lesions_per_case: str = "3-6",
    seed: int = 0,
    diameter_range_mm: str = "3-30",
    overwrite: bool = False,
    figure: str | None = None,
    cranium_path: str | None = None,
    shape_library: str | None = None,
    library_share: float = 0.5,
    train_hosts: str | None = None,
    val_hosts: str | None = None,
) -> str:
    """Write NIfTI images/labels and datalist.json under ``output_dir``; optionally a gallery PNG (``figure``).

    ``modality`` is ``ct`` (chest CT), ``ct_head`` (head CT) or ``mri``; ``cranium_path`` reads the head CT from
    another ``Cranium.inv3`` than the one Debian's invesalius-examples installs; ``shape_library`` (e.g.
    ``data/lidc_shapes``, from ``python -m scripts.lidc_shapes``) gives a share ``library_share`` of the lesions a
    real LIDC-IDRI nodule's shape. ``train_hosts`` / ``val_hosts`` are comma-separated host ids (e.g.
    ``lung_dx_a0001:right,lidc_idri_0001:right``; the list is in ``bundle.data.synthetic.hosts``); the modality's
    default split when not given.
    """
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    lo, hi = value_pair(lesions_per_case, "lesions_per_case")
    path = build_dataset(
        output_dir, modality=modality, n_train=n_train, n_val=n_val, lesions_per_case=(int(lo), int(hi)),
        seed=seed, diameter_range_mm=value_pair(diameter_range_mm, "diameter_range_mm"), overwrite=overwrite,
        host_paths={"cranium": cranium_path} if cranium_path else None, shape_library=shape_library,
        library_share=float(library_share), train_hosts=_host_list(train_hosts), val_hosts=_host_list(val_hosts),
    )
    if figure:
        plot_lesion_gallery(path, figure)
    return str(path)


def _host_list(value) -> list[str] | None:
    """fire passes ``a,b`` as a tuple and ``a`` as a str."""
    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else list(value)
    return [str(v).strip() for v in items if str(v).strip()]


if __name__ == "__main__":
    fire.Fire(main)
