"""A model is a folder: `config.json` (architecture, labels, preprocessing, fusion weights,
provenance) + `model.safetensors`. `ModelConfig` is that config; `bundled_models` names the
folders shipped inside the package."""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import ModelLoadError
from ..features import FaceConfig, MelConfig
from ..labels import EMOTIONS, SENTIMENTS
from .face import FaceNetConfig
from .text import TextNetConfig
from .voice import VoiceNetConfig

FORMAT = "emofusion"
FORMAT_VERSION = 1
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


def bundled_models() -> dict[str, Path]:
    """Names of the models shipped inside the package -> their folders."""
    root = Path(str(resources.files("emofusion") / "weights"))
    if not root.is_dir():
        return {}
    return {p.name: p for p in sorted(root.iterdir()) if (p / CONFIG_NAME).is_file()}


@dataclass
class ModelConfig:
    """Everything needed to rebuild a model and preprocess its inputs."""

    name: str = "untitled"
    version: str = "0.0.0"
    labels: list[str] = field(default_factory=lambda: list(EMOTIONS))
    sentiment_labels: list[str] = field(default_factory=lambda: list(SENTIMENTS))
    # which parts hold trained weights; random weights are never presented as predictions
    trained: dict[str, bool] = field(default_factory=dict)
    face: dict[str, Any] | None = None  # FaceNetConfig's keys + "preprocess": FaceConfig
    # VoiceNetConfig's keys + "preprocess": MelConfig, optional "functionals": {"feature_set", "dim", "weight", "c"}
    voice: dict[str, Any] | None = None
    text: dict[str, Any] | None = None  # TextNetConfig's keys + "embed_dim", optional "finetuned"
    fusion: dict[str, Any] = field(default_factory=lambda: {"type": "weighted_geometric", "weights": {}})
    extra: dict[str, Any] = field(default_factory=dict)  # provenance: data, metrics, recipe

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "name": self.name,
            "version": self.version,
            "labels": list(self.labels),
            "sentiment_labels": list(self.sentiment_labels),
            "trained": dict(self.trained),
            "face": self.face,
            "voice": self.voice,
            "text": self.text,
            "fusion": self.fusion,
            "extra": self.extra,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        if data.get("format") != FORMAT:
            raise ModelLoadError(f"not an emofusion config (format={data.get('format')!r})")
        if int(data.get("format_version", 0)) > FORMAT_VERSION:
            raise ModelLoadError(
                f"config format_version {data['format_version']} is newer than this emofusion "
                f"understands ({FORMAT_VERSION}); upgrade emofusion"
            )
        keys = {"name", "version", "labels", "sentiment_labels", "trained", "face", "voice", "text", "fusion", "extra"}
        return cls(**{k: v for k, v in data.items() if k in keys})

    @property
    def face_preprocess(self) -> FaceConfig:
        return FaceConfig(**(self.face or {}).get("preprocess", {}))

    @property
    def mel(self) -> MelConfig:
        return MelConfig(**(self.voice or {}).get("preprocess", {}))

    @property
    def face_net(self) -> FaceNetConfig:
        """The face net's settings (the defaults where the `face` part leaves them out)."""
        return FaceNetConfig.from_dict(self.face)

    @property
    def voice_net(self) -> VoiceNetConfig:
        """The voice net's settings (the defaults where the `voice` part leaves them out)."""
        return VoiceNetConfig.from_dict(self.voice)

    @property
    def text_net(self) -> TextNetConfig:
        """The text part's settings (the defaults where the `text` part leaves them out)."""
        return TextNetConfig.from_dict(self.text)
