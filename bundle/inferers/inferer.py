"""Routed sliding-window inference: the dynamic detection path (screen every window, compute only where needed).

Design. :py:class:`RoutedSlidingWindowInferer` wraps :py:func:`monai.inferers.sliding_window_inference` instead of
forking its stitching loop. It passes a predictor (with ``with_coord=True``, so it sees each window's slices) that,
for each window batch,

1. scores the windows with the router (``network.screen``, cheap: a downsampled encoder),
2. runs ``network(w, enhancement="full")`` on HIGH windows and ``network(w, enhancement="basic")`` on MEDIUM windows,
   and nothing on LOW windows,
3. returns ``concat([k * logits, k], dim=1)``, where ``k`` is the window's keep weight (1 if it ran, 0 if skipped).

MONAI stitches both parts with its usual importance map ``w`` and count map ``n``; the inferer then divides them:
``sum(w k p) / n`` by ``sum(w k) / n`` = ``sum(w k p) / sum(w k)``, i.e. a blend in which skipped windows have
weight zero, so they never dilute a neighbouring window that ran. Voxels covered only by skipped windows have
``sum(w k) = 0`` and get the constant background logits (no division by zero, no NaN).

Why not ``process_fn``: MONAI builds its count map once, from the importance map returned for the *first* window
batch, and adds it for every window; an importance map that differs per window (shape ``(N, 1, *roi)``) either
fails to broadcast or is normalised by the wrong count. The extra weight channel is the equivalent hook that stays
exact.

Candidate-mask gate (``mask_gate=True``, the default): when the caller passes ``mask=`` (e.g. the dilated lung
envelope of :py:class:`bundle.transforms.lung.LungCandidateMaskd`, which the evaluator already uses to drop lesions
centred outside it), a window that holds no mask voxel is LOW without being screened. Every mask voxel still lies in
at least one window that ran, so a lesion inside the mask is never lost to the gate; only its blend may use fewer
windows. The router's tissue gate (``SuspicionRouter(tissue_threshold=...)``) does the same from the image alone.
With the mask gate, only the box of the windows holding a mask voxel (:py:func:`bundle.inferers.windows.gate_box`)
is stitched, the rest of the output being background: MONAI's grid over that box is the same windows, so the result
is the same, and the stitching buffers shrink with the box (63 % of the embedded chest CT).

Without routing (``routing=False``, a disabled router, or a network without ``screen`` such as a TorchScript module
or a MONAI baseline, e.g. MONAI Label's ``inferer(inputs, network)``) the predictor simply forwards every window, so
the output is exactly :py:func:`monai.inferers.sliding_window_inference` of the network (with ``fold_batchnorm=True``,
of its BatchNorm-folded copy: equal up to float rounding).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from monai.data.meta_tensor import MetaTensor
from monai.inferers import Inferer, sliding_window_inference
from monai.utils import BlendMode, PytorchPadMode, convert_to_dst_type, ensure_tuple_rep, look_up_option
from torch.nn.parallel import DistributedDataParallel

from bundle.inferers.router import SuspicionRouter, get_screen
from bundle.inferers.stats import summarise_windows, tier_map
from bundle.inferers.windows import gate_box, lesion_logit, run_windows, windows_outside
from bundle.tiers import RoutingTier
from bundle.networks.bn_folding import count_batchnorm, fold_batchnorm

__all__ = ["RoutedSlidingWindowInferer"]

logger = logging.getLogger(__name__)

ENHANCEMENTS = ("full", "basic")


class RoutedSlidingWindowInferer(Inferer):
    """
    Sliding-window inference in which a router decides, per window, whether to run the full network, its cheaper
    "basic" path, or nothing (constant background logits). See the module docstring for the blending scheme.

    The network is expected to implement ``forward(x, enhancement="full"|"basic") -> (N, out_channels, *roi)``
    and ``screen(x) -> (N,)`` (as ``bundle.networks.GhostCAUNet`` does). A network without ``screen`` runs with
    routing off and is called as ``network(x)``.

    Args:
        roi_size: window size, an int or one positive int per spatial dimension.
        sw_batch_size: number of windows scored and forwarded together. Defaults to 4.
        overlap: overlap between windows along each spatial dimension, in [0, 1). Defaults to 0.25.
        mode: blending of overlapping windows, ``"constant"`` or ``"gaussian"``. Defaults to ``"gaussian"``.
        sigma_scale: Gaussian sigma as a fraction of the window size when ``mode="gaussian"``. Defaults to 0.125.
        router: the window router; defaults to ``SuspicionRouter()``.
        routing: False forwards every window with ``high_enhancement``, like plain sliding window. Defaults to True.
        high_enhancement: ``enhancement`` for HIGH windows. Defaults to ``"full"``.
        medium_enhancement: ``enhancement`` for MEDIUM windows. Defaults to ``"basic"``.
        background_logits: logits given to skipped windows, one per output channel; their length must equal the
            network's ``out_channels``. Defaults to ``(10.0, -10.0)`` (confident background for 2 classes).
        padding_mode: padding mode when ``roi_size`` is larger than the input. Defaults to ``"constant"``.
        cval: fill value for constant padding. Defaults to 0.0.
        sw_device: device of the windows (and the network). Defaults to the input's device.
        device: device of the stitched output. Defaults to the input's device.
        progress: show a tqdm progress bar over window batches. Defaults to False.
        mask_gate: with routing on and a ``mask`` passed to :py:meth:`__call__`, windows without a mask voxel are
            LOW (not screened, not run). Defaults to True.
        fold_batchnorm: run (and screen with) a copy of an eval-mode ``nn.Module`` network in which BatchNorm is
            folded into the preceding convolutions (:py:func:`bundle.networks.bn_folding.fold_batchnorm`): the same
            function up to float rounding, one pass less over every activation on CPU. The network itself is not
            modified. Defaults to False (routing off then equals plain sliding window of the network exactly).
        foreground_channel: with a 2-channel network, stitch the lesion logit ``l[foreground_channel] - l[other]``
            of each window and return ``(B, 1, *spatial)``, whose sigmoid is that channel's softmax (blending is
            linear: equal up to rounding), in half the memory. None returns every channel. Defaults to None.

    Attributes:
        last_stats: statistics of the last call, a dict with ``routing`` (bool), ``num_windows``, ``num_high``,
            ``num_medium``, ``num_low``, ``num_gated`` (LOW windows that the mask gate or the router's tissue gate
            skipped without screening), ``windows`` (list of ``{"batch": b, "slices": [[start, stop], ...],
            "score": float | None, "tier": int}``, slices in input coordinates), ``time_screen_s``,
            ``time_high_s``, ``time_medium_s``, ``seconds_per_window`` (``screen``/``high``/``medium``, None when
            unmeasured), ``skipped_fraction`` (LOW windows / all windows), ``compute_saved_fraction``
            (``1 - (screen + high + medium time) / (num_windows * per-window reference time)``; negative when
            screening cost more than it saved; None when no window ran) and ``compute_saved_reference``: ``"high"``
            (the measured per-window HIGH time), ``"medium"`` (no HIGH window ran: the MEDIUM time is used, so the
            fraction is a lower bound) or None.
        last_tier_map: ``torch.uint8`` tensor of the input's spatial shape: per voxel, the highest tier of any window
            covering it (for a batch of several images, the maximum over the batch).

    Raises:
        TypeError: when ``roi_size``, ``sw_batch_size``, ``routing`` or ``background_logits`` has the wrong type.
        ValueError: when ``roi_size`` / ``sw_batch_size`` is not positive, ``overlap`` is outside [0, 1),
            ``background_logits`` is empty, ``foreground_channel`` is set without exactly two
            ``background_logits`` or is not 0 or 1, or ``mode``, ``padding_mode`` or an enhancement is not a
            known option.

    Example::

        inferer = RoutedSlidingWindowInferer(roi_size=(96, 96, 96), sw_batch_size=4)
        with torch.no_grad():
            logits = inferer(image, network)  # (B, 2, D, H, W)
        inferer.last_stats["skipped_fraction"], inferer.last_tier_map.shape
    """

    def __init__(
        self,
        roi_size: Sequence[int] | int,
        sw_batch_size: int = 4,
        overlap: Sequence[float] | float = 0.25,
        mode: BlendMode | str = BlendMode.GAUSSIAN,
        sigma_scale: Sequence[float] | float = 0.125,
        router: SuspicionRouter | None = None,
        routing: bool = True,
        high_enhancement: str = "full",
        medium_enhancement: str = "basic",
        background_logits: Sequence[float] = (10.0, -10.0),
        padding_mode: PytorchPadMode | str = PytorchPadMode.CONSTANT,
        cval: float = 0.0,
        sw_device: torch.device | str | None = None,
        device: torch.device | str | None = None,
        progress: bool = False,
        mask_gate: bool = True,
        fold_batchnorm: bool = False,
        foreground_channel: int | None = None,
    ) -> None:
        super().__init__()
        roi_tuple = (roi_size,) if isinstance(roi_size, int) else tuple(roi_size)
        if not roi_tuple or any(isinstance(r, bool) or not isinstance(r, int) for r in roi_tuple):
            raise TypeError(f"roi_size must be an int or a non-empty sequence of ints, got roi_size={roi_size!r}.")
        if any(r <= 0 for r in roi_tuple):
            raise ValueError(f"roi_size must be positive in every dimension, got roi_size={roi_size!r}.")
        if isinstance(sw_batch_size, bool) or not isinstance(sw_batch_size, int):
            raise TypeError(f"sw_batch_size must be an int, got sw_batch_size={sw_batch_size!r}.")
        if sw_batch_size < 1:
            raise ValueError(f"sw_batch_size must be >= 1, got sw_batch_size={sw_batch_size}.")
        overlap_tuple = (overlap,) if isinstance(overlap, (int, float)) else tuple(overlap)
        if not overlap_tuple or any(not 0.0 <= float(o) < 1.0 for o in overlap_tuple):
            raise ValueError(f"overlap must be in [0, 1) in every dimension, got overlap={overlap!r}.")
        for name, flag in (("routing", routing), ("mask_gate", mask_gate), ("fold_batchnorm", fold_batchnorm)):
            if not isinstance(flag, bool):
                raise TypeError(f"{name} must be a bool, got {name}={flag!r}.")
        if isinstance(background_logits, (str, bytes)) or not isinstance(background_logits, Sequence):
            raise TypeError(f"background_logits must be a sequence of floats, got {background_logits!r}.")
        if len(background_logits) == 0:
            raise ValueError("background_logits must hold one logit per output channel, got an empty sequence.")
        if foreground_channel is not None and (len(background_logits) != 2 or foreground_channel not in (0, 1)):
            raise ValueError(
                "foreground_channel needs a 2-channel network (two background_logits) and must be 0 or 1, got "
                f"foreground_channel={foreground_channel!r} with background_logits={tuple(background_logits)!r}."
            )
        self.roi_size = roi_size
        self.sw_batch_size = sw_batch_size
        self.overlap = overlap
        self.mode = look_up_option(mode, BlendMode)
        self.sigma_scale = sigma_scale
        self.router = SuspicionRouter() if router is None else router
        self.routing = routing
        self.high_enhancement = look_up_option(high_enhancement, ENHANCEMENTS)
        self.medium_enhancement = look_up_option(medium_enhancement, ENHANCEMENTS)
        self.background_logits = tuple(float(v) for v in background_logits)
        self.padding_mode = look_up_option(padding_mode, PytorchPadMode)
        self.cval = cval
        self.sw_device = sw_device
        self.device = device
        self.progress = progress
        self.mask_gate = mask_gate
        self.fold_batchnorm = fold_batchnorm
        self.foreground_channel = foreground_channel
        self._folded: tuple[Any, torch.nn.Module] | None = None
        self.last_stats: dict[str, Any] = {}
        self.last_tier_map: torch.Tensor | None = None
        self._warned_no_screen = False

    def __call__(
        self,
        inputs: torch.Tensor,
        network: Callable[..., Any],
        *args: Any,
        mask: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> torch.Tensor:
        """
        Args:
            inputs: image batch in shape (B, C, spatial_1[, spatial_2, ...]).
            network: the network; see the class docstring for the expected interface.
            mask: optional candidate mask, (B or 1, 1, *spatial), (1, *spatial) or (*spatial); > 0 is candidate.
                Used only with routing on and ``mask_gate``; never passed to the network.
            args: optional positional args passed to every ``network`` forward.
            kwargs: optional keyword args passed to every ``network`` forward.

        Returns:
            stitched logits in shape (B, out_channels, spatial_1[, spatial_2, ...]); (B, 1, ...) lesion logits with
            ``foreground_channel``.

        Raises:
            ValueError: when ``roi_size`` does not match the input's number of spatial dimensions, ``mask`` does not
                match the input's spatial shape, ``network.screen``
                does not return one score per window, or the network's output is not (N, out_channels, *roi) with
                ``out_channels == len(background_logits)``.
            TypeError: when, with routing on, the network returns something other than a tensor.
        """
        spatial_shape = tuple(inputs.shape[2:])
        roi = tuple(ensure_tuple_rep(self.roi_size, len(spatial_shape))) if isinstance(self.roi_size, int) else None
        if roi is None:
            roi = tuple(self.roi_size)  # type: ignore[arg-type]
            if len(roi) != len(spatial_shape):
                raise ValueError(
                    f"roi_size must have one entry per spatial dimension of inputs {tuple(inputs.shape)} "
                    f"(B, C, *spatial), got roi_size={self.roi_size!r}."
                )
        network = self._inference_copy(network)
        # the contract network (forward takes `enhancement`) is recognised by its `screen`
        takes_enhancement = get_screen(network) is not None
        routed = self.routing and self.router.enabled
        if routed and not takes_enhancement:
            if not self._warned_no_screen:
                logger.warning("network %s has no `screen` method: routing is off.", type(network).__name__)
                self._warned_no_screen = True
            routed = False

        gate = self._mask_per_batch(mask, inputs) if routed and self.mask_gate and mask is not None else None
        record: dict[str, Any] = {
            "windows": [], "time_screen_s": 0.0, "time_high_s": 0.0, "time_medium_s": 0.0, "num_gated": 0
        }
        # with the gate, only the box of the windows holding a mask voxel is stitched: the same windows, blended
        # the same way (MONAI's grid restricted to that box is the same grid), the rest is gated background
        box = gate_box(gate.any(dim=0), roi, self.overlap) if gate is not None else None
        run_inputs = inputs
        if box is not None:
            crop = tuple(slice(a, b) for a, b in box)
            plain = inputs.as_tensor() if isinstance(inputs, MetaTensor) else inputs
            run_inputs = plain[(slice(None), slice(None), *crop)]
            gate = gate[(slice(None), *crop)]
            low = int(RoutingTier.LOW)  # the windows outside the box hold no mask voxel: gated, unscreened
            outside = windows_outside(spatial_shape, roi, self.overlap, box)
            record["windows"] = [
                {"batch": b, "slices": [list(s) for s in slices], "score": None, "tier": low}
                for b in range(inputs.shape[0])
                for slices in outside
            ]
            record["num_gated"] = len(record["windows"])
        offset = tuple(a for a, _ in box) if box is not None else (0,) * len(spatial_shape)
        run_shape = tuple(run_inputs.shape[2:])
        # (start offset of the unpadded image inside MONAI's padded image, per spatial axis)
        pad_before = tuple(max(r - s, 0) // 2 for r, s in zip(roi, run_shape))

        def unpadded(coord: list[slice]) -> list[list[int]]:
            return [
                [min(max(c.start - p, 0), s), min(max(c.stop - p, 0), s)]
                for c, p, s in zip(coord[2:], pad_before, run_shape)
            ]

        def add_windows(coords: list[list[slice]], scores: list[float | None], tiers: list[int]) -> None:
            for coord, score, tier in zip(coords, scores, tiers):
                slices = [[a + o, b + o] for (a, b), o in zip(unpadded(coord), offset)]
                record["windows"].append({"batch": coord[0].start, "slices": slices, "score": score, "tier": tier})

        def screened(coords: list[list[slice]], win_data: torch.Tensor) -> torch.Tensor:
            """(N,) bool: the window passes the mask gate and the router's tissue gate, so it is screened."""
            keep = torch.ones(len(coords), dtype=torch.bool, device=win_data.device)
            if gate is not None:
                inside = [bool(gate[(c[0].start, *(slice(a, b) for a, b in unpadded(c)))].any()) for c in coords]
                keep &= torch.tensor(inside, dtype=torch.bool, device=win_data.device)
            tissue_gate = getattr(self.router, "tissue_gate", None)
            if callable(tissue_gate):
                keep &= tissue_gate(win_data).to(keep.device)
            return keep

        def plain_predictor(win_data: torch.Tensor, coords: list[list[slice]], *a: Any, **kw: Any) -> Any:
            start = time.perf_counter()
            if takes_enhancement:
                out = run_windows(network, win_data, *a, enhancement=self.high_enhancement, **kw)
            else:
                out = network(win_data, *a, **kw)
            if self.foreground_channel is not None:
                out = lesion_logit(out, self.foreground_channel)
            record["time_high_s"] += time.perf_counter() - start
            add_windows(coords, [None] * len(coords), [int(RoutingTier.HIGH)] * len(coords))
            return out

        def routed_predictor(win_data: torch.Tensor, coords: list[list[slice]], *a: Any, **kw: Any) -> torch.Tensor:
            start = time.perf_counter()
            num, out_channels = win_data.shape[0], len(self.background_logits)
            kept_channels = len(self._output_background)
            keep_screen = screened(coords, win_data)
            index = torch.nonzero(keep_screen, as_tuple=True)[0]
            tiers = torch.full((num,), int(RoutingTier.LOW), dtype=torch.long, device=win_data.device)
            window_scores: list[float | None] = [None] * num
            if index.numel() > 0:
                scores = self.router.score(network, win_data if index.numel() == num else win_data[index])
                tiers[index] = self.router.tiers(scores).to(win_data.device)
                for i, value in zip(index.tolist(), scores.detach().float().cpu().tolist()):
                    window_scores[i] = value
            record["time_screen_s"] += time.perf_counter() - start
            record["num_gated"] += num - index.numel()
            logits = win_data.new_zeros((num, kept_channels, *win_data.shape[2:]))  # (N, C_kept, *roi)
            for tier, enhancement, key in (
                (RoutingTier.HIGH, self.high_enhancement, "time_high_s"),
                (RoutingTier.MEDIUM, self.medium_enhancement, "time_medium_s"),
            ):
                index = torch.nonzero(tiers == int(tier), as_tuple=True)[0]
                if index.numel() == 0:
                    continue
                start = time.perf_counter()
                out = run_windows(network, win_data[index], *a, enhancement=enhancement, **kw)
                record[key] += time.perf_counter() - start
                if not isinstance(out, torch.Tensor):
                    raise TypeError(
                        f"with routing on, network must return a tensor, got {type(out).__name__} "
                        f"for enhancement={enhancement!r}."
                    )
                if out.shape != (index.numel(), out_channels, *win_data.shape[2:]):
                    raise ValueError(
                        f"network output must be (N, out_channels, *roi) = {(index.numel(), out_channels)} + "
                        f"{tuple(win_data.shape[2:])} with out_channels == len(background_logits) = {out_channels}, "
                        f"got {tuple(out.shape)}."
                    )
                out = out if self.foreground_channel is None else lesion_logit(out, self.foreground_channel)
                logits[index] = out.to(logits.dtype)
            keep = (tiers > int(RoutingTier.LOW)).to(logits.dtype).view(num, 1, *[1] * (win_data.ndim - 2))
            add_windows(coords, window_scores, tiers.cpu().tolist())
            # skipped windows contribute 0 to both parts; (N, C_kept + 1, *roi)
            return torch.cat([logits * keep, keep.expand(num, 1, *win_data.shape[2:])], dim=1)

        stitched = sliding_window_inference(
            run_inputs,
            roi,
            self.sw_batch_size,
            routed_predictor if routed else plain_predictor,
            self.overlap,
            self.mode,
            self.sigma_scale,
            self.padding_mode,
            self.cval,
            self.sw_device,
            self.device,
            self.progress,
            None,  # roi_weight_map
            None,  # process_fn
            None,  # buffer_steps
            -1,  # buffer_dim
            True,  # with_coord
            *args,
            **kwargs,
        )
        result = self._blend(stitched) if routed else stitched
        if box is not None:
            result = self._paste(result, inputs, box)
            record["windows"].sort(key=lambda w: (w["batch"], [a for a, _ in w["slices"]]))  # MONAI's order
        self.last_stats = summarise_windows(record, routed)
        self.last_tier_map = tier_map(record["windows"], spatial_shape, result.device)
        return result  # type: ignore[no-any-return]

    @property
    def _output_background(self) -> tuple[float, ...]:
        """The logits the output holds for skipped windows and outside the gated box, one per output channel."""
        bg, f = self.background_logits, self.foreground_channel
        return bg if f is None else (bg[f] - bg[1 - f],)

    def _inference_copy(self, network: Callable[..., Any]) -> Callable[..., Any]:
        """``network`` with BatchNorm folded when ``fold_batchnorm`` applies (a plain eval-mode ``nn.Module`` that
        has BatchNorm layers; not a TorchScript module or a DataParallel wrapper), else ``network`` itself."""
        if (
            not self.fold_batchnorm
            or not isinstance(network, torch.nn.Module)
            or isinstance(network, (torch.jit.ScriptModule, torch.nn.DataParallel, DistributedDataParallel))
            or network.training
            or count_batchnorm(network) == 0
        ):
            return network
        # reuse the folded copy while the network's tensors are unchanged (same storage, no in-place update)
        tensors = (*network.parameters(), *network.buffers())
        key = (id(network), tuple((t.data_ptr(), -1 if t.is_inference() else t._version) for t in tensors))
        if self._folded is None or self._folded[0] != key:
            self._folded = (key, fold_batchnorm(network))
        return self._folded[1]

    def _paste(self, result: torch.Tensor, inputs: torch.Tensor, box: tuple[tuple[int, int], ...]) -> torch.Tensor:
        """The box's blended logits inside the whole image's, background elsewhere, with the input's metadata."""
        raw = result.as_tensor() if isinstance(result, MetaTensor) else result
        full = raw.new_empty((raw.shape[0], raw.shape[1], *inputs.shape[2:]))
        for channel, value in enumerate(self._output_background):
            full[:, channel].fill_(value)
        full[(slice(None), slice(None), *(slice(a, b) for a, b in box))] = raw
        del raw, result
        if isinstance(inputs, MetaTensor):
            return convert_to_dst_type(full, MetaTensor([]).copy_meta_from(inputs, copy_attr=False))[0]
        return full

    @staticmethod
    def _mask_per_batch(mask: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        """The candidate mask as a CPU bool tensor (B, *spatial), one per input image.

        Raises:
            ValueError: when ``mask`` is not (B or 1, 1, *spatial), (1, *spatial) or (*spatial) for the input's
                spatial shape.
        """
        batch, spatial = inputs.shape[0], tuple(inputs.shape[2:])
        raw = torch.as_tensor(mask.as_tensor() if isinstance(mask, MetaTensor) else mask).detach()
        if tuple(raw.shape[-len(spatial) :]) != spatial or raw.numel() not in (
            math.prod(spatial),
            batch * math.prod(spatial),
        ):
            raise ValueError(
                f"mask must be (B or 1, 1, *spatial), (1, *spatial) or (*spatial) for inputs {tuple(inputs.shape)}, "
                f"got mask.shape={tuple(raw.shape)}."
            )
        gate = (raw > 0).reshape(-1, *spatial).cpu()  # (1 or B, *spatial)
        return gate.expand(batch, *spatial) if gate.shape[0] == 1 else gate

    def _blend(self, stitched: torch.Tensor) -> torch.Tensor:
        """``sum(w k p) / sum(w k)`` from the stitched (B, C + 1, *spatial); background where ``sum(w k) = 0``.

        Done in place in MONAI's freshly allocated output (never the caller's data): the result is a view of its
        first ``C_out`` channels, so blending needs one boolean map more instead of three float copies of the
        volume (about 0.5 GB on a 512 x 512 x 600 CT).
        """
        raw = stitched.as_tensor() if isinstance(stitched, MetaTensor) else stitched
        num_channels = len(self._output_background)
        logits, weight = raw[:, :num_channels], raw[:, num_channels:]  # (B, C, *S), (B, 1, *S)
        uncovered = (weight > 0).logical_not_()  # also NaN weights, as torch.where(weight > 0, ...) would
        logits.div_(weight.clamp_min_(torch.finfo(raw.dtype).tiny))
        for channel, value in enumerate(self._output_background):
            logits[:, channel : channel + 1].masked_fill_(uncovered, value)
        return convert_to_dst_type(logits, stitched)[0]  # type: ignore[no-any-return]
