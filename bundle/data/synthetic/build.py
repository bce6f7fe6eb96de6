"""Synthetic-lesion data sets on real hosts: choose the hosts, build the cases and write ``datalist.json``.

Training and validation never share a host (for the single chest CT and the single head CT: their two disjoint
body halves, see ``docs/data.md``). The datalist format is :py:mod:`bundle.data.datalist`'s; the figure of its
lesions is :py:func:`bundle.data.synthetic.gallery.plot_lesion_gallery`.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np

from bundle.data.datalist import write_datalist
from bundle.data.synthetic.host_context import prepare_host
from bundle.data.synthetic.host_masks import host_region_mask, known_lesion_mask
from bundle.data.synthetic.hosts import list_hosts, load_host
from bundle.data.synthetic.lesion_params import lesion_record
from bundle.data.synthetic.noise import vary_host
from bundle.data.synthetic.synthesis import synthesize_case

__all__ = ["default_hosts", "check_host_split", "build_dataset"]

_SPLITS = ("training", "validation")
_MODALITY = {"ct": "CT", "ct_head": "CT", "mri": "MR", "mr": "MR"}
_DEFAULT_SPLIT = {"ct": ("lung_dx_a0001", "CT"), "ct_head": ("cranium", "CT")}


def default_hosts(modality: str, available: Sequence[str] = ()) -> tuple[list[str], list[str]]:
    """Training and validation hosts for a modality, from what is installed.

    CT: ``lung_dx_a0001:right`` for training, ``lung_dx_a0001:left`` (with the real tumour) for validation.
    Head CT (``ct_head``): ``cranium:right`` for training, ``cranium:left`` for validation.
    MR: ``mni152`` for training and ``colin27`` for validation when both are installed, otherwise the one
    installed MR host split into its right (training) and left (validation) halves, with a warning: the halves are
    the same head, so numbers on them do not measure generalisation to another one.

    Args:
        modality: ``"ct"``, ``"ct_head"`` or ``"mri"`` (case-insensitive; ``"CT"``/``"MR"`` accepted).
        available: base host ids to treat as installed although their package is not (e.g. ``"cranium"`` read
            from another path).

    Returns:
        ``(training host ids, validation host ids)``.

    Raises:
        ValueError: when ``modality`` is unknown or no host of that modality is installed.
    """
    key = str(modality).lower()
    mod = _MODALITY.get(key)
    if mod is None:
        raise ValueError(f"modality must be one of {sorted(_MODALITY)}, got {modality!r}.")
    hosts = [h for h in list_hosts() if ":" not in h.host_id and (h.installed or h.host_id in available)]
    if mod == "CT":
        base = _DEFAULT_SPLIT.get(key, _DEFAULT_SPLIT["ct"])[0]
        if base not in {h.host_id for h in hosts}:
            raise ValueError(f"host {base!r} for modality {modality!r} is not installed; see docs/data.md.")
        return [f"{base}:right"], [f"{base}:left"]
    installed = [h.host_id for h in hosts if h.modality == mod]
    if not installed:
        raise ValueError(f"no {mod} host is installed; see docs/data.md for the packages to install.")
    if {"mni152", "colin27"} <= set(installed):
        return ["mni152"], ["colin27"]
    warnings.warn(
        f"only the MR host {installed[0]!r} is installed: validating on its left half, the same head as training "
        "(install Debian mricron-data for Colin27, another head; docs/data.md).", stacklevel=2,
    )
    return [f"{installed[0]}:right"], [f"{installed[0]}:left"]


def check_host_split(train_hosts: Sequence[str], val_hosts: Sequence[str]) -> None:
    """Refuse any host (or overlapping part of a host) used by both training and validation.

    Args:
        train_hosts: training host ids.
        val_hosts: validation host ids.

    Raises:
        ValueError: naming the overlapping pair, or when either list is empty.
    """
    if not train_hosts or not val_hosts:
        raise ValueError(f"train_hosts and val_hosts must be non-empty, got {list(train_hosts)}, {list(val_hosts)}.")
    for t in train_hosts:
        for v in val_hosts:
            (tb, _, ts), (vb, _, vs) = t.partition(":"), v.partition(":")
            if tb == vb and (not ts or not vs or ts == vs):
                raise ValueError(f"host split must be disjoint: training host {t!r} overlaps validation host {v!r}.")


def _prepare(host_id: str, path: str | os.PathLike | None = None) -> tuple:
    """Load a host once: volume, affine, meta, its HostContext, the real-lesion mask (or None) and records."""
    volume, affine, meta = load_host(host_id) if path is None else load_host(host_id, path=path)
    region = host_region_mask(volume, meta)
    tumour, roi = known_lesion_mask(volume, affine, meta, region) if meta["modality"] == "CT" else (None, None)
    ctx = prepare_host(volume, affine, meta["modality"], region, exclusion=None if roi is None else roi | tumour,
                       host_id=host_id, organ=meta.get("organ"))
    real = []
    if tumour is not None and tumour.any():
        outlined = meta.get("known_lesion_note")  # a nodule that readers outlined (LIDC-IDRI-0001)
        note = outlined or (
            "real tumour of TCIA Lung-PET-CT-Dx A0001 (approximate mask: soft tissue inside the lung hull)"
        )
        real.append(lesion_record(
            tumour, affine, kind="solid", shape="lidc" if outlined else "spiculated", location="juxta-pleural",
            synthetic=False, note=note,
        ))
    return volume, affine, meta, ctx, tumour, real


def _save_nifti(array: np.ndarray, affine: np.ndarray, path: Path, dtype, on_disk=None) -> None:
    img = nib.Nifti1Image(np.asarray(array).astype(dtype), affine)
    if on_disk is not None:
        img.set_data_dtype(on_disk)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    nib.save(img, str(path))


def build_dataset(
    output_dir: str | os.PathLike,
    modality: str = "ct",
    n_train: int = 24,
    n_val: int = 8,
    lesions_per_case: Sequence[int] = (3, 6),
    seed: int = 0,
    diameter_range_mm: Sequence[float] = (3.0, 30.0),
    train_hosts: Sequence[str] | None = None,
    val_hosts: Sequence[str] | None = None,
    overwrite: bool = False,
    progress: bool = True,
    host_paths: dict[str, str] | None = None,
    shape_library: str | os.PathLike | None = None,
    library_share: float = 0.5,
) -> Path:
    """Build a synthetic-lesion dataset on real hosts: NIfTI images + labels and ``datalist.json``.

    Per case the number of lesions is drawn in ``lesions_per_case``, each lesion's kind/shape/location/size at
    random (:py:func:`bundle.data.synthetic.lesion_params.sample_lesion_params`), then a mild host-level variation
    is applied (:py:func:`bundle.data.synthetic.noise.vary_host`). Cases on a host that holds a real lesion also
    carry it (label 1 and a record with ``"synthetic": false``): the first chest CT's tumour, the second's nodule.
    Case ``i`` of a split uses the generator ``default_rng([seed, split, i])``, so any case can be rebuilt alone.

    Args:
        output_dir: folder for ``imagesTr/``, ``labelsTr/``, ``imagesVal/``, ``labelsVal/`` and ``datalist.json``.
        modality: ``"ct"`` (chest), ``"ct_head"`` or ``"mri"``. Defaults to ``"ct"``.
        n_train: training cases. Defaults to 24.
        n_val: validation cases. Defaults to 8.
        lesions_per_case: inclusive (min, max) synthetic lesions per case. Defaults to (3, 6).
        seed: base seed. Defaults to 0.
        diameter_range_mm: (min, max) lesion diameter. Defaults to (3, 30).
        train_hosts: training host ids; :py:func:`default_hosts` when None.
        val_hosts: validation host ids; :py:func:`default_hosts` when None.
        overwrite: replace an existing ``datalist.json``. Defaults to False.
        progress: show a tqdm progress bar. Defaults to True.
        host_paths: base host id -> file to read instead of the installed one (``{"cranium": "x.inv3"}``).

        shape_library: a LIDC-IDRI nodule shape library folder (``python -m scripts.lidc_shapes``): a share
            ``library_share`` of the lesions are real nodules (shape, kind and size), training cases drawing from
            the training patients' nodules and validation cases from the others (``ShapeLibrary.pool``; the split
            is written to the datalist's ``shape_library``). None: parametric shapes only.
        library_share: see ``shape_library``. Defaults to 0.5.

    Returns:
        path of the written ``datalist.json``.

    Raises:
        ValueError: on an unknown ``modality``, negative counts, a bad ``lesions_per_case``, overlapping hosts, or
            an existing datalist without ``overwrite``.
    """
    from tqdm import tqdm

    if n_train < 0 or n_val < 0:
        raise ValueError(f"n_train and n_val must be >= 0, got n_train={n_train}, n_val={n_val}.")
    lo_n, hi_n = (int(x) for x in lesions_per_case)
    if not 0 <= lo_n <= hi_n:
        raise ValueError(f"lesions_per_case must be (min, max) with 0 <= min <= max, got {lesions_per_case}.")
    if modality.lower() not in _MODALITY:
        raise ValueError(f"modality must be one of {sorted(_MODALITY)}, got {modality!r}.")
    host_paths = dict(host_paths or {})
    if not train_hosts or not val_hosts:
        default_train, default_val = default_hosts(modality, available=tuple(host_paths))
        train_hosts, val_hosts = train_hosts or default_train, val_hosts or default_val
    train_hosts, val_hosts = list(train_hosts), list(val_hosts)
    check_host_split(train_hosts, val_hosts)
    library, pools, library_split = None, {}, None
    if shape_library is not None:
        from bundle.data.lidc import HOST_PATIENTS, ShapeLibrary

        library = ShapeLibrary(shape_library)
        pools = {split: library.pool(split) for split in ("training", "validation")}
        library_split = {
            "rule": "LIDC-IDRI nodules split by patient (sha1 of the patient id; 20 % validation); host patients "
                    "excluded",
            "library": str(shape_library), "share": float(library_share), "excluded_patients": list(HOST_PATIENTS),
        }  # fmt: skip
        for split, pool in pools.items():
            library_split[f"{split}_nodules"] = len(pool)
            library_split[f"{split}_patients"] = len({library.records[i]["patient_id"] for i in pool})
    out = Path(output_dir)
    datalist_path = out / "datalist.json"
    if datalist_path.exists() and not overwrite:
        raise ValueError(f"{datalist_path} exists; pass overwrite=True to rebuild it.")
    plan = [("training", i, train_hosts[i % len(train_hosts)]) for i in range(n_train)]
    plan += [("validation", i, val_hosts[i % len(val_hosts)]) for i in range(n_val)]
    hosts: dict = {}
    cache: dict = {}
    entries: dict = {"training": [], "validation": []}
    for split, i, host_id in tqdm(plan, desc=f"synthetic {modality}", disable=not progress):
        if host_id not in cache:
            if len(cache) >= 2:  # at most two hosts in memory (cases alternate between a split's hosts)
                cache.pop(next(iter(cache)))
            cache[host_id] = _prepare(host_id, host_paths.get(host_id.partition(":")[0]))
            volume, affine, meta, ctx, _, real = cache[host_id]
            hosts[host_id] = {
                "split": split, "modality": meta["modality"], "subject": meta["subject"], "source": meta["source"],
                "shape": list(volume.shape), "spacing": [round(s, 4) for s in meta["spacing"]],
                "crop_voxel": meta.get("crop_voxel"), "noise_std": round(ctx.noise_std, 2),
                "real_lesions": len(real),
            }
        volume, affine, meta, ctx, tumour, real = cache[host_id]
        case_seed = [int(seed), _SPLITS.index(split), int(i)]
        rng = np.random.default_rng(case_seed)
        n = int(rng.integers(lo_n, hi_n + 1))
        image, label, records = synthesize_case(
            ctx, volume, rng, n, diameter_range_mm, library, library_share, pools.get(split)
        )
        if real:
            label[tumour] = 1
            records = records + real
        head = meta.get("organ") == "brain" and meta["modality"] == "CT"
        image, variation = vary_host(image, meta["modality"], rng, **({"ct_noise_std": (1.0, 5.0)} if head else {}))
        tag = "Tr" if split == "training" else "Val"
        name = f"{host_id.replace(':', '_')}_{split[:3]}_{i:03d}"
        img_path, lab_path = out / f"images{tag}" / f"{name}.nii.gz", out / f"labels{tag}" / f"{name}.nii.gz"
        img_path.parent.mkdir(parents=True, exist_ok=True)
        lab_path.parent.mkdir(parents=True, exist_ok=True)
        if meta["modality"] == "CT":
            _save_nifti(np.round(image), affine, img_path, np.int16)
        else:  # float data stored as int16 with a NIfTI scale factor (nibabel picks it): half the size
            _save_nifti(image, affine, img_path, np.float32, on_disk=np.int16)
        _save_nifti(label, affine, lab_path, np.uint8)
        entries[split].append({
            "case": name, "image": str(img_path.resolve()), "label": str(lab_path.resolve()), "host": host_id,
            "lesions": records, "variation": variation, "seed": case_seed,
        })
    what = "lung nodules" if modality.lower() == "ct" else "brain lesions"
    datalist = {
        "name": f"synthetic_lesions_{modality.lower()}",
        "description": (
            f"Synthetic {what} inserted into real host scans from registry packages (bundle.data.synthetic.synthesis); see "
            "docs/data.md."
        ),
        "modality": {"0": _MODALITY[modality.lower()]},
        "organ": "lungs" if modality.lower() == "ct" else "brain",
        "labels": {"0": "background", "1": "lesion"},
        "tensorImageSize": "3D",
        "hosts": hosts,
        "split": {
            "rule": "no host in both training and validation",
            "training_hosts": train_hosts,
            "validation_hosts": val_hosts,
            "note": (
                "lung_dx_a0001 halves, like cranium halves, are the SAME patient and scanner: not a "
                "patient-independent split."
            ),
        },
        **({"shape_library": library_split} if library_split else {}),
        "numTraining": n_train,
        "numValidation": n_val,
        "training": entries["training"],
        "validation": entries["validation"],
    }
    return write_datalist(datalist_path, datalist)
