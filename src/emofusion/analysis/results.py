"""Typed results of an analysis, and their JSON form (contract v1)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

SCHEMA_VERSION = "1.0"


def probs_dict(labels: list[str], probs) -> dict[str, float]:
    """{label: probability} rounded for JSON (6 decimals)."""
    return {label: round(float(p), 6) for label, p in zip(labels, probs)}


@dataclass
class FaceResult:
    """What the face net saw in a window: mean probabilities over the sampled frames with a face."""

    probs: dict[str, float]
    faces: int  # most faces seen in one sampled frame of the window
    box: list[int]  # x, y, width, height of the analysed (largest) face, in displayed-frame pixels
    frames: int  # sampled frames of the window in which a face was analysed

    def to_dict(self) -> dict[str, Any]:
        return {"probs": self.probs, "faces": self.faces, "box": self.box, "frames": self.frames}


@dataclass
class VoiceResult:
    """What the voice net heard in a window (only windows with speech-like energy)."""

    probs: dict[str, float]
    speech_fraction: float

    def to_dict(self) -> dict[str, Any]:
        return {"probs": self.probs, "speech_fraction": round(self.speech_fraction, 4)}


@dataclass
class TextResult:
    """What the text net read in the transcript overlapping a window."""

    probs: dict[str, float]
    text: str
    sentiment: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return {"probs": self.probs, "text": self.text, "sentiment": self.sentiment}


@dataclass
class Verdict:
    """A distribution over the labels with its most likely label."""

    probs: dict[str, float]
    top: str
    score: float

    @classmethod
    def from_probs(cls, labels: list[str], probs) -> "Verdict":
        d = probs_dict(labels, probs)
        top = max(d, key=d.__getitem__)
        return cls(d, top, d[top])

    def to_dict(self) -> dict[str, Any]:
        return {"probs": self.probs, "top": self.top, "score": self.score}


@dataclass
class Segment:
    """One window of time and what each modality and the fusion said about it."""

    start: float
    end: float
    face: FaceResult | None = None
    voice: VoiceResult | None = None
    text: TextResult | None = None
    fused: Verdict | None = None  # None only when no modality is present in the window

    def to_dict(self) -> dict[str, Any]:
        return {
            "start": round(self.start, 3),
            "end": round(self.end, 3),
            "face": self.face.to_dict() if self.face else None,
            "voice": self.voice.to_dict() if self.voice else None,
            "text": self.text.to_dict() if self.text else None,
            "fused": self.fused.to_dict() if self.fused else None,
        }


@dataclass
class Summary:
    """The whole input: mean fused distribution over windows, and sentiment."""

    probs: dict[str, float] | None
    top: str | None
    score: float | None
    sentiment: dict[str, float] | None
    sentiment_source: str | None  # "text" (text net) or "emotion" (mapped from the fused emotions)
    windows: dict[str, int] = field(default_factory=dict)  # windows in which each modality was present

    def to_dict(self) -> dict[str, Any]:
        return {
            "probs": self.probs,
            "top": self.top,
            "score": self.score,
            "sentiment": self.sentiment,
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
    schema_version: str = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "model": self.model,
            "media": self.media,
            "labels": self.labels,
            "options": self.options,
            "segments": [s.to_dict() for s in self.segments],
            "summary": self.summary.to_dict(),
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)
