"""Suspicion router: score sliding windows with the network's cheap screen and assign each a compute tier.

The routed inferer (:py:class:`bundle.inferers.RoutedSlidingWindowInferer`) asks a router two questions per
window batch: how suspicious is each window (:py:meth:`SuspicionRouter.score`, which calls the network's cheap
``screen``), and which tier does each score fall in (:py:meth:`SuspicionRouter.tiers`). High windows then run the
full network, medium windows the cheaper "basic" path, and low windows nothing at all. The router is its own
component so a config can swap or disable it::

    "inferer": {
        "_target_": "bundle.inferers.RoutedSlidingWindowInferer",
        "roi_size": [96, 96, 96],
        "router": {"_target_": "bundle.inferers.SuspicionRouter", "high_threshold": 0.6, "low_threshold": 0.3}
    }

A replacement router only needs the attribute ``enabled`` and the two methods ``score`` and ``tiers`` with the
signatures below (``tissue_gate`` is optional).

Tissue gate. With ``tissue_threshold`` set, a window in which at most ``min_tissue_fraction`` of the voxels reach
``tissue_threshold`` (on the network's input scale) scores 0 without being screened, so it is LOW and skipped: air
outside the body holds nothing to detect, yet its screening score is not reliably low (zero-padding edges and a
semantic term that was calibrated on in-body windows). For CT windowed to [-1000, 400] HU -> [0, 1], 0.15 is
-790 HU: lung parenchyma with its vessels, and every nodule, reach it; air outside the patient does not.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from numbers import Real
from typing import Any

import torch

from bundle.tiers import RoutingTier

__all__ = ["SuspicionRouter", "get_screen"]

logger = logging.getLogger(__name__)


def get_screen(network: Any) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """
    Return the ``screen`` method of ``network`` (or of the module wrapped by ``DataParallel`` /
    ``DistributedDataParallel``), or ``None`` when it has none, e.g. a TorchScript module without an exported
    ``screen`` or a MONAI baseline network.

    Args:
        network: a callable network, usually a ``torch.nn.Module``.
    """
    for candidate in (network, getattr(network, "module", None)):
        if candidate is None:
            continue
        screen = getattr(candidate, "screen", None)
        if callable(screen):
            return screen  # type: ignore[no-any-return]
    return None


class SuspicionRouter:
    """
    Three-tier router driven by the network's suspicion score.

    A window with score ``s`` goes to tier :py:attr:`RoutingTier.HIGH` when ``s >= high_threshold``, to
    :py:attr:`RoutingTier.LOW` when ``s <= low_threshold`` and to :py:attr:`RoutingTier.MEDIUM` otherwise. A
    non-finite score is routed HIGH: when in doubt, spend compute rather than miss a lesion.

    Args:
        high_threshold: scores at or above it run the full network. Defaults to 0.6.
        low_threshold: scores at or below it skip the network. Defaults to 0.3.
        enabled: when False every window is routed HIGH (routing off). Defaults to True.
        tissue_threshold: input intensity at or above which a voxel counts as tissue; None turns the tissue gate
            off. Defaults to None.
        min_tissue_fraction: a window whose fraction of tissue voxels is ``<= min_tissue_fraction`` scores 0
            (LOW) without screening; 0 gates only windows with no tissue voxel at all. Defaults to 0.0.

    Raises:
        TypeError: when a threshold is not a real number or ``enabled`` is not a bool.
        ValueError: when the thresholds do not satisfy ``0 <= low_threshold < high_threshold <= 1`` or
            ``min_tissue_fraction`` is outside [0, 1).

    Example::

        router = SuspicionRouter(high_threshold=0.6, low_threshold=0.3)
        router.tiers(torch.tensor([0.3, 0.45, 0.6]))  # tensor([0, 1, 2])
    """

    def __init__(
        self,
        high_threshold: float = 0.6,
        low_threshold: float = 0.3,
        enabled: bool = True,
        tissue_threshold: float | None = None,
        min_tissue_fraction: float = 0.0,
    ) -> None:
        named = [("high_threshold", high_threshold), ("low_threshold", low_threshold)]
        named += [("min_tissue_fraction", min_tissue_fraction)]
        named += [("tissue_threshold", tissue_threshold)] if tissue_threshold is not None else []
        for name, value in named:
            if isinstance(value, bool) or not isinstance(value, Real):
                raise TypeError(f"{name} must be a real number, got {name}={value!r} ({type(value).__name__}).")
        if not 0.0 <= low_threshold < high_threshold <= 1.0:
            raise ValueError(
                "thresholds must satisfy 0 <= low_threshold < high_threshold <= 1, "
                f"got low_threshold={low_threshold}, high_threshold={high_threshold}."
            )
        if not isinstance(enabled, bool):
            raise TypeError(f"enabled must be a bool, got enabled={enabled!r} ({type(enabled).__name__}).")
        self.high_threshold = float(high_threshold)
        self.low_threshold = float(low_threshold)
        if tissue_threshold is not None and not math.isfinite(tissue_threshold):
            raise ValueError(f"tissue_threshold must be finite or None, got tissue_threshold={tissue_threshold}.")
        if not 0.0 <= min_tissue_fraction < 1.0:
            raise ValueError(f"min_tissue_fraction must be in [0, 1), got min_tissue_fraction={min_tissue_fraction}.")
        self.enabled = enabled
        self.tissue_threshold = None if tissue_threshold is None else float(tissue_threshold)
        self.min_tissue_fraction = float(min_tissue_fraction)

    def tissue_gate(self, windows: torch.Tensor) -> torch.Tensor:
        """
        Which windows hold enough tissue to be screened.

        Args:
            windows: window batch in shape (N, C, spatial_1[, spatial_2, ...]); a voxel is tissue when any channel
                reaches ``tissue_threshold``.

        Returns:
            bool tensor in shape (N,): True = screen the window; all True when ``tissue_threshold`` is None.
        """
        num = windows.shape[0]
        if self.tissue_threshold is None:
            return torch.ones(num, dtype=torch.bool, device=windows.device)
        tissue = (windows >= self.tissue_threshold).any(dim=1).reshape(num, -1)  # (N, prod(spatial))
        return tissue.float().mean(dim=1) > self.min_tissue_fraction

    def score(self, network: Any, windows: torch.Tensor) -> torch.Tensor:
        """
        Suspicion score of each window, from ``network.screen``; windows that fail the tissue gate score 0 and are
        not screened.

        Args:
            network: network implementing ``screen(x) -> (N,)`` scores in [0, 1]. Without ``screen`` every window
                gets score 1 (HIGH) and a warning is logged.
            windows: window batch in shape (N, C, spatial_1[, spatial_2, ...]).

        Returns:
            float scores in shape (N,), on the device of ``screen``'s output.

        Raises:
            ValueError: when ``windows`` has no spatial dimension or ``screen`` does not return one score per window.
        """
        if windows.ndim < 3:
            raise ValueError(f"windows must be (N, C, *spatial), got shape {tuple(windows.shape)}.")
        num_windows = windows.shape[0]
        screen = get_screen(network)
        if screen is None:
            logger.warning(
                "network %s has no `screen` method; scoring all %d windows as high suspicion.",
                type(network).__name__,
                num_windows,
            )
            return torch.ones(num_windows, device=windows.device)
        keep = self.tissue_gate(windows)
        scores = torch.zeros(num_windows, device=windows.device)
        index = torch.nonzero(keep, as_tuple=True)[0]
        if index.numel() == 0:
            return scores
        screened = screen(windows if index.numel() == num_windows else windows[index])
        if not isinstance(screened, torch.Tensor) or screened.numel() != index.numel():
            got = tuple(screened.shape) if isinstance(screened, torch.Tensor) else type(screened).__name__
            raise ValueError(f"network.screen must return one score per window, shape ({index.numel()},), got {got}.")
        scores = scores.to(screened.device)
        scores[index.to(screened.device)] = screened.reshape(-1).float()
        return scores

    def tiers(self, scores: torch.Tensor) -> torch.Tensor:
        """
        Tier of each score: 2 = high (``score >= high_threshold``), 1 = medium, 0 = low (``score <= low_threshold``).

        Args:
            scores: scores in shape (N,).

        Returns:
            ``torch.long`` tiers in shape (N,), on the device of ``scores``; all 2 when the router is disabled.
        """
        tiers = torch.full(scores.shape, int(RoutingTier.HIGH), dtype=torch.long, device=scores.device)
        if not self.enabled:
            return tiers
        finite = torch.isfinite(scores)
        tiers[finite & (scores < self.high_threshold)] = int(RoutingTier.MEDIUM)
        tiers[finite & (scores <= self.low_threshold)] = int(RoutingTier.LOW)
        return tiers

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(high_threshold={self.high_threshold}, low_threshold={self.low_threshold}, "
            f"enabled={self.enabled}, tissue_threshold={self.tissue_threshold}, "
            f"min_tissue_fraction={self.min_tissue_fraction})"
        )
