"""What an ONNX export folder holds (written by `emofusion.export`, read by `models.onnx_backend`)."""

from __future__ import annotations

MANIFEST_NAME = "export.json"
MANIFEST_FORMAT = "emofusion-onnx"
MANIFEST_VERSION = 1
ENCODER_DELTA_NAME = "text_encoder_delta.safetensors"
VOICE_FUNCTIONALS_NAME = "voice_functionals.safetensors"
PRECISIONS = ("fp32", "int8")
