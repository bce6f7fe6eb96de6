"""The network and the preprocessing the analyses run (``python -m scripts.analyze``): ``network_def`` of a bundle
config with its weights, and a preprocessing component of a config; by default ``network_def`` of
``configs/inference.json`` with ``models/model.pt`` and ``preprocessing`` of ``configs/train.json`` (what the shipped
model was trained on). Relative paths are the bundle folder's, so the analyses run from any working directory.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn as nn

__all__ = ["BUNDLE_ROOT", "load_network", "load_preprocessing", "network_and_preprocessing", "inference_parts"]

BUNDLE_ROOT = Path(__file__).resolve().parents[3]  # the folder holding configs/ and models/


def load_network(config_file: str | os.PathLike, ckpt: str | os.PathLike) -> nn.Module:
    """
    ``network_def`` of a bundle config with a state dict loaded (``weights_only=True``), in eval mode on CPU.

    Raises:
        ValueError: when the checkpoint file does not exist or does not fit the network (message names it).
    """
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(config_file))
    net = parser.get_parsed_content("network_def")
    if not Path(ckpt).is_file():
        raise ValueError(f"ckpt must be an existing weights file, got {ckpt}.")
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    state = state.get("model", state) if isinstance(state, dict) else state
    try:
        net.load_state_dict(state)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"{ckpt}: weights do not fit network_def of {config_file} ({str(e).splitlines()[0]}).") from e
    return net.eval()


def load_preprocessing(config_file: str | os.PathLike, key: str = "preprocessing") -> Callable:
    """The ``key`` component of a bundle config (e.g. ``preprocessing`` of ``configs/train.json``)."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(config_file))
    return parser.get_parsed_content(key)


def network_and_preprocessing(
    config: str | os.PathLike = "configs/inference.json",
    ckpt: str | os.PathLike = "models/model.pt",
    preprocessing_config: str | os.PathLike = "configs/train.json",
    key: str = "preprocessing",
    threads: int = 1,
    bundle_root: str | os.PathLike = BUNDLE_ROOT,
) -> tuple[nn.Module, Callable]:
    """
    Set torch's CPU threads, then load the network (:py:func:`load_network`) and the preprocessing
    (:py:func:`load_preprocessing`); relative paths are taken from ``bundle_root``.

    Args:
        config: the config holding ``network_def``.
        ckpt: its weights.
        preprocessing_config: the config holding the preprocessing ``key``.
        key: e.g. ``"preprocessing"`` (image and label) or ``"image_preprocessing"`` (inference).
        threads: torch CPU threads. Defaults to 1.
        bundle_root: the folder relative paths start from. Defaults to this bundle's.

    Raises:
        ValueError: when the checkpoint does not exist or does not fit the network.
    """
    torch.set_num_threads(int(threads))
    root = Path(bundle_root)
    return load_network(root / config, root / ckpt), load_preprocessing(root / preprocessing_config, key)


def inference_parts(
    config: str | os.PathLike = "configs/inference.json",
    ckpt: str | os.PathLike = "models/model.pt",
    threads: int = 1,
    bundle_root: str | os.PathLike = BUNDLE_ROOT,
) -> tuple[nn.Module, Callable, Sequence[int]]:
    """The network with its weights, the image preprocessing (``image_preprocessing``) and the window size
    (``roi_size``, default ``[64, 64, 32]``) of an inference config; see :py:func:`network_and_preprocessing`."""
    net, pre = network_and_preprocessing(config, ckpt, config, "image_preprocessing", threads, bundle_root)
    return net, pre, json.loads((Path(bundle_root) / config).read_text()).get("roi_size", [64, 64, 32])
