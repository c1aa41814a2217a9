"""The late-fusion runner: face, voice and text paths, each with its own net, fused per window
(`models.LateFusionModel`)."""

from __future__ import annotations

from ..media import AudioWindowReader, MediaInfo, Source
from ..models.interfaces import LateFusionModel
from .face import FaceObservation, FacePath, FaceRun
from .fusion import fused_segment
from .people import PeopleTimeline, Person
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
                 detect_max_side: int, detect_side: int, max_faces: int, min_speech_fraction: float):
        self.model = model
        self.face = (FacePath(model, detector=face_detector, frames_per_second=frames_per_second,
                              detect_max_side=detect_max_side, detect_side=detect_side, max_faces=max_faces)
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
        self.timeline = (PeopleTimeline(runner.model.labels, runner.model.fuse,
                                        watches_mouths=faces.path.detector.gives_landmarks)
                         if faces is not None else None)

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
        labels, fuse = self.runner.model.labels, self.runner.model.fuse
        if self.faces is None or self.timeline is None:  # the one is there exactly when the other is
            return [fused_segment(w, labels, fuse, None, v, t) for w, v, t in zip(block, voices, texts)]
        faces = self.faces.results_for(block)
        segments = []
        for w, f, v, t in zip(block, faces, voices, texts):
            segment = fused_segment(w, labels, fuse, f.main, v, t)
            segment.speaker = self.timeline.add(w, f, v, t)
            segments.append(segment)
        if self.faces.forgotten:
            self.timeline.keep_only(self.faces.tracks)
        return segments

    def people(self) -> tuple[list[Person], int]:
        """(the people seen, listed; how many tracks were left out), once every window is done."""
        if self.faces is None or self.timeline is None:
            return [], 0
        listed, left_out = self.timeline.people(self.faces.tracks, self.faces.frames)
        return listed, left_out + self.faces.forgotten

    def close(self) -> None:
        if self.faces is not None:
            self.faces.close()
