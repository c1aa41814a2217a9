"""Face, voice and text nets, their fusion, and the one way to save and load them."""

from .bundle import EmotionModel, ModelConfig, bundled_models, load_model
from .face import FaceNet
from .fusion import MODALITIES, fuse
from .text import ModelLoadError, SentenceEncoder, TextHeads
from .voice import VoiceNet

__all__ = [
    "EmotionModel",
    "FaceNet",
    "MODALITIES",
    "ModelConfig",
    "ModelLoadError",
    "SentenceEncoder",
    "TextHeads",
    "VoiceNet",
    "bundled_models",
    "fuse",
    "load_model",
]
