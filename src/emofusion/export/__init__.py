"""`emofusion export --format onnx`: the face net, the voice net and the text heads as ONNX.

    export_onnx("default", "exports/default", int8=True)  -> the manifest (dict)

writes into the output folder:

  face.onnx, voice.onnx, text_heads.onnx   FP32, BatchNorm folded into the convolutions (the
                                           nets `EmotionModel.prepare_inference` builds);
                                           dynamic batch, and a dynamic time axis for the
                                           voice net's log-mel input
  *.int8.onnx                              with --int8 (see "INT8" below)
  config.json                              the model's config (labels, preprocessing, fusion)
  text_encoder_delta.safetensors           the fine-tuned encoder tensors, when there are any
  voice_functionals.safetensors            the voice part's acoustic-functionals head, when it
                                           has one (a linear model applied in NumPy by both backends)
  export.json                              the manifest: files, inputs/outputs, precisions,
                                           opset, source model, versions, export checks

The nets output logits; `emofusion.models.onnx_backend.OnnxModel` applies the softmax and the
face net's flip test-time augmentation (`tta_flip`: the logits of each crop and of its mirror
image are averaged) exactly as `EmotionModel` does. The text encoder (MiniLM) is not exported:
it stays a PyTorch dependency (`config.text["encoder"]`); only the heads on its embeddings are.

INT8 (`--int8`; measured on the bundled model with benchmarks/bench_export.py, x86 AVX2 CPU
without VNNI): dynamic quantization (`quantize_dynamic`) turns convolutions into ConvInteger,
which ONNX Runtime's CPU kernels run slower than FP32 (face net: 0.2-0.7x the FP32 speed), so
the face net uses static quantization instead: QDQ, per-channel int8 weights, uint8
activations, MinMax ranges calibrated on a small deterministic synthetic set (faces drawn by
`emofusion.media.synth` under random pose, contrast and noise), which ORT fuses into
QLinearConv (1.3-1.9x the FP32 speed on the 2-core test machine). Two choices keep its
accuracy: the first convolution stays FP32 (its input spans the full range, where AVX2's u8*s8
pairwise sums saturate; it is a tiny share of the compute) and weights use 7 bits
(`reduce_range`, ORT's advice for CPUs without VNNI): with every layer quantized to full 8
bits only ~87% of FER-2013 val predictions kept their top label, with these ~99% (98.7% on all
3589, -0.2 points of accuracy). Calibrating on real FER-2013 crops instead of synthetic ones
changed agreement by well under a point (`calibration=` of `export_onnx` takes real inputs).
The text heads (two small Linear layers) use dynamic quantization (no calibration; harmless,
and negligible beside the PyTorch encoder). The voice net is not quantized: statically
quantized it was no faster than FP32 (0.5-1.0x: the net is small and the quantize/dequantize
steps cost what the int8 convolutions save) and lost up to a point on held-out RAVDESS
speakers, so under the INT8 precision it runs its FP32 file (the manifest maps `int8` to
`voice.onnx` and says why; `export_onnx(..., int8_nets=("face", "voice", "text"))` quantizes
it anyway, e.g. for a CPU with VNNI).
"""

from __future__ import annotations

from ..errors import ExportError
from .calibration import calibration_inputs, synthetic_faces, synthetic_speech
from .onnx import DEFAULT_OPSET, FORMATS, check_out, export_onnx, require_onnx

__all__ = ["DEFAULT_OPSET", "FORMATS", "ExportError", "calibration_inputs", "check_out", "export_onnx",
           "require_onnx", "synthetic_faces", "synthetic_speech"]
