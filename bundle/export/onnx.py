"""ONNX export of the network's three inference graphs (run by :py:class:`bundle.networks.runtime.OnnxRuntimeNetwork`).

The routed sliding window calls the network three ways: ``screen(x)`` (the cheap score), ``forward(x,
enhancement="full")`` and ``forward(x, enhancement="basic")``. A single ONNX graph holds one of them, so
:py:func:`export_onnx` writes one file per call: ``model.onnx`` (full), ``model_basic.onnx`` and
``model_screen.onnx``, each with a dynamic batch axis and the window size fixed (sliding-window windows always
have ``roi_size``). :py:class:`bundle.networks.runtime.OnnxRuntimeNetwork` loads them into ONNX Runtime sessions and offers
the same ``forward``/``screen`` interface, so the routed inferer keeps routing. With only ``model.onnx`` (for instance the
file written by ``python -m monai.bundle onnx_export``) it still runs, with routing off.

Export uses PyTorch's dynamo exporter (``torch.onnx.export(..., dynamo=True)``, which needs ``onnxscript``); the
legacy TorchScript exporter cannot handle the channels-last memory format the network uses on CPU.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from monai.config import PathLike

from bundle.io.atomic import atomic_write_bytes
from bundle.networks.runtime import ONNX_VARIANTS, onnx_session, onnx_variant_paths

__all__ = ["NetworkVariant", "export_onnx"]

logger = logging.getLogger(__name__)


class NetworkVariant(torch.nn.Module):
    """
    One inference call of a routed network as a plain ``forward(x)`` module, for export.

    Args:
        network: a network with ``forward(x, enhancement=...)`` and ``screen(x)`` (``bundle.networks.GhostCAUNet``).
        variant: ``"full"``, ``"basic"`` (``forward(x, enhancement=variant)``) or ``"screen"`` (``screen(x)``).

    Raises:
        ValueError: when ``variant`` is not one of ``ONNX_VARIANTS``.
    """

    def __init__(self, network: torch.nn.Module, variant: str) -> None:
        super().__init__()
        if variant not in ONNX_VARIANTS:
            raise ValueError(f"variant must be one of {ONNX_VARIANTS}, got variant={variant!r}.")
        self.network = network
        self.variant = variant

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, *roi) -> logits (B, out_channels, *roi), or scores (B,) for ``screen``."""
        if self.variant == "screen":
            return self.network.screen(x)  # type: ignore[operator]
        return self.network(x, enhancement=self.variant)  # type: ignore[no-any-return]


def export_onnx(
    network: torch.nn.Module,
    filepath: PathLike,
    roi_size: Sequence[int],
    in_channels: int = 1,
    variants: Sequence[str] = ONNX_VARIANTS,
    opset_version: int = 18,
    check_atol: float | None = 1e-4,
) -> dict[str, float]:
    """
    Export the network's inference graphs to ONNX (dynamic batch, fixed window size), each file written atomically.

    Args:
        network: the network, weights loaded; it is put in eval mode. ``screen`` is skipped when it has none.
        filepath: the full graph's file (e.g. ``models/model.onnx``); see :py:func:`onnx_variant_paths`.
        roi_size: the window size the graphs are traced with, one int per spatial dimension.
        in_channels: input channels. Defaults to 1.
        variants: which graphs to export. Defaults to all of ``ONNX_VARIANTS``.
        opset_version: ONNX opset. Defaults to 18.
        check_atol: after export, run each graph in ONNX Runtime (CPU) on a random batch of 3 windows and compare
            with PyTorch; raise when the max abs difference exceeds it. None skips the check.

    Returns:
        ``{variant: max abs difference ONNX Runtime vs PyTorch}`` (NaN when not checked).

    Raises:
        ValueError: when a variant is unknown, or ONNX Runtime disagrees with PyTorch by more than ``check_atol``.
        ImportError: when ``onnxscript`` (needed by the dynamo exporter) or ``onnxruntime`` is not installed.
    """
    bad = [v for v in variants if v not in ONNX_VARIANTS]
    if bad:
        raise ValueError(f"variants must be among {ONNX_VARIANTS}, got {list(variants)}.")
    network.eval()
    paths = onnx_variant_paths(filepath)
    example = torch.rand(2, in_channels, *roi_size)  # batch 2 so the exporter keeps the batch axis symbolic
    batch = torch.export.Dim("batch", min=1, max=1024)
    diffs: dict[str, float] = {}
    for variant in variants:
        if variant == "screen" and not callable(getattr(network, "screen", None)):
            logger.info("network %s has no screen(): model_screen.onnx not exported", type(network).__name__)
            continue
        module = NetworkVariant(network, variant).eval()
        program = torch.onnx.export(
            module,
            (example,),
            input_names=["image"],
            output_names=["pred"],
            dynamic_shapes=({0: batch},),
            opset_version=opset_version,
            dynamo=True,
            verbose=False,
        )
        atomic_write_bytes(paths[variant], program.model_proto.SerializeToString())
        diffs[variant] = float("nan") if check_atol is None else _check_graph(module, paths[variant], example, check_atol)
        logger.info("exported %s (%s), max abs diff vs PyTorch %.3g", paths[variant], variant, diffs[variant])
    return diffs


def _check_graph(module: torch.nn.Module, path: Path, example: torch.Tensor, atol: float) -> float:
    """Max abs difference between ONNX Runtime and PyTorch on 3 random windows; ValueError above ``atol``."""
    x = torch.rand(3, *example.shape[1:])
    with torch.no_grad():
        expected = module(x).numpy()
    got = onnx_session(path, None).run(None, {"image": x.numpy()})[0]
    diff = float(np.max(np.abs(got - expected)))
    if not diff <= atol:
        raise ValueError(f"ONNX graph {path} disagrees with PyTorch: max abs difference {diff:.3g} > {atol:.3g}.")
    return diff


