"""The joint runner: a seed checkpoint (one fused multimodal network, `models.JointModel`) reads
each window's frames, voiced audio and transcript text together.

`fused` is the model with every modality the window has. `face`, `voice` and `text` hold the
same model's prediction from that modality alone (its missing-modality inference), present where
the modality is: `face` where frames decode (the video encoder reads the whole picture: `box` is
the whole frame, `faces` 1, no face detection runs; `frames` counts the decoded ones), `voice`
where the audio passes the same speech gate as the voice net's, `text` where transcript text
overlaps. A text result's `sentiment` is the model's sentiment head on the text alone, or without
one its emotions mapped to valence.
"""

from __future__ import annotations

import math

import numpy as np

from ..media import AudioWindowReader, MediaInfo, Source, iter_frames
from ..models.interfaces import JointModel
from ..models.seed.preprocess import fill_frames, sample_times, square_frame
from .fusion import emotion_sentiment
from .results import FaceResult, Segment, TextResult, Verdict, VoiceResult
from .voice import voiced
from .windows import Window, window_texts
from .words import Words


class WindowFrames:
    """Each window's frames for a seed model's video encoder, sampled and resized as training
    samples a clip (`models.seed.preprocess`: `frames` instants spread over the window, RGB,
    `size` x `size`, a short tail repeating its last frame).

    The instants of all windows are decoded in one forward pass (`iter_frames`, seeking over
    gaps); overlapping windows share the frames at common instants. Only the resized frames
    of the windows not yet handed out are kept.
    """

    def __init__(self, source: Source, windows: list[Window], frames: int, size: int):
        self.frames, self.size = frames, size
        self._times = {w: sample_times(w.start, w.end, frames) for w in windows}
        self._iter = iter_frames(source, sorted({t for ts in self._times.values() for t in ts}), fmt="rgb")
        self._have: dict[float, np.ndarray] = {}
        self._last = -math.inf  # the latest instant decoded
        self._done = False
        self.frame_size: tuple[int, int] | None = None  # (width, height) of the upright decoded picture

    @property
    def end(self) -> float | None:
        """The latest instant decoded, once the video has ended (None before)."""
        return self._last if self._done else None

    def take(self, block: list[Window]) -> list[tuple[np.ndarray, int] | None]:
        """Per window: its (frames, size, size, 3) uint8 frames and how many were decoded (not
        repeated), or None where no frame decodes (past the end of the video)."""
        need = max(self._times[w][-1] for w in block)
        while not self._done and self._last < need:
            try:
                t, image = next(self._iter)
            except StopIteration:
                self._done = True
                break
            if self.frame_size is None:
                self.frame_size = (int(image.shape[1]), int(image.shape[0]))
            self._have[t] = square_frame(image, self.size)
            self._last = t
        out: list[tuple[np.ndarray, int] | None] = []
        for w in block:
            got = [self._have[t] for t in self._times[w] if t in self._have]
            out.append((fill_frames(got, self.frames), len(got)) if got else None)
        # later windows start after this block's last one: earlier frames are not needed again
        self._have = {t: f for t, f in self._have.items() if t >= block[-1].start}
        return out

    def close(self) -> None:
        self._iter.close()


class JointRunner:
    """Runs a JointModel over the windows of an input."""

    face = None  # no separate face path: the video encoder reads whole frames (see the module docstring)

    def __init__(self, model: JointModel, *, min_speech_fraction: float):
        self.model, self.min_speech_fraction = model, min_speech_fraction

    @property
    def text_sentiment(self) -> bool:
        """Whether text results carry a sentiment head's answer (else emotions mapped to valence)."""
        return self.model.text_sentiment

    def start(self, source: Source, info: MediaInfo, duration: float, windows: list[Window], *, use_face: bool,
              reader: AudioWindowReader | None, words: Words | None,
              face_observations: object = None, calibration: object = None) -> "JointRun":
        # a joint (seed) model has no functionals head: `calibration` is never used here
        frames = WindowFrames(source, windows, self.model.frames_per_window, self.model.frame_size) if use_face else None
        return JointRun(self, frames, reader, words, duration)


class JointRun:
    """A JointModel over one input."""

    def __init__(self, runner: JointRunner, frames: WindowFrames | None, reader: AudioWindowReader | None,
                 words: Words | None, duration: float):
        self.runner, self.frames, self.reader, self.words, self.duration = runner, frames, reader, words, duration

    @property
    def stream_ends(self) -> list[float | None]:
        """Where each media stream this run reads ended (None while it goes on)."""
        return [self.frames.end] if self.frames is not None else []

    def people(self) -> tuple[list, int]:
        """No people: the joint network reads whole frames, not tracked faces."""
        return [], 0

    def segments_for(self, block: list[Window]) -> list[Segment]:
        from ..models.seed_backend import WindowInputs

        model = self.runner.model
        clips = self.frames.take(block) if self.frames is not None else [None] * len(block)
        voices = (voiced(block, self.reader, self.runner.min_speech_fraction) if self.reader is not None
                  else [None] * len(block))
        texts = (window_texts(block, self.words.until(block[-1].end), self.duration)[0] if self.words is not None
                 else [None] * len(block))
        inputs = [WindowInputs(frames=c[0] if c else None, audio=v[0] if v else None, text=t)
                  for c, v, t in zip(clips, voices, texts)]
        predictions = model.predict_windows(inputs)
        frame_size = self.frames.frame_size if self.frames is not None else None
        box = [0, 0, *frame_size] if frame_size else [0, 0, 0, 0]
        labels, sentiment_labels = model.labels, model.config.sentiment_labels
        out: list[Segment] = []
        for w, clip, v, t, pred in zip(block, clips, voices, texts, predictions):
            if pred is None:
                out.append(Segment(w.start, w.end))
                continue
            parts = pred.parts
            face = (FaceResult(labels, parts["face"], faces=1, box=list(box), frames=clip[1])
                    if "face" in parts and clip else None)
            voice = VoiceResult(labels, parts["voice"], speech_fraction=v[1]) if "voice" in parts and v else None
            text = None
            if "text" in parts and t:
                sent = pred.sentiment.get("text")
                sent = sent if sent is not None else emotion_sentiment(labels, sentiment_labels, parts["text"])
                text = TextResult(labels, parts["text"], text=t, sentiment=sent / max(sent.sum(), 1e-12),
                                  sentiment_labels=sentiment_labels)
            out.append(Segment(w.start, w.end, face, voice, text, Verdict(labels, pred.fused)))
        return out

    def close(self) -> None:
        if self.frames is not None:
            self.frames.close()
