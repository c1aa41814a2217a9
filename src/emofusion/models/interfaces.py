"""What a loaded model offers the analysis, declared once: every backend (PyTorch nets, ONNX
Runtime, a seed checkpoint, the service's micro-batching view) implements one of these.

- `LateFusionModel`: separate face / voice / text nets, each run on its own input, and a
  `fuse` that combines their probabilities (EmotionModel, OnnxModel, BatchedModel).
- `JointModel`: one network that reads a window's frames, audio and words together
  (SeedBackend).

The analysis chooses its runner once from which protocol a model implements.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    from .config import ModelConfig
    from .seed_backend import WindowInputs, WindowPrediction


@runtime_checkable
class InferenceModel(Protocol):
    """What every loaded model has: its config, labels, parts, and how it runs."""

    config: "ModelConfig"
    backend: str  # "torch", "onnx" or "seed"

    @property
    def labels(self) -> list[str]: ...

    @property
    def modalities(self) -> list[str]: ...

    @property
    def is_trained(self) -> bool: ...

    def prepare_inference(self) -> Any: ...


@runtime_checkable
class LateFusionModel(InferenceModel, Protocol):
    """Per-modality nets (None where the model has none) and their fusion."""

    face: Any
    voice: Any
    text: Any

    def face_probs(self, faces: Any) -> np.ndarray: ...

    def voice_probs(self, mels: Any) -> np.ndarray: ...

    @property
    def can_calibrate_voice(self) -> bool: ...

    def voice_functionals_of(self, wavs: list[np.ndarray]) -> np.ndarray | None: ...

    def reads_voice_cnn(self, calibrated: bool) -> bool: ...

    def with_voice_functionals(self, cnn_probs: np.ndarray | None, wavs: list[np.ndarray], *, baseline: Any = None,
                               feats: np.ndarray | None = None) -> np.ndarray: ...

    def clip_voice_probs(self, wavs: list[np.ndarray], batch_size: int = 64,
                         speakers: list[str] | None = None) -> np.ndarray: ...

    def text_probs(self, texts: list[str], contexts: list[str] | None = None) -> tuple[np.ndarray, np.ndarray]: ...

    def fuse(self, probs: dict[str, np.ndarray | None]) -> np.ndarray | None: ...


@runtime_checkable
class JointModel(InferenceModel, Protocol):
    """One network over all modalities of a window."""

    frames_per_window: int  # frames sampled over each window for the video encoder
    frame_size: int  # their side, in pixels
    text_sentiment: bool  # whether it has a sentiment head (else sentiment is mapped from emotions)

    def predict_windows(self, windows: list["WindowInputs"], batch_size: int = 8) -> list["WindowPrediction | None"]: ...


def is_joint(model: object) -> bool:
    """Whether `model` is one network over all modalities (a JointModel)."""
    return isinstance(model, JointModel)
