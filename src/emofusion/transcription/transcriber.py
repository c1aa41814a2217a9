"""Speech to words with faster-whisper: a :class:`Transcriber` over 16 kHz mono float32 audio.

The Whisper model is loaded once per (folder, compute type) and shared by every Transcriber in
the process. Decoding is greedy (beam 1) with int8 weights and faster-whisper's Silero VAD
filter, with word timestamps. Long inputs are cut into chunks of about ``chunk_seconds``, each
cut placed in the longest pause near the chunk's end, so memory stays bounded and segments come
out lazily, chunk by chunk.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np

from ..cores import usable_cores
from ..errors import TranscriptionUnavailable
from ..transcript import TranscriptSegment, TranscriptWord
from .models import ENV_MODEL, LEGACY_ENV_MODEL, ResolvedModel, how_to_get_a_model, resolve_model

SAMPLE_RATE = 16000
#: Chunk length for long inputs (seconds): two Whisper windows, small enough to bound memory.
CHUNK_SECONDS = 60.0
#: How far back from a chunk's end to look for a pause to cut in (seconds).
CUT_SEARCH_SECONDS = 15.0

_LOADED: dict[tuple[str, str, int], Any] = {}
_LOAD_LOCK = threading.Lock()
#: How many times a Whisper model was loaded in this process (for tests and diagnostics).
load_count = 0


def _load(path: str, compute_type: str, cpu_threads: int):
    global load_count
    key = (path, compute_type, cpu_threads)
    with _LOAD_LOCK:
        model = _LOADED.get(key)
        if model is None:
            try:
                from faster_whisper import WhisperModel
            except ImportError:
                raise TranscriptionUnavailable("transcription needs faster-whisper: pip install faster-whisper") from None
            try:
                model = WhisperModel(path, device="cpu", compute_type=compute_type, cpu_threads=cpu_threads,
                                     local_files_only=True)
            except (RuntimeError, ValueError, OSError) as exc:
                first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise TranscriptionUnavailable(f"cannot load ASR model {path}: {first}") from None
            _LOADED[key] = model
            load_count += 1
        return model


def unload_all() -> None:
    """Forget every loaded model (frees their memory once no Transcriber holds them)."""
    with _LOAD_LOCK:
        _LOADED.clear()


class Transcriber:
    """Transcribes speech with one Whisper model.

    ``model`` is anything :func:`~emofusion.transcription.resolve_model` takes (a folder, a size
    name, None for the environment or the offline default) or a :class:`ResolvedModel`. The
    model is resolved at construction (errors surface early) and loaded on first use.
    ``language`` (an ISO code such as ``"en"``) fixes the language; None detects it per chunk.
    ``cpu_threads``: CTranslate2 threads (None: one per usable core).
    """

    def __init__(self, model: ResolvedModel | str | os.PathLike | None = None, *, language: str | None = None,
                 compute_type: str = "int8", cpu_threads: int | None = None, allow_download: bool = False,
                 chunk_seconds: float = CHUNK_SECONDS):
        self.model = model if isinstance(model, ResolvedModel) else resolve_model(model, allow_download=allow_download)
        self.compute_type = compute_type
        # one CTranslate2 thread per usable core (its own default is 4, which oversubscribes 2 cores)
        self.cpu_threads = int(cpu_threads) if cpu_threads is not None else len(usable_cores())
        if chunk_seconds < 5.0:
            raise ValueError("chunk_seconds must be at least 5")
        self.chunk_seconds = float(chunk_seconds)
        self.language = language
        if language is not None:
            self._check_language(language)

    @property
    def name(self) -> str:
        """The model's name (a size name such as ``base`` when known)."""
        return self.model.name

    def _whisper(self):
        return _load(str(self.model.path), self.compute_type, self.cpu_threads)

    def _check_language(self, language: str) -> None:
        whisper = self._whisper()
        supported = whisper.supported_languages
        if language not in supported:
            if not whisper.model.is_multilingual:
                raise TranscriptionUnavailable(
                    f"ASR model {self.name} is English-only and cannot transcribe language {language!r}")
            raise TranscriptionUnavailable(f"ASR model {self.name} does not know language {language!r}")

    def load(self) -> "Transcriber":
        """Load the model now (it is otherwise loaded by the first transcription)."""
        self._whisper()
        return self

    # -- transcription ------------------------------------------------------------------
    def transcribe(self, audio: np.ndarray, *, offset: float = 0.0) -> Iterator[TranscriptSegment]:
        """Segments of 16 kHz mono float32 ``audio``; times in seconds plus ``offset``."""
        audio = np.asarray(audio, dtype=np.float32)
        if audio.ndim != 1:
            raise ValueError("audio must be mono (one dimension)")
        step = int(self.chunk_seconds * SAMPLE_RATE)
        blocks = (audio[i : i + step] for i in range(0, len(audio), step))
        return self.transcribe_stream(blocks, offset=offset)

    def transcribe_source(self, source, *, start: float = 0.0,
                          covered: Callable[[float], None] | None = None) -> Iterator[TranscriptSegment]:
        """Segments of a media file's audio track, decoded once with
        :class:`~emofusion.media.AudioWindowReader` (bounded memory, no temporary files).
        ``covered(t)`` is called after each chunk: every segment before ``t`` has been yielded."""
        from ..media import AudioWindowReader

        def blocks() -> Iterator[np.ndarray]:
            with AudioWindowReader(source, SAMPLE_RATE) as reader:
                t = start
                while True:
                    block = reader.read(t, t + self.chunk_seconds)
                    if block.size == 0:
                        return
                    yield block
                    t += self.chunk_seconds

        return self.transcribe_stream(blocks(), offset=start, covered=covered)

    def transcribe_stream(self, blocks: Iterable[np.ndarray], *, offset: float = 0.0,
                          covered: Callable[[float], None] | None = None) -> Iterator[TranscriptSegment]:
        """Segments of consecutive 16 kHz mono blocks (any lengths), chunk by chunk; ``covered``
        as for :meth:`transcribe_source`."""
        chunk = int(self.chunk_seconds * SAMPLE_RATE)
        pending: list[np.ndarray] = []
        held = 0
        t0 = float(offset)  # time of pending's first sample
        for block in blocks:
            block = np.asarray(block, dtype=np.float32).reshape(-1)
            if block.size == 0:
                continue
            pending.append(block)
            held += block.size
            while held >= chunk:
                buffer = np.concatenate(pending)
                cut = _cut_point(buffer[:chunk], self._whisper())
                yield from self._decode(buffer[:cut], t0)
                t0 += cut / SAMPLE_RATE
                if covered is not None:
                    covered(t0)
                rest = buffer[cut:]
                pending, held = ([rest] if rest.size else []), rest.size
        if held:
            yield from self._decode(np.concatenate(pending), t0)
        if covered is not None:
            covered(math.inf)

    def _decode(self, audio: np.ndarray, t0: float) -> Iterator[TranscriptSegment]:
        if audio.size < SAMPLE_RATE // 10:  # under 0.1 s: nothing Whisper can read
            return
        segments, _info = self._whisper().transcribe(
            audio, language=self.language, beam_size=1, best_of=1, vad_filter=True, word_timestamps=True,
            condition_on_previous_text=False,
        )
        for s in segments:
            text = s.text.strip()
            if not any(ch.isalnum() for ch in text):  # "." or "..." heard in a tone or noise: no words
                continue
            words = tuple(
                TranscriptWord(round(t0 + float(w.start), 3), round(t0 + float(w.end), 3), w.word.strip(),
                               round(float(w.probability), 4))
                for w in (s.words or ()) if w.word.strip()
            )
            yield TranscriptSegment(round(t0 + float(s.start), 3), round(t0 + float(s.end), 3), text, words)


def _cut_point(audio: np.ndarray, whisper) -> int:
    """Where to end a chunk (sample index): the middle of the longest pause in its last
    CUT_SEARCH_SECONDS, or its end when the speech runs through."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    n = audio.size
    lo = max(0, n - int(CUT_SEARCH_SECONDS * SAMPLE_RATE))
    tail = audio[lo:]
    spans = get_speech_timestamps(tail, VadOptions(min_silence_duration_ms=200, speech_pad_ms=50))
    if not spans:
        return n  # no speech near the end: cut anywhere
    bounds = [0] + [x for s in spans for x in (s["start"], s["end"])] + [tail.size]
    gaps = [(bounds[i + 1] - bounds[i], bounds[i], bounds[i + 1]) for i in range(0, len(bounds), 2)]
    # a pause that touches the chunk's start or end is cut at its inner edge's side
    length, a, b = max(gaps)
    if length <= 0:
        return n
    if b == tail.size:  # trailing silence: cut at its end, keeps no speech for the next chunk
        return n
    return lo + (a + b) // 2


def transcribe(source: str | os.PathLike | bytes, model: str | os.PathLike | None = None,
               language: str | None = None) -> list[TranscriptSegment]:
    """Transcribe a media file's speech with faster-whisper (see :mod:`emofusion.transcription`).

    The model is ``model`` or $EMOFUSION_ASR_MODEL ($EMOFUSION_WHISPER_MODEL, its former name): a
    folder or a size name in the local cache; never downloads. Until the analysis chooses the
    offline default itself (``--transcribe auto``), naming no model is an error here.
    Raises TranscriptionUnavailable with the ways to get a model.
    """
    model = model or os.environ.get(ENV_MODEL) or os.environ.get(LEGACY_ENV_MODEL)
    if not model:
        raise TranscriptionUnavailable(f"transcription needs a faster-whisper model: {how_to_get_a_model()}, "
                                       "or pass --transcript")
    return list(Transcriber(model, language=language).transcribe_source(source))
