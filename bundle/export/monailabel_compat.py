"""MONAI Label 0.8.5 on MONAI 1.6.1: keep MONAI Label's ``image_path`` string away from ``Spacingd``.

MONAI Label puts the input's path under ``image_path`` in the data dict. MONAI 1.6.1's ``Spacingd``, for a NIfTI
input, calls ``.update(meta)`` on every key starting with ``"<key>_"`` (meant for ``image_meta_dict``) and fails on
that string (``AttributeError: 'str' object has no attribute 'update'``). ``configs/inference.json`` therefore gives
MONAI Label a ``pre_transforms`` id (which it prefers to ``preprocessing``): the bundle's preprocessing between
:py:class:`StashKeysd` and :py:class:`RestoreKeysd`, which move such entries aside and back. Nothing else uses it.

MONAI Label runs ``pre_transforms``, ``inferer`` and ``postprocessing`` itself and never the bundle's evaluator, so
``postprocessing`` ends with :py:class:`LesionLabelMapd`: the lesion label map the command line writes (the same
``extract_lesions`` call: threshold, minimum diameter, the lung-envelope candidate mask, the rescorer, the routing
tiers), instead of an argmax, so the viewer shows the lesions the batch report lists.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import MapTransform

from bundle.inferers.stats import inferer_tier_codes
from bundle.lesions.extract import extract_lesions, lesion_probability
from bundle.lesions.geometry import input_grid, label_map_to_grid, lesions_to_grid
from bundle.lesions.rescore import check_rescore_threshold

__all__ = ["StashKeysd", "RestoreKeysd", "LesionLabelMapd", "STASH_PREFIX"]

STASH_PREFIX = "__stashed__"


class StashKeysd(MapTransform):
    """
    Move the entries whose key starts with ``"<key>_"`` and whose value is not a dict (e.g. ``image_path``) to
    ``STASH_PREFIX + name``.

    Args:
        keys: the image keys whose ``"<key>_*"`` entries are stashed.
    """

    def __init__(self, keys: Any) -> None:
        super().__init__(keys, allow_missing_keys=True)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.keys:
            for name in [k for k in d if isinstance(k, str) and k.startswith(f"{key}_")]:
                if not isinstance(d[name], dict):
                    d[STASH_PREFIX + name] = d.pop(name)
        return d


class RestoreKeysd(MapTransform):
    """Put back what :py:class:`StashKeysd` moved aside (every ``STASH_PREFIX`` entry)."""

    def __init__(self, keys: Any = "image") -> None:
        super().__init__(keys, allow_missing_keys=True)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for name in [k for k in d if isinstance(k, str) and k.startswith(STASH_PREFIX)]:
            d[name[len(STASH_PREFIX) :]] = d.pop(name)
        return d


class LesionLabelMapd(MapTransform):
    """
    The logits under ``keys`` (C, *spatial, on the preprocessed grid) -> the command line's lesion label map
    (1, *spatial; lesion ``n`` is label ``n``) **on the input's own grid**, mapped back as the evaluator maps it
    (:py:func:`bundle.lesions.geometry.label_map_to_grid` to the ``original_affine`` / ``spatial_shape`` that
    ``LoadImage`` recorded in the image's metadata). MONAI Label's own ``Restored`` only resizes the prediction to
    the input's shape and does not undo ``Orientationd``: on an input that is not RAS-oriented (every DICOM series,
    and MONAI Label's NIfTI of one) it mirrored the lesions left-right and front-back. With the map already on the
    input's grid, ``Restored`` leaves it as it is.

    The same call as :py:class:`bundle.engines.LesionInferenceEvaluator`: :py:func:`lesion_probability`, then
    :py:func:`extract_lesions` with ``lesion_kwargs``, the candidate mask under ``mask_key`` (lesions centred outside
    it dropped), ``rescorer`` on the image under ``image_key``, and the routing tiers of ``inferer.last_tier_map``
    when its shape matches. The found lesions go to ``<key>_lesions`` (records on the input's grid, as in
    ``lesions.json``). A value that is not a tensor (the detection mode's boxes) passes through. Without the
    input-grid metadata the map stays on the preprocessed grid.

    Args:
        keys: the prediction key. Defaults to ``"pred"``.
        mask_key: the candidate mask key (``"lung_mask"`` of the bundle's preprocessing); None for none.
        image_key: the preprocessed image, for the rescorer.
        lesion_kwargs: keyword arguments of :py:func:`bundle.lesions.find.find_lesions`.
        rescorer: optional false-positive-reduction stage, as in the evaluator.
        rescore_threshold: the lowest rescored score kept. Default 0.5.
        inferer: the inferer whose ``last_tier_map`` gives the tiers (the same object MONAI Label runs).
        foreground_channel: the lesion channel. Default 1.
    """

    def __init__(
        self,
        keys: Any = "pred",
        mask_key: str | None = "lung_mask",
        image_key: str = "image",
        lesion_kwargs: Mapping[str, Any] | None = None,
        rescorer: Any = None,
        rescore_threshold: float = 0.5,
        inferer: Any = None,
        foreground_channel: int = 1,
    ) -> None:
        super().__init__(keys, allow_missing_keys=True)
        self.mask_key = mask_key
        self.image_key = image_key
        self.lesion_kwargs = dict(lesion_kwargs or {})
        self.rescorer = rescorer
        self.rescore_threshold = check_rescore_threshold(rescore_threshold)
        self.inferer = inferer
        self.foreground_channel = foreground_channel

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            logits = d[key]
            if not isinstance(logits, torch.Tensor):  # detection mode: the detector's dict passes through
                continue
            if logits.ndim < 3:
                raise ValueError(f"'{key}' must be channel-first logits (C, *spatial), got shape {tuple(logits.shape)}.")
            spatial = tuple(logits.shape[1:])
            affine = logits.affine if isinstance(logits, MetaTensor) else torch.eye(len(spatial) + 1)
            prob = lesion_probability(torch.as_tensor(logits).float(), self.foreground_channel).cpu().numpy()
            mask = None
            if self.mask_key is not None and self.mask_key in d:
                mask = np.asarray(torch.as_tensor(d[self.mask_key]).reshape(spatial).cpu()) > 0.5
            tiers = inferer_tier_codes(self.inferer, spatial, str(key))
            image = d.get(self.image_key)
            image = None if image is None else torch.as_tensor(image)[0]
            lesions, labels = extract_lesions(
                prob, affine, self.lesion_kwargs, tier_map=tiers, mask=mask, rescorer=self.rescorer, image=image,
                rescore_threshold=self.rescore_threshold, return_label_map=True,
            )  # fmt: skip
            meta = dict(getattr(d.get(self.image_key), "meta", None) or getattr(logits, "meta", {}))
            if "original_affine" in meta and "spatial_shape" in meta:  # back to the input's grid, as the evaluator
                to_affine, to_shape = input_grid(meta, str(key))
                lesions = lesions_to_grid(lesions, affine, to_affine, to_shape)
                labels = label_map_to_grid(labels, affine, to_affine, to_shape)
                meta["affine"] = torch.as_tensor(to_affine)
            out = torch.as_tensor(np.asarray(labels, dtype=np.float32))[None]
            d[key] = MetaTensor(out, meta=meta) if isinstance(logits, MetaTensor) else out
            d[f"{key}_lesions"] = lesions
        return d
