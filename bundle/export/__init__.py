"""Exports of the network (ONNX graphs for the ONNX Runtime backend), the MONAI Label detector and the zoo checks."""

from __future__ import annotations

from .bundle_export import export_bundle_onnx, load_bundle_network
from .detector import LesionBoxDetector, voxel_box_to_world
from .onnx import ONNX_VARIANTS, NetworkVariant, OnnxRuntimeNetwork, export_onnx, onnx_variant_paths, select_network

__all__ = [
    "ONNX_VARIANTS",
    "LesionBoxDetector",
    "NetworkVariant",
    "OnnxRuntimeNetwork",
    "export_bundle_onnx",
    "export_onnx",
    "load_bundle_network",
    "onnx_variant_paths",
    "select_network",
    "voxel_box_to_world",
]
