"""Exports of the network (ONNX graphs for the ONNX Runtime backend), the MONAI Label detector and the zoo checks."""

from __future__ import annotations

from .bundle_export import export_bundle_onnx, load_bundle_network
from .detector import LesionBoxDetector
from .onnx import NetworkVariant, export_onnx

__all__ = [
    "LesionBoxDetector",
    "NetworkVariant",
    "export_bundle_onnx",
    "export_onnx",
    "load_bundle_network",
]
