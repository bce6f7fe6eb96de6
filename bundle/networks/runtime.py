"""How the network runs at inference: PyTorch, or ONNX Runtime on CPU with the PyTorch network's call interface.

The routed sliding window calls the network three ways: ``screen(x)`` (the cheap score), ``forward(x,
enhancement="full")`` and ``forward(x, enhancement="basic")``. A single ONNX graph holds one of them, so
:py:func:`bundle.export.onnx.export_onnx` writes one file per call (:py:func:`onnx_variant_paths`).
:py:class:`OnnxRuntimeNetwork` loads them into ONNX Runtime sessions and offers the same ``forward``/``screen``
interface, so the routed inferer keeps routing; :py:func:`select_network` picks the configured backend
(``configs/inference.json``: ``"backend": "torch"|"onnxruntime"``). ``onnxruntime`` is imported only when a session
is opened.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.config import PathLike

__all__ = ["BACKENDS", "ONNX_VARIANTS", "OnnxRuntimeNetwork", "onnx_session", "onnx_variant_paths", "select_network"]

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


def onnx_session(path: Path, num_threads: int | None) -> Any:
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
        self.sessions = {v: onnx_session(p, num_threads) for v, p in paths.items() if p.is_file()}
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
