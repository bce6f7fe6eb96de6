"""Export the bundle's network from its config and checkpoint (``python -m bundle.export onnx``)."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from monai.bundle import ConfigParser
from monai.config import PathLike

from bundle.engines.pretrained import load_pretrained
from bundle.export.onnx import export_onnx
from bundle.networks.runtime import ONNX_VARIANTS, onnx_variant_paths

__all__ = ["load_bundle_network", "export_bundle_onnx"]

logger = logging.getLogger(__name__)


def load_bundle_network(
    config_file: PathLike = "configs/inference.json",
    ckpt_file: PathLike | None = None,
    bundle_root: PathLike = ".",
    net_id: str = "network_def",
) -> tuple[torch.nn.Module, ConfigParser]:
    """
    Build ``net_id`` from a bundle config and load a checkpoint into it (strictly), on CPU, in eval mode.

    Args:
        config_file: the bundle config defining ``net_id``.
        ckpt_file: a state dict, raw or ``{"model": state_dict}``; None uses ``<bundle_root>/models/model.pt``.
            Loaded strictly by :py:func:`bundle.engines.pretrained.load_pretrained`.
        bundle_root: the bundle folder (set as the config's ``bundle_root``).
        net_id: the network's config id. Defaults to ``"network_def"``.

    Returns:
        ``(network, parser)``.

    Raises:
        ValueError: when a file does not exist or the checkpoint does not fit the network.
    """
    for path in (config_file, ckpt_file):
        if path is not None and not Path(path).is_file():
            raise ValueError(f"file {str(path)!r} does not exist.")
    parser = ConfigParser()
    parser.read_config(str(config_file))
    parser["bundle_root"] = str(bundle_root)
    network = parser.get_parsed_content(net_id, instantiate=True)
    ckpt = Path(ckpt_file) if ckpt_file is not None else Path(bundle_root) / "models" / "model.pt"
    if not ckpt.is_file():
        raise ValueError(f"checkpoint {str(ckpt)!r} does not exist.")
    load_pretrained(network, ckpt, strict=True)
    return network.cpu().eval(), parser


def export_bundle_onnx(
    config_file: PathLike = "configs/inference.json",
    ckpt_file: PathLike | None = None,
    filepath: PathLike | None = None,
    bundle_root: PathLike = ".",
    variants: tuple[str, ...] = ONNX_VARIANTS,
    check_atol: float = 1e-4,
) -> dict[str, float]:
    """
    Export the bundle network's ``full``, ``basic`` and ``screen`` graphs for the ONNX Runtime backend.

    The window size is the config's ``roi_size`` and the input channels ``network_def#in_channels``.

    Args:
        config_file: the inference config. Defaults to ``configs/inference.json``.
        ckpt_file: the weights; None uses ``<bundle_root>/models/model.pt``.
        filepath: the full graph's file; None uses ``<bundle_root>/models/model.onnx`` (the others go next to it).
        bundle_root: the bundle folder. Defaults to ``"."``.
        variants: the graphs to export. Defaults to all three.
        check_atol: the largest accepted max abs difference between ONNX Runtime and PyTorch. Defaults to 1e-4.

    Returns:
        ``{variant: max abs difference ONNX Runtime vs PyTorch}``; the files are logged.

    Raises:
        ValueError: see :py:func:`load_bundle_network` and :py:func:`bundle.export.onnx.export_onnx`.
    """
    network, parser = load_bundle_network(config_file, ckpt_file, bundle_root)
    roi_size = [int(s) for s in parser.get_parsed_content("roi_size")]
    in_channels = int(parser.get_parsed_content("network_def#in_channels"))
    target = Path(filepath) if filepath is not None else Path(bundle_root) / "models" / "model.onnx"
    diffs = export_onnx(network, target, roi_size, in_channels, variants=variants, check_atol=check_atol)
    paths = onnx_variant_paths(target)
    for variant, diff in diffs.items():
        print(f"{paths[variant]}: {variant} graph, max abs difference vs PyTorch {diff:.2e}")
    return diffs
