"""Models: the one loader (`load_model`), the interfaces every backend implements, the face,
voice and text nets, their fusion, and the seed architectures.

Names are imported on first use, so that `emofusion.models.interfaces` or the export-folder
constants can be read without importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_HOMES = {
    "EmotionModel": "emotion_model", "ModelConfig": "config", "bundled_models": "config",
    "FaceNet": "face", "FaceNetConfig": "face", "VoiceNet": "voice", "VoiceNetConfig": "voice",
    "MODALITIES": "fusion", "fuse": "fusion",
    "InferenceModel": "interfaces", "JointModel": "interfaces", "LateFusionModel": "interfaces", "is_joint": "interfaces",
    "BACKENDS": "loading", "load_model": "loading",
    "SentenceEncoder": "text", "TextHeads": "text", "TextNetConfig": "text",
}

__all__ = [*_HOMES, "ModelLoadError"]


def __getattr__(name: str) -> Any:
    if name == "ModelLoadError":
        from ..errors import ModelLoadError

        return ModelLoadError
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{home}", __name__), name)
