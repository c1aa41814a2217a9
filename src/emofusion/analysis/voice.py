"""The voice path: each window's audio, gated by a speech check (preprocess) -> log-mel -> the
voice net, with its acoustic-functionals head when the model has one (forward) -> a VoiceResult.

With calibration (`calibrate_voice`, before the windows are analysed), the head reads each window's
functionals relative to the recording's own baseline: their mean and spread over its voiced windows."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..errors import AnalysisError
from ..features import log_mel, speech_fraction
from ..media import AudioWindowReader, Source
from ..models.interfaces import LateFusionModel
from ..models.voice import SpeakerBaseline
from .results import VoiceResult
from .windows import Window

MIN_VOICE_SECONDS = 0.5  # shorter audio is not read: the voice is absent there
# A recording's baseline is taken over at least this many voiced windows (20 s of speech at the
# default 1 s hop); fewer give a mean and spread too noisy to read others against (MODEL_CARD.md).
MIN_CALIBRATION_WINDOWS = 20
_CALIBRATION_BLOCK = 64  # windows read at once by the calibration pass


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


@dataclass
class VoiceCalibration:
    """Whether one analysis reads the voice relative to the recording's own baseline, and why not."""

    mode: str  # the option asked for: "auto", "on" or "off"
    used: bool
    voiced_windows: int | None = None  # counted by the calibration pass (None: not counted)
    reason: str | None = None  # why it was not used
    baseline: SpeakerBaseline | None = None
    feats: dict[tuple[float, float], np.ndarray] = field(default_factory=dict, repr=False)  # by window span

    def info(self) -> dict[str, Any]:
        """The result JSON's `media.voice_calibration`."""
        out: dict[str, Any] = {"mode": self.mode, "used": self.used, "voiced_windows": self.voiced_windows}
        if self.reason is not None:
            out["reason"] = self.reason
        return out


def not_calibrated(mode: str, reason: str) -> VoiceCalibration:
    """No calibration, because of `reason`; an AnalysisError instead when `mode` is "on"."""
    if mode == "on":
        raise AnalysisError(f"calibrate is 'on' but {reason}")
    return VoiceCalibration(mode, used=False, reason=reason)


def check_calibration(mode: str, modalities: "list[str] | tuple[str, ...]", model: Any) -> None:
    """AnalysisError when `mode` is "on" and no input could be calibrated with this model and these
    modalities (the voice not analysed, or no calibrated regression): refused before any input is read."""
    if mode != "on":
        return
    if "voice" not in modalities:
        not_calibrated(mode, "the voice modality is not analysed")
    if not getattr(model, "can_calibrate_voice", False):
        not_calibrated(mode, f"model {model.config.name!r} has no calibrated voice regression")


def calibrate_voice(model: Any, windows: list[Window], audio: Source | None, min_speech_fraction: float,
                    mode: str, voice_analysed: bool = True) -> VoiceCalibration:
    """The recording's voice baseline as `mode` says: the functionals of every voiced window (read
    once here and kept for the voice path), their mean and spread. Not calibrated (AnalysisError
    when `mode` is "on") when the voice is not analysed, there is no `audio`, the model has no
    calibrated regression, or there are fewer than MIN_CALIBRATION_WINDOWS voiced windows."""
    if mode == "off":
        return VoiceCalibration(mode, used=False, reason="calibration is off")
    if not voice_analysed:
        return not_calibrated(mode, "the voice modality is not analysed")
    if audio is None:
        return not_calibrated(mode, "the input has no audio")
    if not getattr(model, "can_calibrate_voice", False):
        return not_calibrated(mode, f"model {model.config.name!r} has no calibrated voice regression")
    if len(windows) < MIN_CALIBRATION_WINDOWS:  # too few even if every one is voiced: nothing is read
        return not_calibrated(mode, f"the input has {len(windows)} windows; calibration needs at least "
                                    f"{MIN_CALIBRATION_WINDOWS} voiced windows")
    feats: dict[tuple[float, float], np.ndarray] = {}
    reader = AudioWindowReader(audio)
    try:
        for start in range(0, len(windows), _CALIBRATION_BLOCK):
            block = windows[start : start + _CALIBRATION_BLOCK]
            heard = [(w, v[0]) for w, v in zip(block, voiced(block, reader, min_speech_fraction)) if v is not None]
            if heard:
                rows = model.voice_functionals_of([wav for _, wav in heard])
                feats.update({(w.start, w.end): row.astype(np.float32) for (w, _), row in zip(heard, rows)})
    finally:
        reader.close()
    if len(feats) < MIN_CALIBRATION_WINDOWS:
        found = not_calibrated(mode, f"the input has {len(feats)} voiced windows; calibration needs at least "
                                     f"{MIN_CALIBRATION_WINDOWS}")
        found.voiced_windows = len(feats)
        return found
    return VoiceCalibration(mode, used=True, voiced_windows=len(feats),
                            baseline=SpeakerBaseline.of(np.stack(list(feats.values()))), feats=feats)


class VoicePath:
    """The voice path of a late-fusion model."""

    def __init__(self, model: LateFusionModel, min_speech_fraction: float):
        self.model, self.min_speech_fraction = model, min_speech_fraction

    def results_for(self, block: list[Window], reader: AudioWindowReader,
                    calibration: VoiceCalibration | None = None) -> list[VoiceResult | None]:
        """Per window: the voice net's probabilities, or None where there is no speech; relative to
        the recording's baseline when `calibration` is used."""
        mel_cfg = self.model.config.mel
        labels = self.model.labels
        chunks = [(i, *v) for i, v in enumerate(voiced(block, reader, self.min_speech_fraction)) if v is not None]
        out: list[VoiceResult | None] = [None] * len(block)
        by_length: dict[int, list[tuple[int, np.ndarray, float]]] = {}
        for chunk in chunks:  # windows of one length go through the net together
            by_length.setdefault(len(chunk[1]), []).append(chunk)
        calibrated = calibration is not None and calibration.used
        reads_cnn = self.model.reads_voice_cnn(calibrated)
        for group in by_length.values():
            wavs = [c[1] for c in group]
            cnn = self.model.voice_probs(log_mel(torch.from_numpy(np.stack(wavs)), mel_cfg)) if reads_cnn else None
            if calibration is not None and calibrated:
                feats = [calibration.feats.get((block[i].start, block[i].end)) for i, _, _ in group]
                stacked = (np.stack(feats) if all(f is not None for f in feats)  # type: ignore[arg-type]
                           else self.model.voice_functionals_of(wavs))
                probs = self.model.with_voice_functionals(cnn, wavs, feats=stacked, baseline=calibration.baseline)
            else:
                probs = self.model.with_voice_functionals(cnn, wavs)
            for (i, _, frac), p in zip(group, probs):
                out[i] = VoiceResult(labels, p, speech_fraction=frac)
        return out
