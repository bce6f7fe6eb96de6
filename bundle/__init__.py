"""Lightweight small-lesion detection for CT and MRI: the importable package of a MONAI bundle.

The product path, bottom-up (a module imports only its own package or a lower layer; ``docs/architecture.md``):

- ``tiers``: the three routing tiers, named once;
- ``networks``: the Ghost + Coordinate Attention U-Net, its blocks, BatchNorm folding and the ONNX Runtime backend;
- ``lesions``: probabilities -> lesions (find, false-positive rescoring, box geometry, reference lesions, and the
  one ``extract`` that inference, evaluation, MONAI Label and the metrics share);
- ``io``: readers, case discovery, input checks, DICOM, the atomic writer, per-case outputs, overlays, errors;
- ``transforms``: preprocessing and augmentation presets, lung masking, lesion-balanced sampling;
- ``inferers``: the suspicion router and the routed sliding window; ``metrics``: lesion-level detection metrics;
- ``data``: datalists, the fail-safe dataset, converters of public data sets, synthetic-lesion data;
- ``engines``: the case-by-case inference evaluator, pretrained loading, resumable random state, time budget,
  Grad-CAM explanations;
- ``export``: ONNX export, the MONAI Label detector, the Model Zoo checks.

Beside it: ``classification`` (the second product, 2-D image classification) and ``experiments`` (research:
ablation, benchmark, comparison detectors, analyses; nothing else imports it).
"""

from __future__ import annotations

import json
from pathlib import Path


def _bundle_version() -> str:
    """The bundle's version as ``configs/metadata.json`` states it (one source); "unknown" without the file."""
    try:
        metadata = Path(__file__).resolve().parents[1] / "configs" / "metadata.json"
        return str(json.loads(metadata.read_text())["version"])
    except (OSError, ValueError, KeyError):
        return "unknown"


__version__ = _bundle_version()
