"""INT8 versions of the exported nets: static QDQ for the convolutional nets (the first
convolution kept FP32), dynamic for the text heads (see the package docstring for why)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

def _first_conv(path: Path) -> list[str]:
    import onnx

    graph = onnx.load(str(path)).graph
    convs = [n.name for n in graph.node if n.op_type == "Conv"]  # nodes are in topological order
    return convs[:1]


def quantize_conv_net(src: Path, dst: Path, input_name: str, calibration: np.ndarray, work: Path) -> dict[str, Any]:
    """Static INT8 (QDQ) quantization of a conv net; returns what was done (for the manifest)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self, batch: int = 32):
            self.batches = iter([{input_name: calibration[i : i + batch]} for i in range(0, len(calibration), batch)])

        def get_next(self):
            return next(self.batches, None)

    pre = work / f"{src.stem}.pre.onnx"
    quant_pre_process(str(src), str(pre))
    excluded = _first_conv(pre)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantize_static(
            str(pre), str(dst), Reader(), quant_format=QuantFormat.QDQ,
            per_channel=True, reduce_range=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=excluded,
        )
    return {
        "method": "static", "format": "QDQ", "weights": "int8 per-channel (7-bit range)", "activations": "uint8",
        "calibration": "MinMax", "calibration_inputs": int(len(calibration)), "kept_fp32": excluded,
    }


def quantize_linear_net(src: Path, dst: Path, work: Path) -> dict[str, Any]:
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    pre = work / f"{src.stem}.pre.onnx"
    quant_pre_process(str(src), str(pre))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantize_dynamic(str(pre), str(dst), weight_type=QuantType.QInt8)
    return {"method": "dynamic", "weights": "int8", "activations": "uint8, quantized per batch at run time"}
