"""Image-level classification (triage beside detection): training helpers, metrics, figures and comparisons.

``metrics``: accuracy, ROC AUC with a bootstrap interval, confusion matrix, model size and latency.
``figures``: prediction grid (green right / red wrong) and Grad-CAM maps. ``handlers``: a per-epoch history table
and an evaluation report writer for the ignite engines of ``configs/classification/*.json``. ``engine``: run the
train config and predict. ``compare``: stratified k-fold comparison of the bundle's classifiers.
``ct_slices``: lesion / no-lesion axial slices of the synthetic-lesion CT set; ``holdout``: train on one host's
slices, test on the other's. ``triage``: scan-level triage from the detector's highest lesion score (ROC AUC).
"""

from __future__ import annotations

from bundle.classification.figures import gradcam_maps, plot_gradcam_grid, plot_prediction_grid
from bundle.classification.handlers import ClassificationReport, EpochHistory
from bundle.classification.metrics import (
    bootstrap_auc_ci,
    classification_metrics,
    confusion_matrix,
    count_parameters,
    latency_ms_per_image,
    model_size_mb,
    roc_auc,
)

__all__ = [
    "ClassificationReport",
    "EpochHistory",
    "bootstrap_auc_ci",
    "classification_metrics",
    "confusion_matrix",
    "count_parameters",
    "gradcam_maps",
    "latency_ms_per_image",
    "model_size_mb",
    "plot_gradcam_grid",
    "plot_prediction_grid",
    "roc_auc",
]
