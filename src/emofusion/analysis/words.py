"""The words an input's windows read: given up front (a transcript, a text), recognised from its
speech while the windows are analysed, or none; and how they were obtained (the result's
`media.transcript`)."""

from __future__ import annotations

import math
import threading
from typing import Any, Protocol

from ..media import Source
from ..transcript import TranscriptSegment
from ..transcription import Transcriber


def describe(source: str, model: str | None = None, reason: str | None = None) -> dict[str, Any]:
    """A result's `media.transcript`: where the words came from (given / asr / none), the ASR
    model, and why there are none."""
    return {"source": source, "model": model, "reason": reason}


class Words(Protocol):
    """Transcript segments an analysis reads, in time order."""

    def start(self) -> None:
        """Begin producing segments (no-op for words known up front)."""

    def until(self, t: float) -> list[TranscriptSegment]:
        """Every segment that starts before `t` (waits until they are known)."""

    def close(self) -> None:
        """Stop producing segments; the analysis is over or abandoned."""

    def has_words(self) -> bool:
        """Whether windows may read words (decided before the analysis starts)."""

    def info(self) -> dict[str, Any]:
        """`media.transcript` (final once `until` has covered the whole input)."""


class GivenWords:
    """A transcript or text the caller gave (empty: a transcript with no lines)."""

    def __init__(self, segments: list[TranscriptSegment]):
        self.segments = segments

    def start(self) -> None:
        pass

    def until(self, t: float) -> list[TranscriptSegment]:
        return self.segments

    def close(self) -> None:
        pass

    def has_words(self) -> bool:
        return bool(self.segments)

    def info(self) -> dict[str, Any]:
        return describe("given")


class NoWords:
    """No words for this input, and why (transcription off, no audio, no model...)."""

    def __init__(self, reason: str, model: str | None = None):
        self.reason, self.model = reason, model

    def start(self) -> None:
        pass

    def until(self, t: float) -> list[TranscriptSegment]:
        return []

    def close(self) -> None:
        pass

    def has_words(self) -> bool:
        return False

    def info(self) -> dict[str, Any]:
        return describe("none", self.model, self.reason)


class _Stopped(Exception):
    """Raised inside the recognition thread to end it early."""


class LiveTranscript:
    """Speech recognised in a background thread, chunk by chunk, while the windows are analysed:
    the face and voice paths do not wait for the whole input's transcription, and only the
    segments (text) are kept. `until(t)` waits until recognition has passed `t` or ended; an
    error in recognition is raised there."""

    def __init__(self, transcriber: Transcriber, audio: Source):
        self.transcriber, self.audio = transcriber, audio
        self._segments: list[TranscriptSegment] = []
        self._covered = 0.0
        self._done = False
        self._error: BaseException | None = None
        self._stop = threading.Event()
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="emofusion-asr", daemon=True)
            self._thread.start()

    def _covered_to(self, t: float) -> None:
        if self._stop.is_set():
            raise _Stopped
        with self._changed:
            self._covered = t
            self._changed.notify_all()

    def _run(self) -> None:
        try:
            for segment in self.transcriber.transcribe_source(self.audio, covered=self._covered_to):
                with self._changed:
                    self._segments.append(segment)
                if self._stop.is_set():
                    break
        except _Stopped:
            pass
        except BaseException as exc:  # handed to the analysis, which raises it
            self._error = exc
        finally:
            with self._changed:
                self._done = True
                self._changed.notify_all()

    def until(self, t: float) -> list[TranscriptSegment]:
        self.start()
        with self._changed:
            self._changed.wait_for(lambda: self._done or self._covered >= t)
            if self._error is not None:
                raise self._error
            return list(self._segments)

    def close(self) -> None:
        self._stop.set()

    def has_words(self) -> bool:
        return True

    def info(self) -> dict[str, Any]:
        segments = self.until(math.inf)
        if not segments:
            return describe("none", self.transcriber.name, "no speech recognised")
        return describe("asr", self.transcriber.name)
