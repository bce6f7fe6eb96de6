"""Synthetic-lesion datasets on real hosts: build them, write and read their decathlon-style datalist.

The datalist (``datalist.json``) is MONAI's decathlon format with extra keys::

    {"name", "description", "modality", "labels", "hosts": {host_id: {...}}, "split",
     "training": [{"image", "label", "host", "lesions": [...], "variation": {...}, "seed": [...]}],
     "validation": [...]}

Paths in the file are relative to it; :py:func:`load_datalist` returns absolute ones. Training and validation
never share a host (for the single chest CT and the single head CT: their two disjoint body halves, see
``docs/data.md``).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np

from bundle.data.synthetic.hosts import host_region_mask, known_lesion_mask, list_hosts, load_host, vary_host
from bundle.data.synthetic.synthesis import lesion_record, prepare_host, synthesize_case

__all__ = [
    "write_datalist",
    "load_datalist",
    "default_hosts",
    "check_host_split",
    "build_dataset",
    "plot_lesion_gallery",
]

logger = logging.getLogger(__name__)

_SPLITS = ("training", "validation")
_MODALITY = {"ct": "CT", "ct_head": "CT", "mri": "MR", "mr": "MR"}
_DEFAULT_SPLIT = {"ct": ("lung_dx_a0001", "CT"), "ct_head": ("cranium", "CT")}


def _atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_datalist(path: str | os.PathLike, datalist: dict) -> Path:
    """Write a datalist JSON atomically, with ``image``/``label`` paths made relative to the file's folder.

    Args:
        path: destination ``.json`` file.
        datalist: dict with at least one of ``training``/``validation`` (lists of dicts with ``image``).

    Returns:
        the written path.

    Raises:
        ValueError: when ``datalist`` has neither ``training`` nor ``validation`` list.
    """
    path = Path(path)
    if not any(isinstance(datalist.get(k), list) for k in _SPLITS):
        raise ValueError(f"datalist must hold a 'training' or 'validation' list, got keys {sorted(datalist)}.")
    out = dict(datalist)
    root = path.parent.resolve()
    for key in _SPLITS:
        if key not in out:
            continue
        entries = []
        for entry in out[key]:
            entry = dict(entry)
            for k in ("image", "label"):
                if k in entry and Path(entry[k]).is_absolute():
                    entry[k] = os.path.relpath(Path(entry[k]).resolve(), root)
            entries.append(entry)
        out[key] = entries
    _atomic_write_text(path, json.dumps(out, indent=1))
    return path


def load_datalist(
    path: str | os.PathLike, key: str = "training", required_keys: Sequence[str] = ("image", "label")
) -> list[dict]:
    """Read one list of a decathlon-style datalist with absolute paths, checking every entry.

    Paths are resolved against the datalist's folder exactly as ``monai.data.load_decathlon_datalist`` does for
    ``image``/``label`` (re-implemented in a few lines so that dataset tools do not pay MONAI's import time).

    Args:
        path: the datalist ``.json``.
        key: which list, e.g. ``"training"`` or ``"validation"``. Defaults to ``"training"``.
        required_keys: keys every entry must have, each pointing to an existing file.
            Defaults to ("image", "label").

    Returns:
        list of entry dicts with absolute ``image``/``label`` paths.

    Raises:
        ValueError: when the file is missing or not JSON, ``key`` is absent or not a list, or an entry is not a
            dict, misses a required key or points to a file that does not exist (the message names the file and
            the entry).
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"datalist file {path} does not exist.")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"datalist file {path} is not valid JSON: {e}.") from e
    if not isinstance(data, dict) or key not in data:
        keys = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise ValueError(f"datalist file {path} has no list {key!r}; available keys: {keys}.")
    if not isinstance(data[key], list):
        raise ValueError(f"datalist file {path}: {key!r} must be a list, got {type(data[key]).__name__}.")
    entries = []
    for i, raw in enumerate(data[key]):
        if not isinstance(raw, dict):
            raise ValueError(f"datalist file {path}: {key} entry {i} must be a dict, got {type(raw).__name__}.")
        entry = dict(raw)
        for k in ("image", "label"):
            if isinstance(entry.get(k), str):
                entry[k] = os.path.normpath(os.path.join(path.parent.resolve(), entry[k]))
        name = entry.get("case", entry.get("image", f"#{i}"))
        for k in required_keys:
            if k not in entry:
                raise ValueError(f"datalist file {path}: {key} entry {i} ({name}) has no {k!r} key.")
            if not Path(entry[k]).exists():
                raise ValueError(f"datalist file {path}: {key} entry {i} ({name}) {k} path does not exist: {entry[k]}.")
        entries.append(entry)
    return entries


def default_hosts(modality: str, available: Sequence[str] = ()) -> tuple[list[str], list[str]]:
    """Training and validation hosts for a modality, from what is installed.

    CT: ``lung_dx_a0001:right`` for training, ``lung_dx_a0001:left`` (with the real tumour) for validation.
    Head CT (``ct_head``): ``cranium:right`` for training, ``cranium:left`` for validation.
    MR: ``mni152`` for training and ``colin27`` for validation when both are installed, otherwise the one
    installed MR host split into its right (training) and left (validation) halves.

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
        real.append(lesion_record(
            tumour, affine, kind="solid", shape="spiculated", location="juxta-pleural", synthetic=False,
            note="real tumour of TCIA Lung-PET-CT-Dx A0001 (approximate mask: soft tissue inside the lung hull)",
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
) -> Path:
    """Build a synthetic-lesion dataset on real hosts: NIfTI images + labels and ``datalist.json``.

    Per case the number of lesions is drawn in ``lesions_per_case``, each lesion's kind/shape/location/size at
    random (:py:func:`bundle.data.synthetic.synthesis.sample_lesion_params`), then a mild host-level variation is applied
    (:py:func:`bundle.data.synthetic.hosts.vary_host`). Validation cases of the CT's left half also carry the real tumour
    (label 1 and a record with ``"synthetic": false``). Case ``i`` of a split uses the generator
    ``default_rng([seed, split, i])``, so any case can be rebuilt alone.

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
            cache.clear()  # one host in memory at a time
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
        image, label, records = synthesize_case(ctx, volume, rng, n, diameter_range_mm)
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
        "numTraining": n_train,
        "numValidation": n_val,
        "training": entries["training"],
        "validation": entries["validation"],
    }
    return write_datalist(datalist_path, datalist)


def plot_lesion_gallery(datalist_path: str | os.PathLike, out_path: str | os.PathLike, n_columns: int = 8) -> Path:
    """Save a PNG of lesions of different kinds and sizes in their real surroundings (for ``docs/data.md``).

    Columns: one lesion each (chosen to cover kinds, shapes, locations and sizes; the real tumour when present).
    Rows: the axial slice through the lesion center, the same with the label outline (red), and the next slice
    (partial volume across thick slices). Chest CT in the window [-1000, 400] HU, head CT in the brain window
    [0, 80] HU, MR from the head's 1st percentile to 1.5 times its 99th. Anterior is up, patient right on the left.

    Args:
        datalist_path: a datalist written by :py:func:`build_dataset`.
        out_path: PNG to write.
        n_columns: lesions to show. Defaults to 8.

    Returns:
        the written path.

    Raises:
        ValueError: when the datalist holds no lesion.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    items = [(e, les) for key in _SPLITS for e in _safe_load(datalist_path, key) for les in e.get("lesions", [])]
    if not items:
        raise ValueError(f"datalist {datalist_path} holds no lesion to show.")
    header = json.loads(Path(datalist_path).read_text())
    ct = header.get("modality", {}).get("0", "CT") == "CT"
    brain_ct = ct and header.get("organ") == "brain"
    wanted = [
        lambda r: not r.get("synthetic", True),
        lambda r: r["kind"] in ("solid", "hyper", "hyperdense") and r["location"] in ("isolated", "deep")
        and 3.5 <= r["diameter_mm"] < 6,
        lambda r: r["kind"] in ("solid", "hyper", "hyperdense") and r["shape"] == "spherical"
        and 8 <= r["diameter_mm"] < 15,
        lambda r: r["shape"] == "spiculated" and r["kind"] == "solid" and r["diameter_mm"] >= 12
        and r["location"] != "juxta-pleural",
        lambda r: r["kind"] in ("ggo", "hypo", "hypodense") and r["location"] in ("isolated", "deep")
        and r["diameter_mm"] >= 8,
        lambda r: r["kind"] == "hypodense" and 4 <= r["diameter_mm"] < 8,
        lambda r: r["kind"] == "part-solid" and r["diameter_mm"] >= 12,
        lambda r: r["location"] in ("juxta-pleural", "border") and r["diameter_mm"] >= 10,
        lambda r: r["location"] == "juxta-vascular" and 6 <= r["diameter_mm"] < 12,
        lambda r: r["shape"] == "lobulated" and r["diameter_mm"] >= 8,
        lambda r: r["diameter_mm"] >= 20,
    ]
    chosen: list = []
    for pred in wanted:
        for e, r in items:
            if len(chosen) < n_columns and pred(r) and all(r is not c[1] for c in chosen):
                chosen.append((e, r))
                break
    fig, axes = plt.subplots(3, len(chosen), figsize=(1.9 * len(chosen), 6.3), squeeze=False)
    loaded: dict = {}
    for col, (e, r) in enumerate(chosen):
        if e["image"] not in loaded:
            loaded.clear()
            image_data = nib.load(e["image"]).get_fdata(dtype=np.float32)
            loaded[e["image"]] = (image_data, np.asarray(nib.load(e["label"]).dataobj))
        img, lab = loaded[e["image"]]
        if brain_ct:
            vmin, vmax = 0.0, 80.0
        elif ct:
            vmin, vmax = -1000.0, 400.0
        else:  # head foreground percentiles; headroom above white matter so bright lesions keep their texture
            fg = img[img > 0.1 * np.percentile(img, 99)]
            vmin, vmax = float(np.percentile(fg, 1)), 1.5 * float(np.percentile(fg, 99))
        header_img = nib.load(e["image"])
        spacing = np.asarray(header_img.header.get_zooms()[:3], dtype=float)
        # rows run along the array's second axis: put anterior at the top whatever the axis' direction
        origin = "lower" if header_img.affine[1, 1] > 0 else "upper"
        c = np.round(r["center_voxel"]).astype(int)
        half = np.ceil(max(r["diameter_mm"] * 1.3, 18.0) / spacing[:2]).astype(int)
        x0, x1 = max(c[0] - half[0], 0), min(c[0] + half[0], img.shape[0])
        y0, y1 = max(c[1] - half[1], 0), min(c[1] + half[1], img.shape[1])
        k1 = min(c[2] + 1, img.shape[2] - 1)
        for row, (k, outline) in enumerate(((c[2], False), (c[2], True), (k1, False))):
            ax = axes[row, col]
            ax.imshow(img[x0:x1, y0:y1, k].T, cmap="gray", vmin=vmin, vmax=vmax, origin=origin,
                      aspect=spacing[1] / spacing[0], interpolation="nearest")
            if outline:
                ax.contour(lab[x0:x1, y0:y1, k].T > 0, [0.5], colors="r", linewidths=0.6, origin=origin)
            ax.set_xticks([])
            ax.set_yticks([])
        real = "REAL " if not r.get("synthetic", True) else ""
        axes[0, col].set_title(f"{real}{r['kind']} {r['shape']}\n{r['location']} {r['diameter_mm']:.1f} mm", fontsize=7)
    axes[0, 0].set_ylabel("center slice", fontsize=7)
    axes[1, 0].set_ylabel("label", fontsize=7)
    axes[2, 0].set_ylabel("next slice", fontsize=7)
    fig.tight_layout()
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path, dpi=72)
    plt.close(fig)
    return out_path


def _safe_load(path: str | os.PathLike, key: str) -> list[dict]:
    try:
        return load_datalist(path, key)
    except ValueError as e:
        logger.warning("%s", e)
        return []
