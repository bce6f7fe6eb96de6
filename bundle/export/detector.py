"""A lesion-box detector with the interface MONAI Label's detection mode calls (``detector``/``detector_ops`` ids).

MONAI Label 0.8.5 (``BasicInferTask.run_detector``) parses the bundle's ``detector``, sets ``detector.network`` to
the network it loaded from ``models/model.pt``, calls ``detector.eval()`` and then ``detector(inputs,
use_inferer=True)`` with the preprocessed image (1, C, *spatial), and merges the first output dict into its data.
Its ``DetectionWriter`` reads ``box`` (N, 6) as centre + size and ``label`` (N,), and writes a Slicer ROI JSON in
the **LPS** frame, which is why the boxes here are LPS millimetres (as the zoo's lung_nodule_ct_detection gives).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Callable

import torch
from monai.data import MetaTensor

from bundle.lesions.extract import extract_lesions, lesion_probability
from bundle.lesions.geometry import voxel_box_to_world
from bundle.lesions.rescore import check_rescore_threshold

__all__ = ["LesionBoxDetector"]


class LesionBoxDetector:
    """
    Lesion boxes of an image: the inferer's logits -> lesion probability -> lesions
    (:py:func:`bundle.lesions.extract.extract_lesions`, as inference and evaluation) -> world boxes.

    Args:
        inferer: e.g. the bundle's routed sliding-window inferer, called as ``inferer(inputs, network)``.
        network: the network; MONAI Label replaces it with the one it loaded. Defaults to None.
        foreground_channel: the lesion channel of the logits. Defaults to 1.
        lesion_kwargs: keyword arguments of :py:func:`bundle.lesions.find.find_lesions`.
        lps: report boxes in LPS (True, what MONAI Label's Slicer writer expects) or RAS mm.
        rescorer: optional false-positive-reduction stage, as in
            :py:class:`bundle.engines.LesionInferenceEvaluator`; it reads the first input channel.
        rescore_threshold: the lowest rescored score kept. Default 0.5.

    Raises:
        ValueError: from ``__call__`` when no network is set or the inputs are not (B, C, X, Y, Z).
    """

    def __init__(
        self,
        inferer: Callable[..., torch.Tensor],
        network: torch.nn.Module | None = None,
        foreground_channel: int = 1,
        lesion_kwargs: Mapping[str, Any] | None = None,
        lps: bool = True,
        rescorer: Any = None,
        rescore_threshold: float = 0.5,
    ) -> None:
        self.inferer = inferer
        self.network = network
        self.foreground_channel = foreground_channel
        self.lesion_kwargs = dict(lesion_kwargs or {})
        self.lps = lps
        self.rescorer = rescorer
        self.rescore_threshold = check_rescore_threshold(rescore_threshold)

    def eval(self) -> LesionBoxDetector:
        """Put the network in eval mode (MONAI Label calls this)."""
        if self.network is not None:
            self.network.eval()
        return self

    def __call__(self, inputs: torch.Tensor, use_inferer: bool = True) -> list[dict[str, torch.Tensor]]:
        """
        Args:
            inputs: preprocessed images (B, C, X, Y, Z), a MetaTensor whose affine (RAS) maps its voxels to mm.
            use_inferer: run the inferer (True) or the network on the whole image.

        Returns:
            one dict per image: ``box`` (N, 6) float32 centre + size mm, ``label`` (N,) int64 zeros (one class),
            ``label_scores`` (N,) float32.
        """
        if self.network is None:
            raise ValueError("LesionBoxDetector.network is not set: MONAI Label sets it, or pass network=...")
        if inputs.ndim != 5:
            raise ValueError(f"inputs must be (B, C, X, Y, Z), got shape {tuple(inputs.shape)}.")
        with torch.no_grad():
            logits = self.inferer(inputs, self.network) if use_inferer else self.network(inputs)
        logits = torch.as_tensor(logits).float().cpu()
        affines = inputs.affine if isinstance(inputs, MetaTensor) else torch.eye(4)
        affines = torch.as_tensor(affines).reshape(-1, 4, 4).double().numpy()
        results = []
        for b in range(logits.shape[0]):
            prob = lesion_probability(logits[b], self.foreground_channel).numpy()
            affine = affines[min(b, len(affines) - 1)]
            image = torch.as_tensor(inputs[b, 0]).detach().cpu()
            lesions = extract_lesions(prob, affine, self.lesion_kwargs, rescorer=self.rescorer, image=image,
                                      rescore_threshold=self.rescore_threshold)  # fmt: skip
            boxes = [voxel_box_to_world(les["box_voxel"], affine, self.lps) for les in lesions]
            results.append(
                {
                    "box": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 6),
                    "label": torch.zeros(len(lesions), dtype=torch.int64),
                    "label_scores": torch.tensor([float(les["score"]) for les in lesions], dtype=torch.float32),
                }
            )
        return results
