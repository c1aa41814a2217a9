"""Transcripts: plain text, .txt, .srt and .vtt subtitles (speech recognition: emofusion.transcription)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import TranscriptError, TranscriptionUnavailable  # noqa: F401  (re-exported: the error family lives in emofusion.errors)


@dataclass(frozen=True)
class TranscriptWord:
    """One recognised word spoken in [start, end) seconds; `probability` is the recogniser's."""

    start: float
    end: float
    text: str
    probability: float = 1.0


@dataclass(frozen=True)
class TranscriptSegment:
    """Text spoken in [start, end) seconds; `end` None means "until the end of the media".

    `words` holds the words with their own times when a recogniser gave them (empty for
    transcripts read from text or subtitles)."""

    start: float
    end: float | None
    text: str
    words: tuple[TranscriptWord, ...] = ()


SUPPORTED_SUFFIXES = (".txt", ".srt", ".vtt")
_TIME = re.compile(r"(?:(\d+):)?(\d{1,2}):(\d{2})[.,](\d{1,3})")
_CUE = re.compile(rf"^\s*({_TIME.pattern})\s*-->\s*({_TIME.pattern})")


def _seconds(match_groups: tuple[str | None, ...]) -> float:
    hours, minutes, seconds, millis = match_groups
    return int(hours or 0) * 3600 + int(minutes) * 60 + int(seconds) + int(millis.ljust(3, "0")) / 1000.0


def _clean(text: str) -> str:
    text = re.sub(r"<[^>]+>", "", text)  # <i>, <v Speaker>, karaoke timestamps
    text = re.sub(r"\{\\[^}]*\}", "", text)  # SSA-style override tags some SRT files carry
    return " ".join(text.split())


def parse_subtitles(content: str) -> list[TranscriptSegment]:
    """Cues of an SRT or WebVTT document, in order; raises TranscriptError when there are none."""
    lines = content.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    segments: list[TranscriptSegment] = []
    i = 0
    while i < len(lines):
        m = _CUE.match(lines[i])
        if not m:
            i += 1
            continue
        groups = m.groups()
        start = _seconds(groups[1:5])
        end = _seconds(groups[6:10])
        i += 1
        body: list[str] = []
        while i < len(lines) and lines[i].strip():
            body.append(lines[i])
            i += 1
        text = _clean(" ".join(body))
        if end < start:
            raise TranscriptError(f"cue ends before it starts ({start:.3f} --> {end:.3f})")
        if text:
            segments.append(TranscriptSegment(start, end, text))
    if not segments:
        raise TranscriptError("no subtitle cues found (expected 'HH:MM:SS,mmm --> HH:MM:SS,mmm' lines)")
    return segments


def read_transcript(path: str | os.PathLike) -> list[TranscriptSegment]:
    """Read a .txt (one text for the whole media), .srt or .vtt file."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise TranscriptError(
            f"unsupported transcript format {suffix or '(no suffix)'!r}; use .txt, .srt or .vtt"
        )
    if not p.is_file():
        raise TranscriptError("no such file" if not p.exists() else "not a file")
    raw = p.read_bytes()
    if b"\x00" in raw[:4096]:
        raise TranscriptError("binary data, not a text transcript")
    try:
        content = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        content = raw.decode("cp1252", errors="replace")
    if suffix == ".txt":
        return from_text(content)
    return parse_subtitles(content)


def from_text(text: str) -> list[TranscriptSegment]:
    """A text without timing applies to the whole media."""
    cleaned = " ".join(text.split())
    if not cleaned:
        raise TranscriptError("the transcript is empty")
    return [TranscriptSegment(0.0, None, cleaned)]
