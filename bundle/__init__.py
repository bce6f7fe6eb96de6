"""Lightweight small-lesion detection for CT and MRI: a MONAI bundle's importable package.

Subpackages: ``networks`` (Ghost + Coordinate Attention U-Net), ``transforms``, ``inferers`` (routed sliding
window), ``metrics`` (lesion-level detection metrics), ``data`` (case discovery, lesion synthesis), ``engines``
and ``io`` (robust case-by-case inference and output writing).
"""

__version__ = "0.1.0"
