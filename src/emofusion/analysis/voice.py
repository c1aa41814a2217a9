"""The voice path: each window's audio, gated by a speech check (preprocess) -> log-mel -> the
voice net, with its acoustic-functionals head when the model has one (forward) -> a VoiceResult."""

from __future__ import annotations

import numpy as np
import torch

from ..features import log_mel, speech_fraction
from ..media import AudioWindowReader
from ..models.interfaces import LateFusionModel
from .results import VoiceResult
from .windows import Window

MIN_VOICE_SECONDS = 0.5  # shorter audio is not read: the voice is absent there


def voiced(block: list[Window], reader: AudioWindowReader,
           min_speech_fraction: float) -> list[tuple[np.ndarray, float] | None]:
    """Each window's audio and speech fraction; None where it is shorter than MIN_VOICE_SECONDS
    or not speech-like (the voice is absent there). Shared by the late-fusion and joint runners."""
    min_samples = int(MIN_VOICE_SECONDS * reader.sample_rate)
    out: list[tuple[np.ndarray, float] | None] = []
    for w in block:
        wav = reader.read(w.start, w.end)
        frac = speech_fraction(wav) if len(wav) >= min_samples else 0.0
        out.append((wav, frac) if len(wav) >= min_samples and frac >= min_speech_fraction else None)
    return out


class VoicePath:
    """The voice path of a late-fusion model."""

    def __init__(self, model: LateFusionModel, min_speech_fraction: float):
        self.model, self.min_speech_fraction = model, min_speech_fraction

    def results_for(self, block: list[Window], reader: AudioWindowReader) -> list[VoiceResult | None]:
        """Per window: the voice net's probabilities, or None where there is no speech."""
        mel_cfg = self.model.config.mel
        labels = self.model.labels
        chunks = [(i, *v) for i, v in enumerate(voiced(block, reader, self.min_speech_fraction)) if v is not None]
        out: list[VoiceResult | None] = [None] * len(block)
        by_length: dict[int, list[tuple[int, np.ndarray, float]]] = {}
        for chunk in chunks:  # windows of one length go through the net together
            by_length.setdefault(len(chunk[1]), []).append(chunk)
        for group in by_length.values():
            mels = log_mel(torch.from_numpy(np.stack([c[1] for c in group])), mel_cfg)
            probs = self.model.with_voice_functionals(self.model.voice_probs(mels), [c[1] for c in group])
            for (i, _, frac), p in zip(group, probs):
                out[i] = VoiceResult(labels, p, speech_fraction=frac)
        return out
