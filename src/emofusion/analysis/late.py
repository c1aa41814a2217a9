"""The late-fusion runner: face, voice and text paths, each with its own net, fused per window
(`models.LateFusionModel`)."""

from __future__ import annotations

from ..media import AudioWindowReader, MediaInfo, Source
from ..models.interfaces import LateFusionModel
from .face import FaceObservation, FacePath, FaceRun
from .fusion import fused_segment
from .results import Segment
from .text import TextPath
from .threads import beside_workers, torch_threads
from .voice import VoiceCalibration, VoicePath
from .windows import Window
from .words import Words


class LateFusionRunner:
    """Runs a LateFusionModel's paths over the windows of an input."""

    text_sentiment = True  # the text heads always include sentiment

    def __init__(self, model: LateFusionModel, modalities: list[str], *, face_detector: str, frames_per_second: float,
                 detect_max_side: int, detect_side: int, min_speech_fraction: float):
        self.model = model
        self.face = (FacePath(model, detector=face_detector, frames_per_second=frames_per_second,
                              detect_max_side=detect_max_side, detect_side=detect_side)
                     if "face" in modalities else None)
        self.voice = VoicePath(model, min_speech_fraction)

    def start(self, source: Source, info: MediaInfo, duration: float, windows: list[Window], *, use_face: bool,
              reader: AudioWindowReader | None, words: Words | None,
              face_observations: list[FaceObservation] | None = None,
              calibration: VoiceCalibration | None = None) -> "LateFusionRun":
        faces = self.face.start(source, duration, info, face_observations) if use_face and self.face else None
        text = TextPath(self.model, words, duration) if words is not None else None
        return LateFusionRun(self, faces, reader, text, calibration)


class LateFusionRun:
    """A LateFusionModel over one input."""

    def __init__(self, runner: LateFusionRunner, faces: FaceRun | None, reader: AudioWindowReader | None,
                 text: TextPath | None, calibration: VoiceCalibration | None = None):
        self.runner, self.faces, self.reader, self.text = runner, faces, reader, text
        self.calibration = calibration

    @property
    def stream_ends(self) -> list[float | None]:
        """Where each media stream this run reads ended (None while it goes on)."""
        return [self.faces.end] if self.faces is not None else []

    def segments_for(self, block: list[Window]) -> list[Segment]:
        none = [None] * len(block)
        # voice and text first: they run here while the face worker threads decode and detect
        # ahead; the face results of the block are collected after them
        with torch_threads(beside_workers() if self.faces is not None and self.faces.busy else None):
            voices = self.runner.voice.results_for(block, self.reader, self.calibration) if self.reader is not None else none
            texts = self.text.results_for(block) if self.text is not None else none
        faces = self.faces.results_for(block) if self.faces is not None else none
        labels, fuse = self.runner.model.labels, self.runner.model.fuse
        return [fused_segment(w, labels, fuse, f, v, t) for w, f, v, t in zip(block, faces, voices, texts)]

    def close(self) -> None:
        if self.faces is not None:
            self.faces.close()
