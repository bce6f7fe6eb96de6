"""The source paper's analyses: lesion feature statistics, layer responses, attention gain, screening separation,
Grad-CAM explanations of detections and inter-reader agreement (see ``docs/analysis.md``).

Only the numpy-based modules are re-exported here, so that the data converters can import
:py:mod:`bundle.metrics.agreement` without loading torch; import ``bundle.experiments.analysis.responses``,
``bundle.engines.explain``, ``bundle.inferers.windows`` and ``bundle.experiments.analysis.pipeline`` by their full names.
"""

from __future__ import annotations

from bundle.metrics.agreement import cohen_kappa, fleiss_kappa, lesion_agreement, pooled_agreement, reader_marks
from bundle.experiments.analysis.features import SIZE_BANDS, gradient_magnitude, lesion_features, size_band_of, summarize_by_band

__all__ = [
    "SIZE_BANDS",
    "cohen_kappa",
    "fleiss_kappa",
    "gradient_magnitude",
    "lesion_agreement",
    "lesion_features",
    "pooled_agreement",
    "reader_marks",
    "size_band_of",
    "summarize_by_band",
]
