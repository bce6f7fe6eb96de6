"""INT8 versions of the exported ONNX graphs (ONNX Runtime static quantisation, QDQ format, per-channel weights).

Convolutions need static quantisation (dynamic quantisation covers MatMul/Gemm only): the activation ranges are
calibrated on real windows, e.g. windows of the preprocessed embedded CT. Each of ``model.onnx``,
``model_basic.onnx`` and ``model_screen.onnx`` present next to ``fp32_path`` gets an INT8 sibling with the same
naming, so :py:class:`bundle.networks.runtime.OnnxRuntimeNetwork` runs the INT8 set like the float one.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from monai.config import PathLike

from bundle.networks.runtime import onnx_variant_paths

__all__ = ["quantize_onnx_int8"]

logger = logging.getLogger(__name__)


def quantize_onnx_int8(fp32_path: PathLike, int8_path: PathLike, windows: torch.Tensor) -> dict[str, Path]:
    """Quantise every exported graph of ``fp32_path`` to INT8, calibrating activations on ``windows``.

    Args:
        fp32_path: the float ``model.onnx`` written by :py:func:`bundle.export.onnx.export_onnx`.
        int8_path: the INT8 full graph to write (its ``_basic`` / ``_screen`` siblings beside it).
        windows: calibration windows (N, C, *roi) of the exported window size.

    Returns:
        ``{variant: written path}`` for the variants whose float graph exists.

    Raises:
        FileNotFoundError: when ``fp32_path`` does not exist.
        ImportError: when ``onnxruntime`` is not installed.
    """
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    if not Path(fp32_path).is_file():
        raise FileNotFoundError(f"{fp32_path}: no such ONNX graph.")
    data = np.ascontiguousarray(windows.detach().cpu().numpy().astype(np.float32))

    class _Windows(CalibrationDataReader):
        def __init__(self, name: str) -> None:
            self.batches = iter([{name: data[i : i + 1]} for i in range(len(data))])

        def get_next(self):  # noqa: ANN202 - the interface of CalibrationDataReader
            return next(self.batches, None)

    import onnx

    written: dict[str, Path] = {}
    targets = onnx_variant_paths(int8_path)
    for variant, source in onnx_variant_paths(fp32_path).items():
        if not source.is_file():
            continue
        input_name = onnx.load(str(source), load_external_data=False).graph.input[0].name
        targets[variant].parent.mkdir(parents=True, exist_ok=True)
        quantize_static(
            str(source), str(targets[variant]), _Windows(input_name), quant_format=QuantFormat.QDQ,
            per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
        )  # fmt: skip
        written[variant] = targets[variant]
        logger.info("INT8 %s graph: %s", variant, targets[variant])
    return written
