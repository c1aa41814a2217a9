"""Typed results of an analysis and their JSON form (contract v1; 1.1 added `people` and each
segment's `speaker`).

Probabilities are float arrays over their labels; they are rounded (6 decimals) only when
serialised (`to_dict`), never before fusion or the summary read them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

SCHEMA_VERSION = "1.1"
DECIMALS = 6


def probs_dict(labels: Sequence[str], probs: Sequence[float] | np.ndarray) -> dict[str, float]:
    """{label: probability} rounded for JSON."""
    return {label: round(float(p), DECIMALS) for label, p in zip(labels, probs)}


@dataclass
class Distribution:
    """Probabilities over `labels` (in their order)."""

    labels: Sequence[str]
    probs: np.ndarray

    @property
    def top(self) -> str:
        """The most likely label."""
        return self.labels[int(np.argmax(self.probs))]

    @property
    def score(self) -> float:
        """The top label's probability."""
        return float(np.max(self.probs))

    def probs_dict(self) -> dict[str, float]:
        return probs_dict(self.labels, self.probs)


@dataclass
class FaceResult(Distribution):
    """What the face path saw in a window: mean probabilities over the sampled frames with a face."""

    faces: int = 0  # most faces seen in one sampled frame of the window
    box: list[int] = field(default_factory=list)  # x, y, width, height of the analysed face, displayed-frame pixels
    frames: int = 0  # sampled frames of the window in which a face was analysed

    def to_dict(self) -> dict[str, Any]:
        return {"probs": self.probs_dict(), "faces": self.faces, "box": self.box, "frames": self.frames}


@dataclass
class VoiceResult(Distribution):
    """What the voice path heard in a window (only windows with speech-like energy)."""

    speech_fraction: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"probs": self.probs_dict(), "speech_fraction": round(self.speech_fraction, 4)}


@dataclass
class TextResult(Distribution):
    """What the text path read in the transcript overlapping a window."""

    text: str = ""
    sentiment: np.ndarray = field(default_factory=lambda: np.zeros(0))
    sentiment_labels: Sequence[str] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"probs": self.probs_dict(), "text": self.text,
                "sentiment": probs_dict(self.sentiment_labels, self.sentiment)}


@dataclass
class Verdict(Distribution):
    """A fused distribution over the labels."""

    def to_dict(self) -> dict[str, Any]:
        probs = self.probs_dict()
        top = max(probs, key=probs.__getitem__)
        return {"probs": probs, "top": top, "score": probs[top]}


@dataclass
class Segment:
    """One window of time and what each modality and the fusion said about it."""

    start: float
    end: float
    face: FaceResult | None = None
    voice: VoiceResult | None = None
    text: TextResult | None = None
    fused: Verdict | None = None  # None only when no modality is present in the window
    # who speaks: a person's id ("p1"), "off_screen" (speech, no visible mouth moving), or None (no
    # speech, or it could not be told: no video, faces not analysed, a detector without landmarks,
    # a visible head that moved too much to watch its mouth)
    speaker: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "start": round(self.start, 3),
            "end": round(self.end, 3),
            "face": self.face.to_dict() if self.face else None,
            "voice": self.voice.to_dict() if self.voice else None,
            "text": self.text.to_dict() if self.text else None,
            "fused": self.fused.to_dict() if self.fused else None,
            "speaker": self.speaker,
        }


@dataclass
class Summary:
    """The whole input: the mean fused distribution over windows, and sentiment."""

    verdict: Verdict | None
    sentiment: Distribution | None
    sentiment_source: str | None  # "text" (text net) or "emotion" (mapped from the fused emotions)
    windows: dict[str, int] = field(default_factory=dict)  # windows in which each modality was present

    @property
    def top(self) -> str | None:
        """The most likely label over the whole input (None when nothing was present)."""
        return self.verdict.top if self.verdict is not None else None

    @property
    def score(self) -> float | None:
        """Its mean fused probability."""
        return self.verdict.score if self.verdict is not None else None

    @property
    def probs(self) -> np.ndarray | None:
        """The mean fused distribution over the labels."""
        return self.verdict.probs if self.verdict is not None else None

    def to_dict(self) -> dict[str, Any]:
        verdict = self.verdict.to_dict() if self.verdict is not None else {"probs": None, "top": None, "score": None}
        return {
            **verdict,
            "sentiment": self.sentiment.probs_dict() if self.sentiment is not None else None,
            "sentiment_source": self.sentiment_source,
            "windows": self.windows,
        }


@dataclass
class Analysis:
    """The result of analysing one input: per-window segments and a summary."""

    model: dict[str, Any]
    media: dict[str, Any]
    labels: list[str]
    segments: list[Segment]
    summary: Summary
    options: dict[str, Any] = field(default_factory=dict)
    people: list[Any] = field(default_factory=list)  # `analysis.people.Person`s, in id order
    schema_version: str = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "model": self.model,
            "media": self.media,
            "labels": self.labels,
            "options": self.options,
            "segments": [s.to_dict() for s in self.segments],
            "people": [p.to_dict() for p in self.people],
            "summary": self.summary.to_dict(),
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)
