"""Transfer learning: initialise a network from a pretrained state dict, copying only what fits.

A checkpoint of a related model (another ``out_channels`` head, an extra block, a ``DistributedDataParallel``
wrapper) is loaded tensor by tensor: a tensor is copied when its name and its shape match the network's, and
everything else is reported instead of raised. ``configs/train.json`` calls :func:`load_pretrained` from its
``initialize`` step when ``pretrained_ckpt`` is set.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from monai.config import PathLike

__all__ = ["load_pretrained", "read_checkpoint"]

logger = logging.getLogger(__name__)

_NESTED_KEYS = ("model", "state_dict")  # MONAI CheckpointSaver / ignite, Lightning and most training scripts
_DDP_PREFIX = "module."
_MAX_LISTED = 5  # names shown in a log or error line before "..."


def _short(names: list[str]) -> str:
    """Comma-separated names, at most ``_MAX_LISTED`` of them."""
    more = f", ... (+{len(names) - _MAX_LISTED})" if len(names) > _MAX_LISTED else ""
    return ", ".join(names[:_MAX_LISTED]) + more


def _is_state_dict(obj: Any) -> bool:
    """A non-empty mapping of string names to tensors (non-tensor extras such as ``_metadata`` are allowed)."""
    return (
        isinstance(obj, Mapping)
        and len(obj) > 0
        and all(isinstance(k, str) for k in obj)
        and any(isinstance(v, torch.Tensor) for v in obj.values())
    )


def _select_state_dict(checkpoint: Any, path: str, key: str | None) -> dict[str, torch.Tensor]:
    """The tensors of ``checkpoint``: ``checkpoint[key]`` if ``key`` is given, else the raw dict or its
    ``"model"`` / ``"state_dict"`` entry; a common ``"module."`` prefix (DDP) is removed."""
    if not isinstance(checkpoint, Mapping):
        raise ValueError(
            f"pretrained checkpoint '{path}' must hold a state dict (a mapping of names to tensors), "
            f"got {type(checkpoint).__name__}."
        )
    if key is not None:
        if key not in checkpoint:
            raise ValueError(
                f"key must name an entry of the pretrained checkpoint '{path}', got key={key!r}; "
                f"entries: {_short([str(k) for k in checkpoint])}."
            )
        state = checkpoint[key]
    elif _is_state_dict(checkpoint) and not any(k in checkpoint for k in _NESTED_KEYS):
        state = checkpoint
    else:
        state = next((checkpoint[k] for k in _NESTED_KEYS if k in checkpoint), checkpoint)
    if not _is_state_dict(state):
        raise ValueError(
            f"pretrained checkpoint '{path}' holds no state dict (raw, or under 'model', 'state_dict' or key), "
            f"got entries: {_short([str(k) for k in checkpoint]) or 'none'}."
        )
    tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if all(k.startswith(_DDP_PREFIX) for k in tensors):
        tensors = {k[len(_DDP_PREFIX):]: v for k, v in tensors.items()}
    return tensors


def read_checkpoint(path: PathLike, required_keys: Sequence[str] = ()) -> Any:
    """
    Read a ``torch.save`` file onto the CPU with ``weights_only=True``, failing with one line that names the file.

    Use it before MONAI's ``CheckpointLoader`` (whose errors name neither the file nor the problem), e.g. in
    ``configs/train.json`` when resuming: a checkpoint cut short by a killed run, or another file, is reported as
    ``checkpoint '<path>' is not a readable torch.save file (...)``.

    Args:
        path: the checkpoint file.
        required_keys: entries the checkpoint must hold (e.g. ``["model", "optimizer", "trainer"]``).

    Returns:
        the loaded object.

    Raises:
        ValueError: when ``path`` is not a file, cannot be read by ``torch.load``, or lacks a required entry.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"path must be an existing checkpoint file, got path='{path}' (no such file).")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises pickle, zip, EOF or runtime errors depending on how the file is broken
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(
            f"checkpoint '{path}' is not a readable torch.save file, it may be truncated or corrupt "
            f"({type(e).__name__}: {reason})."
        ) from None
    missing = [k for k in required_keys if not (isinstance(checkpoint, Mapping) and k in checkpoint)]
    if missing:
        found = _short([str(k) for k in checkpoint]) if isinstance(checkpoint, Mapping) else type(checkpoint).__name__
        raise ValueError(f"checkpoint '{path}' lacks the entries {missing} (found: {found}).")
    return checkpoint


def load_pretrained(
    network: torch.nn.Module, path: PathLike, key: str | None = None, strict: bool = False, allow_no_match: bool = False
) -> dict[str, Any]:
    """
    Copy the tensors of a pretrained checkpoint into ``network`` where both the name and the shape match.

    The checkpoint is read with ``torch.load(weights_only=True)`` (no code runs while loading) onto the CPU; the
    copied values then go to the device of each of ``network``'s own tensors. It may be a raw state dict, or a
    dict holding one under ``key``, ``"model"`` (MONAI ``CheckpointSaver``) or ``"state_dict"``. Names saved from
    a ``DistributedDataParallel`` network (all prefixed ``"module."``) are accepted, and a wrapped ``network``
    (``DataParallel`` / ``DistributedDataParallel``) is loaded through its ``module``.

    Args:
        network: the network to initialise, e.g. ``bundle.networks.GhostCAUNet``; parameters and buffers that are
            not matched keep their current values.
        path: checkpoint file written by ``torch.save``.
        key: entry of the checkpoint that holds the state dict. Defaults to None: the raw dict, else ``"model"``,
            else ``"state_dict"``.
        strict: when True, every tensor of the network and of the checkpoint must match by name and shape, else
            a ``ValueError`` is raised and nothing is copied. Defaults to False.
        allow_no_match: return the report when no tensor matches instead of raising (for callers that count the
            matches themselves, e.g. a classifier head initialised from a partly related file). Defaults to False.

    Returns:
        a report ``{"matched": int, "missing": [names], "unexpected": [names], "shape_mismatch": [names]}``:
        ``missing`` are network tensors absent from the checkpoint, ``unexpected`` are checkpoint tensors the
        network does not have, ``shape_mismatch`` are names in both with different shapes (e.g. another
        ``out_channels`` head). The lists are sorted.

    Raises:
        ValueError: when ``path`` does not exist or is not a readable ``torch.save`` file, when it holds no state
            dict (or ``key`` is not one of its entries), when no tensor matches (a checkpoint of another
            architecture) and ``allow_no_match`` is False, or when ``strict`` is True and anything does not match. Each message names the file.

    Examples::

        >>> report = load_pretrained(GhostCAUNet(out_channels=3), "models/model.pt")  # a 2-class checkpoint
        >>> report["shape_mismatch"]
        ['head.bias', 'head.weight']
    """
    path = os.fspath(path)
    checkpoint = read_checkpoint(path)
    source = _select_state_dict(checkpoint, path, key)

    wrappers = (torch.nn.DataParallel, torch.nn.parallel.DistributedDataParallel)
    target = network.module if isinstance(network, wrappers) else network
    own = target.state_dict()
    matched = {k: v for k, v in source.items() if k in own and tuple(v.shape) == tuple(own[k].shape)}
    report: dict[str, Any] = {
        "matched": len(matched),
        "missing": sorted(k for k in own if k not in source),
        "unexpected": sorted(k for k in source if k not in own),
        "shape_mismatch": sorted(k for k in source if k in own and k not in matched),
    }
    summary = (
        f"{len(matched)} of {len(own)} tensors of {type(target).__name__} matched; "
        f"missing {len(report['missing'])}, unexpected {len(report['unexpected'])}, "
        f"shape mismatch {len(report['shape_mismatch'])}"
    )
    if not matched and not allow_no_match:
        raise ValueError(
            f"pretrained checkpoint '{path}' does not fit the network: {summary} (is it another architecture? "
            f"checkpoint names: {_short(sorted(source))})."
        )
    if strict and (report["missing"] or report["unexpected"] or report["shape_mismatch"]):
        raise ValueError(
            f"strict=True needs every tensor of the pretrained checkpoint '{path}' to match, got {summary}: "
            f"missing [{_short(report['missing'])}], unexpected [{_short(report['unexpected'])}], "
            f"shape mismatch [{_short(report['shape_mismatch'])}]."
        )
    target.load_state_dict(matched, strict=False)  # copies into the existing tensors: device and layout are kept
    logger.info("loaded pretrained weights from '%s': %s.", path, summary)
    for name in report["shape_mismatch"]:
        logger.warning(
            "pretrained '%s': %s not loaded, checkpoint shape %s, network shape %s.",
            path, name, tuple(source[name].shape), tuple(own[name].shape),
        )
    if report["missing"]:
        logger.info("pretrained '%s': network tensors left as initialised: %s.", path, _short(report["missing"]))
    if report["unexpected"]:
        logger.info("pretrained '%s': checkpoint tensors not used: %s.", path, _short(report["unexpected"]))
    return report
