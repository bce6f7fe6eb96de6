"""ONNX export of the network's three inference graphs and an ONNX Runtime (CPU) stand-in for the network.

The routed sliding window calls the network three ways: ``screen(x)`` (the cheap score), ``forward(x,
enhancement="full")`` and ``forward(x, enhancement="basic")``. A single ONNX graph holds one of them, so
:py:func:`export_onnx` writes one file per call: ``model.onnx`` (full), ``model_basic.onnx`` and
``model_screen.onnx``, each with a dynamic batch axis and the window size fixed (sliding-window windows always
have ``roi_size``). :py:class:`OnnxRuntimeNetwork` loads them into ONNX Runtime sessions and offers the same
``forward``/``screen`` interface, so the routed inferer keeps routing. With only ``model.onnx`` (for instance the
file written by ``python -m monai.bundle onnx_export``) it still runs, with routing off.

Export uses PyTorch's dynamo exporter (``torch.onnx.export(..., dynamo=True)``, which needs ``onnxscript``); the
legacy TorchScript exporter cannot handle the channels-last memory format the network uses on CPU.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.config import PathLike

from bundle.io.writers import atomic_write_bytes

__all__ = ["ONNX_VARIANTS", "NetworkVariant", "OnnxRuntimeNetwork", "export_onnx", "onnx_variant_paths", "select_network"]

logger = logging.getLogger(__name__)

ONNX_VARIANTS = ("full", "basic", "screen")
BACKENDS = ("torch", "onnxruntime")


def onnx_variant_paths(filepath: PathLike) -> dict[str, Path]:
    """
    File of each exported graph: ``filepath`` for ``full``, ``<stem>_basic.onnx`` and ``<stem>_screen.onnx`` next
    to it for the others (``models/model.onnx`` -> ``models/model_basic.onnx``, ``models/model_screen.onnx``).

    Args:
        filepath: the full graph's ``.onnx`` file.
    """
    path = Path(filepath)
    stem = path.name[: -len(".onnx")] if path.name.endswith(".onnx") else path.name
    return {"full": path, **{v: path.with_name(f"{stem}_{v}.onnx") for v in ONNX_VARIANTS[1:]}}


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
    got = _session(path, None).run(None, {"image": x.numpy()})[0]
    diff = float(np.max(np.abs(got - expected)))
    if not diff <= atol:
        raise ValueError(f"ONNX graph {path} disagrees with PyTorch: max abs difference {diff:.3g} > {atol:.3g}.")
    return diff


def _session(path: Path, num_threads: int | None) -> Any:
    """An ONNX Runtime CPU session for ``path``."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if num_threads is not None:
        options.intra_op_num_threads = int(num_threads)
        options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


class OnnxRuntimeNetwork(torch.nn.Module):
    """
    The network run by ONNX Runtime on CPU, with the PyTorch network's call interface.

    ``forward(x, enhancement="full"|"basic")`` and ``screen(x)`` run the graphs written by :py:func:`export_onnx`.
    ``screen`` is None when ``model_screen.onnx`` is absent (the routed inferer then runs with routing off), and
    ``enhancement="basic"`` raises when ``model_basic.onnx`` is absent. Inputs may live on any device; outputs are
    returned on the input's device. The module has no parameters: ``load_state_dict`` of a checkpoint does not
    apply (export again after changing the weights).

    Args:
        filepath: the full graph, e.g. ``models/model.onnx``; its ``_basic``/``_screen`` siblings are loaded when
            present.
        num_threads: ONNX Runtime intra-op threads; None lets ONNX Runtime decide.

    Raises:
        ValueError: when ``filepath`` does not exist (the message says how to export it).
    """

    def __init__(self, filepath: PathLike, num_threads: int | None = None) -> None:
        super().__init__()
        paths = onnx_variant_paths(filepath)
        if not paths["full"].is_file():
            raise ValueError(
                f"ONNX model {str(paths['full'])!r} does not exist; export it first with "
                "`python -m bundle.export onnx --config_file configs/inference.json`."
            )
        self.filepath = paths["full"]
        self.sessions = {v: _session(p, num_threads) for v, p in paths.items() if p.is_file()}
        self.screen = self._screen if "screen" in self.sessions else None
        logger.info("ONNX Runtime network from %s: graphs %s", self.filepath, sorted(self.sessions))

    def _run(self, variant: str, x: torch.Tensor) -> torch.Tensor:
        if variant not in self.sessions:
            raise ValueError(
                f"enhancement={variant!r} needs {str(onnx_variant_paths(self.filepath)[variant])!r}, which does not "
                "exist; export all graphs with `python -m bundle.export onnx`."
            )
        array = np.ascontiguousarray(x.detach().float().cpu().numpy())
        out = self.sessions[variant].run(None, {"image": array})[0]
        return torch.from_numpy(out).to(x.device)

    def forward(self, x: torch.Tensor, enhancement: str = "full") -> torch.Tensor:
        """
        Args:
            x: windows (B, in_channels, *roi), the exported window size.
            enhancement: ``"full"`` or ``"basic"``.

        Returns:
            logits (B, out_channels, *roi).

        Raises:
            ValueError: when ``enhancement`` is unknown or its graph was not exported.
        """
        if enhancement not in ONNX_VARIANTS[:2]:
            raise ValueError(f"enhancement must be 'full' or 'basic', got enhancement={enhancement!r}.")
        return self._run(enhancement, x)

    def _screen(self, x: torch.Tensor) -> torch.Tensor:
        """Suspicion scores (B,) of windows (B, in_channels, *roi)."""
        return self._run("screen", x)


def select_network(
    backend: str, torch_network: torch.nn.Module | None, onnx_network: torch.nn.Module | None
) -> torch.nn.Module:
    """
    The network of the configured ``backend`` (``configs/inference.json``: ``"backend": "torch"|"onnxruntime"``).

    Args:
        backend: ``"torch"`` or ``"onnxruntime"``.
        torch_network: the PyTorch network (used for ``"torch"``).
        onnx_network: the :py:class:`OnnxRuntimeNetwork` (used for ``"onnxruntime"``; None when disabled).

    Raises:
        ValueError: when ``backend`` is unknown or its network is None.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got backend={backend!r}.")
    network = torch_network if backend == "torch" else onnx_network
    if network is None:
        raise ValueError(f"backend={backend!r} but its network was not built (check the config's '_disabled_').")
    return network
