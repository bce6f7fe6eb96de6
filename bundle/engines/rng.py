"""Random state of a training run as a checkpointable object, so that a resumed run continues the same stream.

A run killed after epoch ``k`` and resumed from ``last_checkpoint_epoch=k.pt`` gets back its weights, optimizer,
scheduler and ignite trainer state from MONAI's ``CheckpointSaver`` / ``CheckpointLoader``, but not the random
state: without it the resumed run draws other crops, augmentations, dropout and batch orders than an
uninterrupted run would have. :class:`RandomState` collects every source of randomness a single-process
training run uses into one ``state_dict()`` and puts it back with ``load_state_dict()``:

* the global torch RNG (batch order of a shuffling ``DataLoader``, the base seed of its workers, dropout and the
  network's stochastic gates) and, when CUDA is initialised, every CUDA device's RNG;
* the global numpy and python ``random`` states;
* the ``numpy.random.RandomState`` (``R``) of every MONAI ``Randomizable`` found in the given transforms,
  including nested ones (``RandCropByPosNegLabeld.cropper``, ``RandAffined.rand_affine``), which MONAI's
  ``DataLoader`` seeds once when it is built and which then advance with every sample.

:class:`GradientState` keeps the other piece of state that no ``state_dict`` holds: which parameters have a
``.grad``. ``SupervisedTrainer`` zeroes gradients in place (``zero_grad(set_to_none=False)``), so a parameter
skipped by an iteration (a coordinate-attention stage dropped by ``ca_drop_prob``) still has a zero gradient,
and Adam moves it with its momentum; in a fresh process the gradient is None and Adam leaves it alone, which
made a resumed run differ by about 1e-3 after one epoch before this was restored.

With ``num_workers > 0`` the workers re-seed their transforms every epoch from a base seed drawn from the main
process's torch RNG, so the torch state alone carries them. ``configs/train.json`` adds the object to the saver's
``save_dict`` under ``"rng"`` and ``"grads"`` and builds the loader's ``load_dict`` with :func:`resume_load_dict`,
which leaves them out (with a warning) for checkpoints written before they existed.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from monai.config import PathLike
from monai.transforms import Randomizable

from .pretrained import read_checkpoint

__all__ = ["GradientState", "RandomState", "find_random_states", "resume_load_dict"]

logger = logging.getLogger(__name__)

_STATE_KEYS = ("torch", "cuda", "numpy", "python", "transforms")
_MAX_DEPTH = 16  # nesting of transforms searched for Randomizable objects (Compose > wrapper > cropper > ...)


def _numpy_state(legacy: tuple) -> dict[str, Any]:
    """A numpy MT19937 state tuple (``get_state(legacy=True)``) as tensors and numbers, which
    ``torch.load(weights_only=True)`` accepts (numpy arrays it does not)."""
    _, keys, pos, has_gauss, cached_gaussian = legacy
    return {
        "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
        "pos": int(pos),
        "has_gauss": int(has_gauss),
        "cached_gaussian": float(cached_gaussian),
    }


def _numpy_legacy(state: Mapping[str, Any]) -> tuple:
    """Inverse of :func:`_numpy_state`: the tuple for ``set_state``."""
    keys = np.asarray(state["keys"].numpy(), dtype=np.uint32)
    return "MT19937", keys, int(state["pos"]), int(state["has_gauss"]), float(state["cached_gaussian"])


def _python_state() -> dict[str, Any]:
    """The ``random`` module's state as a tensor and numbers."""
    version, internal, gauss_next = random.getstate()
    return {"version": int(version), "internal": torch.tensor(internal, dtype=torch.int64), "gauss_next": gauss_next}


def _set_python_state(state: Mapping[str, Any]) -> None:
    """Inverse of :func:`_python_state`."""
    internal = tuple(int(v) for v in state["internal"].tolist())
    random.setstate((int(state["version"]), internal, state["gauss_next"]))


def _children(obj: Any) -> list[tuple[str, Any]]:
    """(name, value) of the items of a container, or of the attributes of an object; nothing for tensors/arrays."""
    if isinstance(obj, (torch.Tensor, np.ndarray, torch.nn.Module, str, bytes)):
        return []
    if isinstance(obj, (list, tuple)):
        return [(str(i), v) for i, v in enumerate(obj)]
    if isinstance(obj, Mapping):
        return [(str(k), v) for k, v in obj.items()]
    if hasattr(obj, "__dict__"):
        return [(k, v) for k, v in vars(obj).items() if not k.startswith("__")]
    return []


def find_random_states(root: Any) -> dict[str, np.random.RandomState]:
    """
    The ``R`` (numpy ``RandomState``) of every MONAI ``Randomizable`` reachable from ``root``, by attribute path.

    The search goes through lists, tuples, mappings and object attributes (like ``monai.data.utils.set_rnd``),
    also inside ``Randomizable`` objects, whose inner transforms have their own ``R``. A ``RandomState`` shared
    by several transforms (MONAI's class-level default, before seeding) is listed once, under its first path.

    Args:
        root: a transform, a ``Compose``, or a list of them.

    Returns:
        ``{path: RandomState}`` in search order, e.g. ``{"transforms.5": ..., "transforms.5.cropper": ...}``.
    """
    found: dict[str, np.random.RandomState] = {}
    seen_states: set[int] = set()
    visited: set[int] = set()

    def visit(obj: Any, path: str, depth: int) -> None:
        if depth > _MAX_DEPTH or id(obj) in visited:
            return
        visited.add(id(obj))
        if isinstance(obj, Randomizable) and isinstance(obj.R, np.random.RandomState) and id(obj.R) not in seen_states:
            seen_states.add(id(obj.R))
            found[path or "."] = obj.R
        for name, child in _children(obj):
            if name != "R":
                visit(child, f"{path}.{name}" if path else name, depth + 1)

    visit(root, "", 0)
    return found


class RandomState:
    """
    The random state of a training process, with ``state_dict()`` / ``load_state_dict()`` for ignite checkpoints.

    Add it to ``CheckpointSaver``'s ``save_dict`` and ``CheckpointLoader``'s ``load_dict`` (key ``"rng"``): the
    saver calls ``state_dict()`` at the end of an epoch, the loader calls ``load_state_dict()`` on
    ``Events.STARTED`` of the resumed run, so the next epoch draws what it would have drawn without the
    interruption. See the module docstring for what is collected.

    Args:
        transforms: the training transforms whose ``Randomizable`` members are saved, e.g. ``@train#preprocessing``
            (a ``Compose``); a list, or None for the global generators only. The same pipeline must be given
            when resuming: transforms are matched by their attribute path.

    Examples::

        >>> rng = RandomState(Compose([RandFlipd("image", prob=0.5)]))
        >>> state = rng.state_dict()
        >>> a = torch.rand(3)
        >>> rng.load_state_dict(state)
        >>> torch.equal(torch.rand(3), a)
        True
    """

    def __init__(self, transforms: Any = None) -> None:
        self.transforms = transforms

    def state_dict(self) -> dict[str, Any]:
        """The current states: ``{"torch", "cuda", "numpy", "python", "transforms": {path: state}}``."""
        cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else []
        transforms = find_random_states(self.transforms)
        return {
            "torch": torch.get_rng_state(),
            "cuda": list(cuda),
            "numpy": _numpy_state(np.random.get_state(legacy=True)),
            "python": _python_state(),
            "transforms": {path: _numpy_state(r.get_state(legacy=True)) for path, r in transforms.items()},
        }

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """
        Restore the states saved by :meth:`state_dict`.

        Transforms present on one side only (another pipeline) keep their current state, with a warning naming
        them; CUDA states are restored when the number of devices matches, else skipped with a warning.

        Raises:
            ValueError: when ``state_dict`` is not a mapping with the keys of :meth:`state_dict`.
        """
        missing = [k for k in _STATE_KEYS if not (isinstance(state_dict, Mapping) and k in state_dict)]
        if missing:
            raise ValueError(f"state_dict must be a RandomState.state_dict() with keys {list(_STATE_KEYS)}, "
                             f"got a {type(state_dict).__name__} lacking {missing}.")
        torch.set_rng_state(state_dict["torch"])
        self._load_cuda(list(state_dict["cuda"]))
        np.random.set_state(_numpy_legacy(state_dict["numpy"]))
        _set_python_state(state_dict["python"])
        self._load_transforms(state_dict["transforms"])

    @staticmethod
    def _load_cuda(states: list[torch.Tensor]) -> None:
        """Restore the CUDA RNG of every device when the saved count matches the visible count."""
        if not states:
            return
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count != len(states):
            logger.warning("random state: %d CUDA RNG states saved, %d devices here; CUDA RNG not restored.",
                           len(states), count)
            return
        torch.cuda.set_rng_state_all(states)

    def _load_transforms(self, states: Mapping[str, Any]) -> None:
        """Restore each transform's ``R`` by path; warn about paths found on one side only."""
        current = find_random_states(self.transforms)
        for path, generator in current.items():
            if path in states:
                generator.set_state(_numpy_legacy(states[path]))
        unmatched = sorted(set(current) ^ set(states))
        if unmatched:
            logger.warning("random state: transforms %s are not in both the checkpoint and the pipeline; they keep "
                           "their current random state (was the training pipeline changed?).", unmatched)


class GradientState:
    """
    Which parameters of a network hold a gradient, with ``state_dict()`` / ``load_state_dict()`` for checkpoints.

    Loading gives a zero gradient to each parameter that had one when saved and None to the others: the values
    do not matter (the next iteration zeroes them before ``backward``), the presence does (an optimizer updates
    a parameter whose gradient is a zero tensor, e.g. Adam with its momentum, and skips one whose gradient is
    None).

    Args:
        network: the trained network (a ``DistributedDataParallel`` wrapper has the same parameters).
    """

    def __init__(self, network: torch.nn.Module) -> None:
        self.network = network

    def state_dict(self) -> dict[str, torch.Tensor]:
        """``{"has_grad": bool tensor, one entry per parameter in ``network.parameters()`` order}``."""
        return {"has_grad": torch.tensor([p.grad is not None for p in self.network.parameters()], dtype=torch.bool)}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """
        Give a zero gradient to the parameters marked in ``state_dict["has_grad"]``, None to the others.

        Raises:
            ValueError: when the mask is missing or its length is not the number of parameters.
        """
        params = list(self.network.parameters())
        mask = state_dict.get("has_grad") if isinstance(state_dict, Mapping) else None
        if not isinstance(mask, torch.Tensor) or mask.numel() != len(params):
            got = tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__
            raise ValueError(f"state_dict['has_grad'] must be a mask of one entry per parameter ({len(params)}), "
                             f"got {got}.")
        for param, has_grad in zip(params, mask.tolist()):
            param.grad = torch.zeros_like(param) if has_grad else None


def resume_load_dict(
    objects: Mapping[str, Any], optional: Mapping[str, Any], checkpoint: PathLike
) -> dict[str, Any]:
    """
    The ``load_dict`` of a ``CheckpointLoader``: ``objects`` plus each ``optional`` entry the checkpoint holds.

    ignite's ``Checkpoint.load_objects`` fails on a ``load_dict`` entry missing from the checkpoint, so a
    checkpoint written before the random state (``"rng"``) and the gradient state (``"grads"``) were saved is
    resumed without them, with a warning that the run will not repeat an uninterrupted one.

    Args:
        objects: the objects to load, e.g. ``{"model": ..., "optimizer": ..., "trainer": ...}``.
        optional: e.g. ``{"rng": RandomState(...), "grads": GradientState(...)}``; a None value is left out (a run
            that does not save it, e.g. ``configs/multi_gpu_train.json`` disables ``"rng"``: each rank has its
            own random stream, and only rank 0's would be saved).
        checkpoint: the file to resume from; empty for a run that does not resume (the entries are then
            included, the loader is not called).

    Returns:
        a new dict for ``CheckpointLoader(load_dict=...)``.

    Raises:
        ValueError: when ``checkpoint`` is given but is not a readable ``torch.save`` file (message names it).
    """
    load_dict = dict(objects)
    wanted = {k: v for k, v in optional.items() if v is not None}
    held = read_checkpoint(checkpoint) if checkpoint else wanted
    load_dict.update({k: v for k, v in wanted.items() if k in held})
    missing = [k for k in wanted if k not in held]
    if missing:
        logger.warning("checkpoint '%s' lacks the entries %s (written before they were saved): resuming without "
                       "them, so the run will not repeat an uninterrupted one (the random stream restarted from "
                       "the seed).", checkpoint, missing)
    return load_dict
