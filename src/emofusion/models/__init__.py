"""Face, voice and text nets, their fusion, and the one way to save and load them."""

from .bundle import EmotionModel, ModelConfig, bundled_models, load_model
from .face import FaceNet, FaceNetConfig
from .fusion import MODALITIES, fuse
from .text import ModelLoadError, SentenceEncoder, TextHeads, TextNetConfig
from .voice import VoiceNet, VoiceNetConfig

__all__ = [
    "EmotionModel",
    "FaceNet",
    "FaceNetConfig",
    "MODALITIES",
    "ModelConfig",
    "ModelLoadError",
    "SentenceEncoder",
    "TextHeads",
    "TextNetConfig",
    "VoiceNet",
    "VoiceNetConfig",
    "bundled_models",
    "fuse",
    "load_model",
]
