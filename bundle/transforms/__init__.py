"""Transforms of the source paper's preprocessing and augmentation.

``array``/``dictionary`` hold the few transforms MONAI lacks (``ReplaceNonFinite``) or whose MONAI version does not
suit CT on CPU (``BorderGaussianSmooth``, ``WindowIntensity``); ``presets`` builds MONAI ``Compose`` pipelines
(:func:`ct_preprocessing`, :func:`mri_preprocessing`, :func:`train_augmentation`) that configs call by ``_target_``.
"""

from __future__ import annotations

from bundle.transforms.array import BorderGaussianSmooth, ReplaceNonFinite, WindowIntensity
from bundle.transforms.dictionary import (
    BorderGaussianSmoothD,
    BorderGaussianSmoothd,
    BorderGaussianSmoothDict,
    ReplaceNonFiniteD,
    ReplaceNonFinited,
    ReplaceNonFiniteDict,
    WindowIntensityD,
    WindowIntensityd,
    WindowIntensityDict,
)
from bundle.transforms.presets import ct_preprocessing, mri_preprocessing, train_augmentation

__all__ = [
    "ReplaceNonFinite",
    "ReplaceNonFinited",
    "ReplaceNonFiniteD",
    "ReplaceNonFiniteDict",
    "BorderGaussianSmooth",
    "BorderGaussianSmoothd",
    "BorderGaussianSmoothD",
    "BorderGaussianSmoothDict",
    "WindowIntensity",
    "WindowIntensityd",
    "WindowIntensityD",
    "WindowIntensityDict",
    "ct_preprocessing",
    "mri_preprocessing",
    "train_augmentation",
]
