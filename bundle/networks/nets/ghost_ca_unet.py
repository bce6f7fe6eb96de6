"""GhostCAUNet: a small U-Net with Ghost convolutions, Coordinate Attention and a cheap screening pass.

References:
    - Han et al., "GhostNet: More Features from Cheap Operations", CVPR 2020, https://arxiv.org/abs/1911.11907
    - Hou et al., "Coordinate Attention for Efficient Mobile Network Design", CVPR 2021,
      https://arxiv.org/abs/2103.02907
    - MONAI ``BasicUNet`` / ``UpCat`` for the U-Net layout and the odd-size padding rule.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from monai.networks.blocks import Convolution, UpSample
from monai.networks.layers.factories import Conv, Pool
from monai.networks.nets.basic_unet import TwoConv
from monai.utils import ensure_tuple_rep, look_up_option

from bundle.networks.blocks.coord_attention import CoordinateAttention
from bundle.networks.blocks.ghost import GhostConvBlock
from bundle.networks.nets.screen_calibration import calibrate_prototype_screen

__all__ = ["GhostCAUNet"]


_UPSAMPLE_MODES = ("deconv", "pixelshuffle", "nontrainable")


class _UpStage(nn.Module):
    """Decoder stage: upsample x2, pad/crop to the skip (MONAI ``UpCat`` rule), concat, double conv, optional CA."""

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        convs: nn.Module,
        ca: nn.Module | None,
        upsample: str,
        bias: bool,
    ) -> None:
        super().__init__()
        self.upsample = UpSample(spatial_dims, in_channels, out_channels, 2, mode=upsample, bias=bias)
        self.convs = convs  # (2 * out_channels) -> out_channels
        self.has_ca = ca is not None
        self.ca = ca if ca is not None else nn.Identity()

    def forward(self, x: torch.Tensor, skip: torch.Tensor, use_ca: bool) -> torch.Tensor:
        x = self.upsample(x)  # (B, C_out, 2 * S_low)
        n = skip.dim() - 2
        # odd input sizes: 2 * floor(S / 2) = S - 1, so pad the end by replicate (as UpCat) or crop when larger
        pads: list[int] = [0] * (2 * n)
        for i in range(n):
            pads[2 * i + 1] = max(int(skip.shape[-i - 1]) - int(x.shape[-i - 1]), 0)  # F.pad lists the last dim first
        if sum(pads) > 0:
            x = F.pad(x, pads, mode="replicate")
        for i in range(n):
            x = x.narrow(2 + i, 0, int(skip.shape[2 + i]))  # no-op unless x is larger than the skip
        x = self.convs(torch.cat([skip, x], dim=1))  # (B, 2 * C_out, *S) -> (B, C_out, *S)
        if self.has_ca and use_ca:
            x = self.ca(x)
        return x


class GhostCAUNet(nn.Module):
    """
    U-Net for small-lesion segmentation on CPU, with Ghost modules in selected levels, Coordinate Attention (CA)
    in selected decoder stages, an optional "basic" (CA-free) forward, and a cheap screening pass that scores how
    suspicious a window is (edge + semantic score) so a routed sliding-window inferer can skip dull windows.

    Layout (``L = len(features)``): encoder level 0 works at full resolution (``1 / stem_stride`` with a strided
    stem), level ``l`` after ``l`` 2x max-pools, level ``L - 1`` is the bottleneck; each level has two 3x3(x3)
    conv-norm-act layers. Decoder stages are numbered ``1 .. L - 1`` from the deepest; stage ``s`` works at level
    ``L - 1 - s``: upsample, concatenate the skip, two convs. A 1x1 conv head gives the logits, after a light
    full-resolution refinement when the stem is strided. For levels in ``ghost_levels`` both the encoder convs and
    the decoder-stage convs at that level are Ghost modules. The class defaults are release 0.6.0's layout (4 of 14
    convs Ghost, 0.64 M parameters); the shipped layout (``configs/inference.json``) is the light one:
    ``stem_stride=(2, 2, 1)``, ``features=(8, 16, 48, 96)``, ``refine_channels=4``, ``learned_screen=True``
    (docs/network.md).

    Args:
        spatial_dims: number of spatial dimensions, 2 or 3. Defaults to 3.
        in_channels: number of input channels. Defaults to 1.
        out_channels: number of output channels (classes, incl. background). Defaults to 2.
        features: channels per level, level 0 first; at least 2 levels. Defaults to ``(8, 24, 48, 96)``: level 0 (full
            resolution) dominates CPU time, so it stays narrow while deeper levels carry the capacity.
        ghost_levels: 0-based levels whose convs are Ghost modules. Defaults to ``(2,)``.
        ghost_ratio: Ghost ratio. Defaults to 2.
        ghost_dw_size: Ghost depthwise kernel size (odd). Defaults to 3.
        ca_stages: 1-based decoder stages followed by Coordinate Attention. Defaults to ``(3,)``.
        ca_reduction: CA bottleneck reduction ratio. Defaults to 8.
        ca_drop_prob: training only: probability (per forward) of skipping all CA blocks, so that the
            "basic" mode stays accurate. Uses the global torch RNG, like ``nn.Dropout``. Defaults to 0.0.
        ca_gate_bias: initial bias of the CA gates (None: PyTorch default); positive starts CA near identity.
            Defaults to 2.0.
        act: activation type and arguments. Defaults to ``("relu", {"inplace": True})``.
        norm: normalization type and arguments. Defaults to ``"batch"`` (an affine map at inference; instance
            norm costs 3-8x more CPU time in 3D).
        bias: bias in the standard convolutions and the upsampling. Defaults to True.
        dropout: dropout ratio in every conv block. Defaults to 0.0.
        upsample: ``"deconv"``, ``"pixelshuffle"`` or ``"nontrainable"`` (MONAI ``UpSample``). Defaults to "deconv".
        edge_weight: weight of the edge score in :py:meth:`screen`. Defaults to 0.6.
        semantic_weight: weight of the semantic score in :py:meth:`screen`. Defaults to 0.4.
        screen_downsample: average-pooling factor applied to the window before screening. Defaults to 2.
        screen_quantile: quantile of the level-0 feature-gradient magnitude used as the raw edge value.
            Defaults to 0.99.
        channels_last: keep weights and activations in channels-last layout (oneDNN's fast path on CPU; the
            output values are the same). Defaults to True.
        stem_stride: stride of the first convolution (int or one per axis). With a stride > 1 the encoder never
            convolves the full-resolution volume: level 0 works at ``1 / stem_stride``, and a light full-resolution
            refinement (upsample, concatenate the input, one 3x3(x3) conv of ``refine_channels``) precedes the head.
            Defaults to 1 (the original layout, no refinement).
        refine_channels: channels of the full-resolution refinement conv (only used when ``stem_stride`` > 1).
            Defaults to 8.
        learned_screen: the screen reads two trained 1x1 heads instead of the calibrated prototype: ``edge`` from
            the level-0 (shallow) features, ``semantic`` from the bottleneck features, each the sigmoid of the
            maximum logit over positions. Train them with ``bundle.engines.screen_training``. Defaults to False.
        head_prior: initial foreground probability of the head, RetinaNet's prior initialisation: its bias makes
            ``p(foreground) = head_prior`` before training (2 channels: biases ``(0, logit(p))``; 1 channel:
            ``logit(p)``), so a soft Dice has a gradient from the first step instead of after the background has
            been pushed down from 0.5. None keeps PyTorch's default. Defaults to None.

    Raises:
        ValueError: on any argument outside its range (each message names the argument and the value).

    Examples::

        >>> net = GhostCAUNet(spatial_dims=3, in_channels=1, out_channels=2)
        >>> x = torch.randn(1, 1, 33, 34, 35)
        >>> net(x).shape, net(x, enhancement="basic").shape, net.screen(x).shape
        (torch.Size([1, 2, 33, 34, 35]), torch.Size([1, 2, 33, 34, 35]), torch.Size([1]))
    """

    def __init__(
        self,
        spatial_dims: int = 3,
        in_channels: int = 1,
        out_channels: int = 2,
        features: Sequence[int] = (8, 24, 48, 96),
        ghost_levels: Sequence[int] = (2,),
        ghost_ratio: int = 2,
        ghost_dw_size: int = 3,
        ca_stages: Sequence[int] = (3,),
        ca_reduction: int = 8,
        ca_drop_prob: float = 0.0,
        ca_gate_bias: float | None = 2.0,
        act: str | tuple = ("relu", {"inplace": True}),
        norm: str | tuple = "batch",
        bias: bool = True,
        dropout: float | tuple = 0.0,
        upsample: str = "deconv",
        edge_weight: float = 0.6,
        semantic_weight: float = 0.4,
        screen_downsample: int = 2,
        screen_quantile: float = 0.99,
        channels_last: bool = True,
        stem_stride: int | Sequence[int] = 1,
        refine_channels: int = 8,
        learned_screen: bool = False,
        head_prior: float | None = None,
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got spatial_dims={spatial_dims!r}.")
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels),
                            ("screen_downsample", screen_downsample)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive int, got {name}={value!r}.")
        features = tuple(features)
        if len(features) < 2 or any(isinstance(f, bool) or not isinstance(f, int) or f <= 0 for f in features):
            raise ValueError(f"features must hold at least 2 positive ints, got features={features!r}.")
        n_levels = len(features)
        ghost_levels = tuple(ghost_levels)
        if any(not isinstance(g, int) or not 0 <= g < n_levels for g in ghost_levels):
            raise ValueError(f"ghost_levels must be ints in [0, {n_levels - 1}], got ghost_levels={ghost_levels!r}.")
        ca_stages = tuple(ca_stages)
        if any(not isinstance(s, int) or not 1 <= s < n_levels for s in ca_stages):
            raise ValueError(f"ca_stages must be ints in [1, {n_levels - 1}], got ca_stages={ca_stages!r}.")
        if not 0.0 <= ca_drop_prob <= 1.0:
            raise ValueError(f"ca_drop_prob must be in [0, 1], got ca_drop_prob={ca_drop_prob!r}.")
        if edge_weight < 0 or semantic_weight < 0 or edge_weight + semantic_weight > 1.0 + 1e-9:
            raise ValueError(
                "edge_weight and semantic_weight must be >= 0 with edge_weight + semantic_weight <= 1, got "
                f"edge_weight={edge_weight!r}, semantic_weight={semantic_weight!r}."
            )
        if not 0.0 < screen_quantile <= 1.0:
            raise ValueError(f"screen_quantile must be in (0, 1], got screen_quantile={screen_quantile!r}.")
        upsample = look_up_option(upsample, _UPSAMPLE_MODES)
        stem = ensure_tuple_rep(stem_stride, spatial_dims)
        if any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in stem):
            raise ValueError(f"stem_stride must be positive ints, got stem_stride={stem_stride!r}.")
        if isinstance(refine_channels, bool) or not isinstance(refine_channels, int) or refine_channels <= 0:
            raise ValueError(f"refine_channels must be a positive int, got refine_channels={refine_channels!r}.")
        if head_prior is not None and (out_channels > 2 or not 0.0 < head_prior < 1.0):
            raise ValueError(f"head_prior needs 1 or 2 output channels and 0 < head_prior < 1, got head_prior="
                             f"{head_prior!r} with out_channels={out_channels}.")  # fmt: skip

        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.num_levels = n_levels
        self.stem_stride = tuple(int(v) for v in stem)
        self.strided_stem = any(v > 1 for v in stem)
        self.deep_stride = [v * 2 ** (n_levels - 1) for v in stem]  # bottleneck stride w.r.t. the input, per axis
        self.learned_screen = bool(learned_screen)
        # with a strided stem the deep layers are small enough that PyTorch runs a batch of one on its slow conv3d
        # path; the routed inferer then runs single windows in pairs (bundle.inferers.windows.run_windows)
        self.pair_single_windows = self.strided_stem
        self.features = features
        self.ca_drop_prob = float(ca_drop_prob)
        self.edge_weight = float(edge_weight)
        self.semantic_weight = float(semantic_weight)
        self.screen_downsample = screen_downsample
        self.screen_quantile = float(screen_quantile)

        def conv_block(level: int, c_in: int) -> nn.Module:
            if level in ghost_levels:
                return GhostConvBlock(spatial_dims, c_in, features[level], ratio=ghost_ratio, dw_size=ghost_dw_size,
                                      act=act, norm=norm, dropout=dropout)
            return TwoConv(spatial_dims, c_in, features[level], act, norm, bias, dropout)

        pool = Pool[Pool.MAX, spatial_dims]
        if self.strided_stem:  # standard convs: the stem's strided conv sets what level 0 can resolve
            level0: nn.Module = nn.Sequential(
                Convolution(spatial_dims, in_channels, features[0], strides=stem, kernel_size=3, act=act, norm=norm,
                            dropout=dropout, bias=bias),
                Convolution(spatial_dims, features[0], features[0], kernel_size=3, act=act, norm=norm,
                            dropout=dropout, bias=bias),
            )
        else:
            level0 = conv_block(0, in_channels)
        self.encoder = nn.ModuleList(
            [level0]
            + [nn.Sequential(pool(kernel_size=2), conv_block(lvl, features[lvl - 1])) for lvl in range(1, n_levels)]
        )
        stages = []
        for stage in range(1, n_levels):
            lvl = n_levels - 1 - stage
            ca = (CoordinateAttention(spatial_dims, features[lvl], reduction=ca_reduction, gate_bias=ca_gate_bias)
                  if stage in ca_stages else None)
            stages.append(_UpStage(spatial_dims, features[lvl + 1], features[lvl],
                                   conv_block(lvl, 2 * features[lvl]), ca, upsample, bias))
        self.decoder = nn.ModuleList(stages)
        self.refine = (
            Convolution(spatial_dims, features[0] + in_channels, refine_channels, kernel_size=3, act=act, norm=norm,
                        bias=bias)
            if self.strided_stem else nn.Identity()
        )
        head_in = refine_channels if self.strided_stem else features[0]
        self.head = Conv[Conv.CONV, spatial_dims](head_in, out_channels, kernel_size=1)
        if head_prior is not None:
            with torch.no_grad():
                self.head.bias.zero_()
                self.head.bias[-1] = math.log(head_prior / (1.0 - head_prior))
        conv1 = Conv[Conv.CONV, spatial_dims]
        self.edge_head = conv1(features[0], 1, kernel_size=1) if self.learned_screen else nn.Identity()
        self.semantic_head = conv1(features[-1], 1, kernel_size=1) if self.learned_screen else nn.Identity()

        self.num_convs = 2 * n_levels + 2 * (n_levels - 1) + (1 if self.strided_stem else 0)  # + the refinement
        self.num_ghost_convs = sum(2 + (2 if lvl < n_levels - 1 else 0) for lvl in set(ghost_levels))
        self.screen_pool = (Pool[Pool.AVG, spatial_dims](kernel_size=screen_downsample, ceil_mode=True)
                            if screen_downsample > 1 else nn.Identity())
        # screening state, saved in the state dict and set by calibrate_screening()
        self.register_buffer("prototype", torch.zeros(features[-1]))  # unit lesion direction; 0 = uncalibrated
        self.register_buffer("feature_center", torch.zeros(features[-1]))  # mean deep feature of the windows
        self.register_buffer("edge_scale", torch.tensor(1.0))  # median raw edge value of the windows
        # oneDNN runs the depthwise (Ghost) and small dense convs several times faster in channels-last layout on CPU
        self.channels_last = bool(channels_last)
        if self.channels_last:
            self.to(memory_format=torch.channels_last_3d if spatial_dims == 3 else torch.channels_last)

    @property
    def ghost_fraction(self) -> float:
        """Ghost convolutions / all 3x3(x3) convolutions of encoder and decoder (the head is not counted)."""
        return self.num_ghost_convs / self.num_convs

    def _encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last_3d if self.spatial_dims == 3 else torch.channels_last)
        feats: list[torch.Tensor] = []
        for level in self.encoder:
            x = level(x)  # (B, features[l], *S / 2**l)
            feats.append(x)
        return feats

    def forward(self, x: torch.Tensor, enhancement: str = "full") -> torch.Tensor:
        """
        Args:
            x: input of shape (B, in_channels, *spatial); every spatial size >= 2 ** (len(features) - 1).
            enhancement: ``"full"`` applies Coordinate Attention, ``"basic"`` bypasses it (cheaper, but only by
                CA's ~6 elementwise ops per output element, about 0.1 % of the 3D default's FLOPs).

        Returns:
            logits of shape (B, out_channels, *spatial).

        Raises:
            ValueError: when ``enhancement`` is not ``"full"`` or ``"basic"``.
        """
        if enhancement != "full" and enhancement != "basic":
            raise ValueError("enhancement must be 'full' or 'basic', got enhancement='" + enhancement + "'.")
        use_ca = enhancement == "full"
        if use_ca and self.training and self.ca_drop_prob > 0.0:
            use_ca = bool(torch.rand(1) >= self.ca_drop_prob)
        feats = self._encode(x)
        y = feats[-1]
        for s, stage in enumerate(self.decoder):
            y = stage(y, feats[self.num_levels - 2 - s], use_ca)  # (B, features[l], *S / 2**l), l = L - 2 - s
        if self.strided_stem:  # back to the input grid: upsample, add the input's own detail, one light conv
            mode = "trilinear" if self.spatial_dims == 3 else "bilinear"
            y = F.interpolate(y, size=x.shape[2:], mode=mode, align_corners=False)
            y = self.refine(torch.cat([x.to(y.dtype), y], dim=1))
        return self.head(y)

    def _edge_raw(self, f0: torch.Tensor) -> torch.Tensor:
        """Raw edge value g: a high quantile of the level-0 feature-gradient magnitude, (B, C, *S) -> (B,)."""
        n = f0.dim() - 2
        sizes = [int(s) - 1 for s in f0.shape[2:]]  # a forward difference loses one position per axis
        squares: list[torch.Tensor] = []
        for i in range(n):
            d = f0.narrow(2 + i, 1, sizes[i]) - f0.narrow(2 + i, 0, sizes[i])  # difference along axis i
            for j in range(n):
                if j != i:
                    d = d.narrow(2 + j, 0, sizes[j])  # crop every axis: (B, C, *(S - 1))
            squares.append(d.pow(2).mean(dim=1))  # (B, *(S - 1)): channel-mean squared difference
        g = torch.stack(squares, dim=0).sum(dim=0).sqrt().flatten(1)  # (B, prod(S - 1)) gradient magnitude
        return torch.quantile(g, self.screen_quantile, dim=1)  # (B,)

    def _semantic_map(self, deep: torch.Tensor) -> torch.Tensor:
        """Clamped cosine similarity of centred deep feature vectors with the prototype, (B, C, *S) -> (B, N)."""
        v = deep.flatten(2) - self.feature_center.view(1, -1, 1)  # (B, C, N)
        v = F.normalize(v, dim=1)  # unit vectors per position
        proto = F.normalize(self.prototype, dim=0)  # (C,), zero vector stays zero
        return torch.einsum("bcn,c->bn", v, proto).clamp(0.0, 1.0)  # (B, N)

    def _check_screen_size(self, x: torch.Tensor) -> None:
        """Raise a clear ValueError when the downsampled window would leave no bottleneck position on an axis."""
        for size, stride in zip(x.shape[2:], self.deep_stride):
            if (int(size) + self.screen_downsample - 1) // self.screen_downsample // stride < 1:
                raise ValueError(
                    "x is too small to screen: every roi size / (screen_downsample * stem_stride * 2 ** "
                    "(len(features) - 1)) must be >= 1, got roi=" + str(x.shape[2:]) + "."
                )

    @torch.jit.export
    def screen_maps(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """
        Logit maps of the learned screen (``learned_screen=True``): encoder only, on the window average-pooled by
        ``screen_downsample``.

        Args:
            x: windows of shape (B, in_channels, *roi).

        Returns:
            ``(edge_logits, semantic_logits)``: (B, 1, *level-0 grid) from the shallow features and
            (B, 1, *bottleneck grid) from the deep features; a position's logit says "a lesion voxel lies here".

        Raises:
            ValueError: when the network was built without ``learned_screen`` or the window is too small.
        """
        if not self.learned_screen:
            raise ValueError("screen_maps needs learned_screen=True.")
        self._check_screen_size(x)
        feats = self._encode(self.screen_pool(x))
        return self.edge_head(feats[0]), self.semantic_head(feats[-1])

    @torch.jit.export
    def screen_components(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """
        Cheap suspicion components of each window: encoder only, on the window average-pooled by
        ``screen_downsample``.

        Args:
            x: windows of shape (B, in_channels, *roi); every ``roi / screen_downsample`` must stay
                >= 2 ** (L - 1) and the bottleneck must keep >= 2 positions (e.g. roi >= 16 x 16 x 32 by default).

        Returns:
            ``(edge, semantic)``, each of shape (B,) in [0, 1]: ``edge = 1 - exp(-g / edge_scale)`` with g the
            ``screen_quantile`` of the level-0 feature-gradient magnitude; ``semantic`` = max over bottleneck
            positions of the clamped cosine similarity to the lesion ``prototype`` (0 until calibrated).

        Raises:
            ValueError: when the window is too small for the screening encoder (see ``x``).
        """
        if self.learned_screen:
            edge_logits, semantic_logits = self.screen_maps(x)
            return torch.sigmoid(edge_logits.flatten(1).amax(1)), torch.sigmoid(semantic_logits.flatten(1).amax(1))
        self._check_screen_size(x)
        feats = self._encode(self.screen_pool(x))
        edge = 1.0 - torch.exp(-self._edge_raw(feats[0]) / self.edge_scale.clamp_min(1e-8))  # (B,)
        semantic = self._semantic_map(feats[-1]).amax(dim=1)  # (B,)
        return edge, semantic

    @torch.jit.export
    def screen(self, x: torch.Tensor) -> torch.Tensor:
        """
        Suspicion score of each window, ``edge_weight * edge + semantic_weight * semantic``.

        Args:
            x: windows of shape (B, in_channels, *roi).

        Returns:
            Tensor of shape (B,) in [0, 1].
        """
        edge, semantic = self.screen_components(x)
        return self.edge_weight * edge + self.semantic_weight * semantic

    @torch.jit.unused
    def calibrate_screening(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 4) -> dict[str, float]:
        """
        Set the screening buffers from training windows (deterministic; eval mode and no grad; the previous
        train/eval mode is restored). ``feature_center`` = mean bottleneck feature over all windows and positions,
        ``prototype`` = unit vector of (mean bottleneck feature at positions covering lesion voxels - centre),
        ``edge_scale`` = median raw edge value g over the windows. A network with ``learned_screen=True`` keeps
        its trained heads and buffers: it only measures the diagnostics.

        Args:
            images: windows of shape (N, in_channels, *roi).
            labels: lesion masks of shape (N, 1, *roi); > 0 is lesion.
            batch_size: windows per encoder pass. Defaults to 4.

        Returns:
            diagnostics: ``n_windows``, ``n_positive`` (windows with a lesion), ``edge_scale``, ``auc`` (ROC AUC of
            :py:meth:`screen` separating windows with from without lesions; NaN if one class is missing),
            ``auc_edge``, ``auc_semantic``, ``mean_score_positive``, ``mean_score_negative``.

        Raises:
            ValueError: when the shapes do not match, the windows are too small to screen, ``batch_size < 1``
                or the labels contain no lesion voxel.
        """
        return calibrate_prototype_screen(self, images, labels, batch_size)
