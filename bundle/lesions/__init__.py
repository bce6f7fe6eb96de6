"""The post-processing this bundle exists for: from the network's probabilities to lesions.

``find``: probability map -> lesion candidates (components, per-tier refinement and NMS, centre, box, diameter,
score); ``rescore``: the false-positive-reduction stage (candidate features, the logistic rescorer), fitted by
``rescorer_fit``; ``geometry``: voxel boxes <-> world boxes and other grids; ``reference``: the ground-truth lesions
of a label mask, as the metrics count them; ``extract``: the ONE extraction (logits -> probability -> lesions, with
the optional rescorer) that inference, evaluation, MONAI Label and the metrics share. Numpy/scipy only (MONAI for
box NMS); nothing here imports another layer of the bundle except :py:mod:`bundle.tiers`.
"""

from __future__ import annotations

from bundle.lesions.extract import extract_lesions, lesion_probability
from bundle.lesions.find import LESION_KEYS, FindLesionsd, find_lesions
from bundle.lesions.geometry import lesions_to_grid, voxel_box_to_world
from bundle.lesions.reference import MERGE_GAP_MM, label_lesions
from bundle.lesions.rescore import CandidateRescorer, rescore_lesions

__all__ = [
    "LESION_KEYS",
    "MERGE_GAP_MM",
    "CandidateRescorer",
    "FindLesionsd",
    "extract_lesions",
    "find_lesions",
    "label_lesions",
    "lesion_probability",
    "lesions_to_grid",
    "rescore_lesions",
    "voxel_box_to_world",
]
