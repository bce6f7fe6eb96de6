"""Coordinate Attention generalised to N spatial dimensions.

References:
    - Hou et al., "Coordinate Attention for Efficient Mobile Network Design", CVPR 2021,
      https://arxiv.org/abs/2103.02907
    - timm ``timm/layers/coord_attn.py::CoordAttn`` (2D only; its math is ported here to one strip per axis).
"""

from __future__ import annotations

import torch
import torch.nn as nn
from monai.networks.layers.factories import Conv
from monai.networks.layers.utils import get_act_layer, get_norm_layer

__all__ = ["CoordinateAttention"]


class CoordinateAttention(nn.Module):
    """
    Coordinate Attention (Hou et al. 2021) for 2D or 3D feature maps.

    For every spatial axis ``i`` the input is "strip pooled" (averaged over all other spatial axes) to a
    descriptor of shape (B, C, S_i). The strips of all axes are concatenated along one axis, passed through ONE
    shared 1x1 bottleneck convolution + norm + act (C -> ``max(min_channels, C // reduction)``), split back per
    axis, and each axis gets its own 1x1 convolution (-> C) and sigmoid gate. The output is
    ``x * gate_1 * ... * gate_n`` with each gate broadcast along the other axes, so the block encodes *where* along
    every axis a channel is relevant (useful for small, localised lesions), at the cost of SE-like parameters.

    A 1x1 convolution over the concatenated strips is position-wise, so it is implemented as a 1D convolution on
    (B, C, S_1 + ... + S_n), exactly equivalent to timm's 2D layout (B, C, H + W, 1).

    Args:
        spatial_dims: number of spatial dimensions, 2 or 3.
        in_channels: number of input (= output) channels C.
        reduction: bottleneck reduction ratio r; the bottleneck has ``max(min_channels, C // r)`` channels.
            Defaults to 8.
        min_channels: lower bound of the bottleneck width (the paper uses 8). Defaults to 8.
        act: bottleneck activation type and arguments. The paper uses h-swish; MONAI's closest is ``"swish"``.
            Defaults to ``"swish"``.
        norm: bottleneck normalization type and arguments (paper and timm: batch norm). Defaults to ``"batch"``.
        gate_bias: if not None, initial (constant) bias of the per-axis gate convolutions. A positive value starts
            the gates near 1 (``sigmoid(2) ** 3 ~ 0.68``) so that the block begins close to an identity map, which
            keeps a network usable with the block bypassed. None keeps PyTorch's default init. Defaults to None.

    Raises:
        ValueError: when ``spatial_dims`` is not 2 or 3, or ``in_channels``, ``reduction`` or ``min_channels``
            is not a positive int.

    Examples::

        >>> ca = CoordinateAttention(spatial_dims=3, in_channels=16)
        >>> ca(torch.randn(2, 16, 8, 9, 10)).shape
        torch.Size([2, 16, 8, 9, 10])
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        reduction: int = 8,
        min_channels: int = 8,
        act: str | tuple = "swish",
        norm: str | tuple = "batch",
        gate_bias: float | None = None,
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got spatial_dims={spatial_dims!r}.")
        for name, value in (("in_channels", in_channels), ("reduction", reduction), ("min_channels", min_channels)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive int, got {name}={value!r}.")
        self.spatial_dims = spatial_dims
        mid_channels = max(min_channels, in_channels // reduction)
        self.mid_channels = mid_channels
        # for axis i (tensor dim 2 + i): the tensor dims to average over = all other spatial dims
        self.reduce_dims = [
            [2 + j for j in range(spatial_dims) if j != i] for i in range(spatial_dims)
        ]
        conv_1d = Conv[Conv.CONV, 1]
        self.conv = conv_1d(in_channels, mid_channels, kernel_size=1, bias=False)  # bias is redundant before norm
        self.norm = get_norm_layer(norm, spatial_dims=1, channels=mid_channels)
        self.act = get_act_layer(act)
        self.gate_convs = nn.ModuleList(
            [conv_1d(mid_channels, in_channels, kernel_size=1) for _ in range(spatial_dims)]
        )
        if gate_bias is not None:
            for gate_conv in self.gate_convs:
                nn.init.constant_(gate_conv.bias, float(gate_bias))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """
        Args:
            x: input of shape (B, C, S_1, ..., S_n), n = ``spatial_dims``.

        Returns:
            Tensor of the same shape, ``x`` reweighted by the product of the per-axis gates.
        """
        b, c = x.shape[0], x.shape[1]
        sizes: list[int] = [int(s) for s in x.shape[2:]]
        strips: list[torch.Tensor] = []
        for dims in self.reduce_dims:
            strips.append(x.mean(dim=dims))  # (B, C, S_i)
        y = torch.cat(strips, dim=2)  # (B, C, S_1 + ... + S_n)
        y = self.act(self.norm(self.conv(y)))  # (B, mid, S_1 + ... + S_n): one shared bottleneck for all axes
        parts = torch.split(y, sizes, dim=2)  # n x (B, mid, S_i)
        out = x
        for i, gate_conv in enumerate(self.gate_convs):
            gate = torch.sigmoid(gate_conv(parts[i]))  # (B, C, S_i)
            shape = [b, c] + [1] * self.spatial_dims
            shape[2 + i] = sizes[i]
            out = out * gate.view(shape)  # gate as (B, C, 1, .., S_i, .., 1), broadcast over the other axes
        return out
