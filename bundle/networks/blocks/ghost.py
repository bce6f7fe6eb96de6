"""Ghost convolution blocks for any number of spatial dimensions (2D and 3D).

References:
    - Han et al., "GhostNet: More Features from Cheap Operations", CVPR 2020, https://arxiv.org/abs/1911.11907
    - timm ``timm/models/ghostnet.py::GhostModule`` (2D only; the math is ported here, not the ``nn.Conv2d`` code).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
from monai.networks.layers.factories import Conv
from monai.networks.layers.utils import get_act_layer, get_dropout_layer, get_norm_layer

__all__ = ["GhostModule", "GhostConvBlock"]


def _check_positive_int(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {name}={value!r}.")


class GhostModule(nn.Module):
    """
    Ghost module: a primary convolution makes ``ceil(out_channels / ratio)`` "intrinsic" channels and a cheap
    depthwise convolution derives the remaining "ghost" channels from them; both are followed by norm + act,
    concatenated and trimmed to ``out_channels``.

    With ``ratio=2`` and ``kernel_size=3`` this costs about half the parameters and FLOPs of a plain 3x3(x3)
    convolution with the same input/output channels.

    Args:
        spatial_dims: number of spatial dimensions, 2 or 3.
        in_channels: number of input channels.
        out_channels: number of output channels.
        kernel_size: kernel size of the primary convolution (odd). Defaults to 3.
        ratio: ``out_channels / intrinsic channels``; ``ratio - 1`` ghost maps per intrinsic map. Defaults to 2.
        dw_size: kernel size of the cheap depthwise convolution (odd; 1 as in the paper's ablation default,
            3 as in GhostNet). Defaults to 3.
        stride: stride of the primary convolution. Defaults to 1.
        act: activation type and arguments, e.g. ``"relu"`` or ``("leakyrelu", {"negative_slope": 0.1})``.
            Defaults to ``("relu", {"inplace": True})``.
        norm: normalization type and arguments, e.g. ``"batch"`` or ``("instance", {"affine": True})``.
            Defaults to ``("instance", {"affine": True})``.
        relu: whether to apply ``act`` after each norm (timm's ``use_act``). Defaults to True.

    Raises:
        ValueError: when ``spatial_dims`` is not 2 or 3, a channel count is not a positive int, ``ratio < 2``,
            ``dw_size`` or ``kernel_size`` is not a positive odd int, or ``stride < 1``.

    Examples::

        >>> m = GhostModule(spatial_dims=3, in_channels=8, out_channels=16)
        >>> m(torch.randn(2, 8, 16, 16, 16)).shape
        torch.Size([2, 16, 16, 16, 16])
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        ratio: int = 2,
        dw_size: int = 3,
        stride: int = 1,
        act: str | tuple = ("relu", {"inplace": True}),
        norm: str | tuple = ("instance", {"affine": True}),
        relu: bool = True,
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got spatial_dims={spatial_dims!r}.")
        _check_positive_int("in_channels", in_channels)
        _check_positive_int("out_channels", out_channels)
        if isinstance(ratio, bool) or not isinstance(ratio, int) or ratio < 2:
            raise ValueError(f"ratio must be an int >= 2, got ratio={ratio!r}.")
        if isinstance(dw_size, bool) or not isinstance(dw_size, int) or dw_size < 1 or dw_size % 2 == 0:
            raise ValueError(f"dw_size must be a positive odd int, got dw_size={dw_size!r}.")
        if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be a positive odd int, got kernel_size={kernel_size!r}.")
        _check_positive_int("stride", stride)

        self.out_channels = out_channels
        init_channels = math.ceil(out_channels / ratio)
        new_channels = init_channels * (ratio - 1)  # a multiple of init_channels, so groups=init_channels works
        conv_type = Conv[Conv.CONV, spatial_dims]
        # bias is redundant before a norm layer (as in timm/GhostNet)
        self.primary_conv = nn.Sequential(
            conv_type(in_channels, init_channels, kernel_size, stride, kernel_size // 2, bias=False),
            get_norm_layer(norm, spatial_dims=spatial_dims, channels=init_channels),
            get_act_layer(act) if relu else nn.Identity(),
        )
        self.cheap_operation = nn.Sequential(
            conv_type(init_channels, new_channels, dw_size, 1, dw_size // 2, groups=init_channels, bias=False),
            get_norm_layer(norm, spatial_dims=spatial_dims, channels=new_channels),
            get_act_layer(act) if relu else nn.Identity(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """
        Args:
            x: input of shape (B, in_channels, *spatial).

        Returns:
            Tensor of shape (B, out_channels, *spatial / stride).
        """
        x1 = self.primary_conv(x)  # (B, init, *S)
        x2 = self.cheap_operation(x1)  # (B, init * (ratio - 1), *S)
        out = torch.cat([x1, x2], dim=1)  # (B, init * ratio, *S), init * ratio >= out_channels
        return out[:, : self.out_channels]  # (B, out_channels, *S)


class GhostConvBlock(nn.Sequential):
    """
    Two Ghost modules in a row: the drop-in counterpart of a U-Net "double conv" (conv-norm-act x 2,
    MONAI ``TwoConv``), with optional dropout after each module.

    Args:
        spatial_dims: number of spatial dimensions, 2 or 3.
        in_channels: number of input channels.
        out_channels: number of output channels (of both modules).
        ratio: Ghost ratio of both modules. Defaults to 2.
        dw_size: depthwise kernel size of both modules. Defaults to 3.
        act: activation type and arguments. Defaults to ``("relu", {"inplace": True})``.
        norm: normalization type and arguments. Defaults to ``("instance", {"affine": True})``.
        dropout: dropout ratio (float) or MONAI dropout spec (tuple); 0 means none. Defaults to 0.0.
        kernel_size: kernel size of the primary convolutions. Defaults to 3.

    Raises:
        ValueError: see :py:class:`GhostModule`.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        ratio: int = 2,
        dw_size: int = 3,
        act: str | tuple = ("relu", {"inplace": True}),
        norm: str | tuple = ("instance", {"affine": True}),
        dropout: float | tuple = 0.0,
        kernel_size: int = 3,
    ) -> None:
        super().__init__()
        for i, c_in in enumerate((in_channels, out_channels)):
            self.add_module(
                f"ghost_{i}",
                GhostModule(
                    spatial_dims, c_in, out_channels, kernel_size=kernel_size, ratio=ratio, dw_size=dw_size,
                    act=act, norm=norm,
                ),
            )
            if dropout:
                self.add_module(f"dropout_{i}", get_dropout_layer(dropout, dropout_dim=1))
