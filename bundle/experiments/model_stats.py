"""Parameter and FLOP counts of GhostCAUNet and MONAI reference networks (no timings; see the benchmark for those).

FLOPs are counted with ``torch.utils.flop_counter.FlopCounterMode`` on one forward pass, batch 1, and reported
in the 2 * MAC convention (one multiply-accumulate = 2 FLOPs), which is what ``FlopCounterMode`` counts for
convolutions and matrix products. Normalisation, activations, pooling, padding and elementwise ops are not
counted (they are a few percent of the conv FLOPs in these networks).
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from bundle.networks.nets.ghost_ca_unet import GhostCAUNet

__all__ = ["count_parameters", "count_flops", "model_stats_rows", "model_stats_markdown"]

logger = logging.getLogger(__name__)


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters of ``module``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def count_flops(fn: Callable[[], Any]) -> int:
    """FLOPs (2 * MAC convention) of calling ``fn()`` once, counted by ``FlopCounterMode`` under ``no_grad``."""
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        fn()
    return int(counter.get_total_flops())


def _monai_references() -> list[tuple[str, nn.Module]]:
    from monai.networks.nets import BasicUNet, SegResNet, UNet

    with contextlib.redirect_stdout(io.StringIO()):  # BasicUNet.__init__ prints its features
        basic_unet = BasicUNet(spatial_dims=3, in_channels=1, out_channels=2)
    return [
        ("MONAI UNet 3D (16-32-64-128-256, strides 2, num_res_units=2)",
         UNet(3, 1, 2, channels=(16, 32, 64, 128, 256), strides=(2, 2, 2, 2), num_res_units=2)),
        ("MONAI BasicUNet 3D (defaults)", basic_unet),
        ("MONAI SegResNet 3D (init_filters=16)",
         SegResNet(spatial_dims=3, init_filters=16, in_channels=1, out_channels=2)),
    ]


def model_stats_rows(
    roi_3d: Sequence[int] = (96, 96, 32), roi_2d: Sequence[int] = (512, 512), include_references: bool = True
) -> list[dict[str, Any]]:
    """
    Count parameters and FLOPs of GhostCAUNet (3D and 2D defaults; full, basic and screening passes; a no-Ghost
    ablation and an all-Ghost variant) and of MONAI ``UNet``, ``BasicUNet`` and ``SegResNet`` (3D).

    Args:
        roi_3d: 3D window size. Defaults to (96, 96, 32).
        roi_2d: 2D slice size. Defaults to (512, 512).
        include_references: also count the MONAI reference networks. Defaults to True.

    Returns:
        one dict per row: ``model``, ``pass``, ``input`` (shape string), ``params``, ``gflops`` and ``rel``
        (FLOPs relative to the GhostCAUNet full forward of the same dimensionality).
    """
    rows: list[dict[str, Any]] = []
    for dims, roi in ((3, tuple(roi_3d)), (2, tuple(roi_2d))):
        x = torch.zeros(1, 1, *roi)
        variants: list[tuple[str, GhostCAUNet]] = [
            (f"GhostCAUNet {dims}D (defaults)", GhostCAUNet(spatial_dims=dims).eval())
        ]
        if dims == 3:
            variants.append(("GhostCAUNet 3D, no Ghost (ghost_levels=[])", GhostCAUNet(ghost_levels=()).eval()))
            variants.append(("GhostCAUNet 3D, all Ghost (ghost_levels=[0, 1, 2, 3])",
                             GhostCAUNet(ghost_levels=(0, 1, 2, 3)).eval()))
        full_flops = 0
        for name, net in variants:
            passes: list[tuple[str, Callable[[], Any]]] = [
                ("forward full", lambda net=net: net(x, enhancement="full")),
                ("forward basic", lambda net=net: net(x, enhancement="basic")),
                ("screen", lambda net=net: net.screen(x)),
            ]
            for pass_name, fn in passes if name.endswith("(defaults)") else passes[:1]:
                flops = count_flops(fn)
                full_flops = full_flops or flops
                rows.append({"model": name, "pass": pass_name, "input": "x".join(map(str, roi)),
                             "params": count_parameters(net), "gflops": flops / 1e9, "rel": flops / full_flops})
                logger.info("%s %s: %.3f GFLOPs", name, pass_name, flops / 1e9)
        if dims == 3 and include_references:
            for name, net in _monai_references():
                net.eval()
                flops = count_flops(lambda net=net: net(x))
                rows.append({"model": name, "pass": "forward", "input": "x".join(map(str, roi)),
                             "params": count_parameters(net), "gflops": flops / 1e9, "rel": flops / full_flops})
    return rows


def model_stats_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """Render :py:func:`model_stats_rows` as a markdown table (GFLOPs in the 2 * MAC convention)."""
    lines = [
        "| model | pass | input (batch 1) | params (M) | GFLOPs (2*MAC) | vs GhostCAUNet full |",
        "|---|---|---|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['model']} | {r['pass']} | {r['input']} | {r['params'] / 1e6:.3f} | "
                     f"{r['gflops']:.3f} | {100 * r['rel']:.1f} % |")
    return "\n".join(lines) + "\n"
