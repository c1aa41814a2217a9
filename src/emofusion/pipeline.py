"""The Analyzer: media -> windows -> batched face / voice / text nets -> fusion -> Analysis.

Long inputs are processed as a stream: windows are handled in blocks, frames are sampled
on a fixed grid and decoded in one forward pass (seeking over long gaps), audio is read
once through a bounded buffer. Memory does not grow with the input's length (beyond the
small per-window results).

A seed checkpoint (one fused multimodal network, `models.seed_backend.SeedBackend`) goes
through the same windows, decoding, results and summary: each window's frames, audio and
text are handed to the network together (`Analyzer._joint_segments`).
"""

from __future__ import annotations

import math
import os
import queue
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import torch

from .faces import FaceDetector, FaceDetectorError, FaceTracker
from .features import crop_face, log_mel, normalize_faces, speech_fraction
from .labels import EMOTION_TO_SENTIMENT
from .limits import (DEFAULT_FRAMES_PER_SECOND, DEFAULT_HOP_SECONDS, DEFAULT_WINDOW_SECONDS, AnalysisError,
                     InvalidOptions, check_options, check_window_count)
from .media import AudioWindowReader, MediaError, MediaInfo, Source, iter_frames, probe
from .models import MODALITIES, EmotionModel, load_model
from .results import Analysis, FaceResult, Segment, Summary, TextResult, Verdict, VoiceResult, probs_dict
from .transcript import TranscriptSegment, from_text, read_transcript, transcribe

ProgressCallback = Callable[[int, int], None]


class ExternalAudioError(MediaError):
    """The separate audio file given beside the input cannot be read (one-line reason)."""


def choose_modalities(model: EmotionModel, modalities: list[str] | tuple[str, ...] | None) -> list[str]:
    """The modalities an analysis with `model` reads: the ones asked for (all the model has when
    None), or InvalidOptions naming one that does not exist or that the model lacks."""
    wanted = list(modalities) if modalities else list(model.modalities)
    unknown = [m for m in wanted if m not in MODALITIES]
    if unknown:
        raise InvalidOptions(f"unknown modality {unknown[0]!r}; choose from {', '.join(MODALITIES)}")
    missing = [m for m in wanted if m not in model.modalities]
    if missing:
        raise InvalidOptions(f"model {model.config.name!r} has no {missing[0]} net (it has: {', '.join(model.modalities)})")
    return wanted


@dataclass(frozen=True)
class Window:
    start: float
    end: float


def make_windows(duration: float, window: float, hop: float) -> list[Window]:
    """Windows [k*hop, k*hop + window) covering [0, duration); the last is cut at the end.
    TooManyWindows (an AnalysisError) when there would be more than `limits.MAX_WINDOWS`."""
    if window <= 0 or hop <= 0:
        raise AnalysisError("window and hop must be positive")
    count = check_window_count(duration, window, hop)
    return [Window(k * hop, min(k * hop + window, duration)) for k in range(count)]


def frame_times(duration: float, fps: float) -> list[float]:
    """The grid of instants at which frames are sampled: the middle of each 1/fps interval."""
    step = 1.0 / fps
    return [(k + 0.5) * step for k in range(max(1, int(math.floor(duration * fps + 1e-9))))]


def _window_texts(block: list[Window], segments: list[TranscriptSegment], duration: float,
                  turns: int = 0) -> tuple[list[str | None], list[str]]:
    """Per window: the transcript text overlapping it (None: none) and the `turns` segments
    before that text as context ("" without)."""
    texts: list[str | None] = []
    contexts: list[str] = []
    for w in block:
        overlapping = [
            k for k, s in enumerate(segments)
            if s.start < w.end and (s.end if s.end is not None else duration + 1) > w.start
        ]
        if not overlapping:
            texts.append(None)
            contexts.append("")
            continue
        texts.append(" ".join(segments[k].text for k in overlapping))
        first = overlapping[0]
        contexts.append(" ".join(s.text for s in segments[max(0, first - turns) : first]) if turns else "")
    return texts, contexts


@dataclass
class _Run:
    """State of one analysis (an Analyzer may serve several at once)."""

    info: MediaInfo
    frame_buffer: list["_FrameResult"]
    text_cache: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]
    faces_end: float | None = None  # the last frame result's time, once the face results have ended


@dataclass
class _FrameResult:
    time: float
    probs: np.ndarray | None  # None: no face in this frame
    faces: int
    box: list[int] | None


# What the CPU stage of the face path finds in one sampled frame: (time in s, the face crop the
# net reads (uint8, FaceConfig.size square) or None, the number of faces found, the box
# [x, y, w, h] in displayed-frame pixels or None). `Analyzer.observe_faces` returns them and
# `Analyzer.analyze(face_observations=...)` takes them, so decoding and detection can run
# elsewhere than the nets (the Ray engine's decode stage).
FaceObservation = tuple[float, "np.ndarray | None", int, "list[int] | None"]


FACE_BATCH = 32  # face crops per face-net call

# The face path decodes in one thread: it runs beside face detection and the nets, which keep the
# other cores busy, and FFmpeg's frame threads cost more CPU time for little wall time even alone
# (every frame of the 10 s x264 720p clip on 2 idle cores: 1.4-1.8x the CPU time of one thread,
# between 13% less and 15% more wall time in two runs; benchmarks/bench_analyze.py measures both).
DECODE_THREADS = 1


def _beside_workers() -> int:
    """Torch threads for the nets while the face worker threads still decode and detect: one
    fewer than set, so the nets' threads do not fight the workers for the cores (on 2 cores,
    OpenMP threads otherwise wait at every barrier for a thread the workers displaced). The
    nets' outputs do not depend on the thread count (checked: bit-identical)."""
    return max(1, torch.get_num_threads() - 1)


@contextmanager
def _torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with `n` torch intra-op threads (None: unchanged), then restore them.
    The count is per calling thread (OpenMP); torch also remembers the last value set as
    the default of threads that start using torch later, and the restore puts it back."""
    before = torch.get_num_threads()
    if n is None or n == before:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class _Stream:
    """The face results' iterator; close() stops and joins the worker threads even when
    iteration never started."""

    def __init__(self, gen: Iterator[_FrameResult], stop: threading.Event, workers: list[threading.Thread]):
        self._gen, self._stop, self._workers = gen, stop, workers

    def __iter__(self) -> "_Stream":
        return self

    def __next__(self) -> _FrameResult:
        return next(self._gen)

    @property
    def busy(self) -> bool:
        """Whether the worker threads are still decoding or detecting."""
        return any(w.is_alive() for w in self._workers)

    def close(self) -> None:
        self._gen.close()
        self._stop.set()
        for worker in self._workers:
            worker.join()


class _WindowFrames:
    """Each window's frames for a seed model's video encoder, sampled and resized as training
    samples a clip (`models.seed.preprocess`: `frames` instants spread over the window, RGB,
    `size` x `size`, a short tail repeating its last frame).

    The instants of all windows are decoded in one forward pass (`iter_frames`, seeking over
    gaps); overlapping windows share the frames at common instants. Only the resized frames
    of the windows not yet handed out are kept.
    """

    def __init__(self, source: Source, windows: list[Window], frames: int, size: int):
        from .models.seed.preprocess import sample_times

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
        from .models.seed.preprocess import fill_frames, square_frame

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


class Analyzer:
    """Analyse a video or audio file (a path or its bytes) into a timeline of emotions.

    >>> Analyzer(model="default").analyze("clip.mp4").to_dict()
    """

    def __init__(
        self,
        model: str | os.PathLike | EmotionModel = "default",
        *,
        window: float = DEFAULT_WINDOW_SECONDS,
        hop: float = DEFAULT_HOP_SECONDS,
        modalities: list[str] | tuple[str, ...] | None = None,
        frames_per_second: float = DEFAULT_FRAMES_PER_SECOND,
        face_detector: str = "haar",
        detect_max_side: int = 640,
        detect_side: int = 320,
        min_speech_fraction: float = 0.2,
        block_windows: int = 64,
    ):
        window, hop, frames_per_second = check_options(window, hop, frames_per_second)
        # a name or folder is loaded; a model object (an EmotionModel or a view of one, such as the
        # service's micro-batching BatchedModel) is used as given
        self.model = load_model(model, load_text_encoder=False) if isinstance(model, (str, os.PathLike)) else model
        self.model.prepare_inference()
        # a seed checkpoint (models.seed_backend) is one fused network: each window's media goes to
        # its predict_windows instead of through face / voice / text nets and their fusion
        self.joint = bool(getattr(self.model, "joint", False))
        self.modalities = choose_modalities(self.model, modalities)
        self.window, self.hop = float(window), float(hop)
        self.frames_per_second = float(frames_per_second)
        self.detect_max_side = detect_max_side  # frames are sampled at most this large (face crops come from them)
        self.detect_side = detect_side  # full-frame face detection runs on a copy at most this large
        self.min_speech_fraction = min_speech_fraction
        self.block_windows = max(1, block_windows)
        self._detector: FaceDetector | None = None
        if "face" in self.modalities and not self.joint:
            try:
                self._detector = FaceDetector(face_detector)
            except FaceDetectorError as exc:
                raise AnalysisError(str(exc)) from None
        self.labels = self.model.labels

    # ------------------------------------------------------------------------------------
    def analyze(
        self,
        source: Source,
        *,
        audio: Source | None = None,
        transcript: str | os.PathLike | list[TranscriptSegment] | None = None,
        text: str | None = None,
        transcribe_audio: bool = False,
        progress: ProgressCallback | None = None,
        face_observations: list[FaceObservation] | None = None,
    ) -> Analysis:
        """Analyse one input. `audio` replaces the input's own audio track; `transcript` is a
        .txt/.srt/.vtt path or segments; `text` a plain string for the whole input.
        `face_observations` (from `observe_faces` on the same input, possibly in another
        process) replace decoding and face detection here; the result is the same.

        Raises MediaError (unreadable media), TranscriptError, or AnalysisError.
        """
        info, audio_source, duration = self._probe(source, audio)
        if transcript is not None and text is not None:
            raise AnalysisError("give a transcript or a text, not both")
        segments_text: list[TranscriptSegment] | None = None
        if isinstance(transcript, list):
            segments_text = transcript
        elif transcript is not None:
            segments_text = read_transcript(transcript)
        elif text is not None:
            segments_text = from_text(text)
        elif transcribe_audio and "text" in self.modalities:
            if audio_source is None:
                raise AnalysisError("cannot transcribe: the input has no audio")
            if isinstance(audio_source, bytes):
                raise AnalysisError("transcription needs a file path, not bytes")
            segments_text = transcribe(audio_source)

        use_face = "face" in self.modalities and info.has_video
        use_voice = "voice" in self.modalities and audio_source is not None
        use_text = "text" in self.modalities and bool(segments_text)
        windows = make_windows(duration, self.window, self.hop)
        results: list[Segment] = []
        run = _Run(info=info, frame_buffer=[], text_cache={})
        audio_reader = AudioWindowReader(audio_source) if use_voice else None
        face_stream = None
        frames = None
        try:
            if use_face and not self.joint:
                face_stream = (self._face_stream(source, duration, run) if face_observations is None
                               else self._net_stream(iter(face_observations), []))
            if use_face and self.joint:
                frames = _WindowFrames(source, windows, self.model.frames_per_window, self.model.frame_size)
            if progress:
                progress(0, len(windows))
            for block_start in range(0, len(windows), self.block_windows):
                block = windows[block_start : block_start + self.block_windows]
                if self.joint:
                    results.extend(self._joint_segments(block, frames, audio_reader,
                                                        segments_text if use_text else None, duration))
                else:
                    # voice and text first: they run here while the face worker threads decode and
                    # detect ahead; the face results of the block are collected after them
                    with _torch_threads(_beside_workers() if face_stream is not None and face_stream.busy else None):
                        voices = self._voices_for(block, audio_reader) if audio_reader is not None else [None] * len(block)
                        texts = self._texts_for(block, segments_text, duration, run) if use_text else [None] * len(block)
                    faces = self._faces_for(block, face_stream, run) if face_stream is not None else [None] * len(block)
                    for w, f, v, t in zip(block, faces, voices, texts):
                        results.append(self._segment(w, f, v, t))
                done = block_start + len(block)
                end = self._decoded_end(run, audio_reader, face_stream, frames)
                if end is not None and done < len(windows) and windows[done].start >= end:
                    # every stream read has ended (the headers claimed more): later windows would be empty
                    windows = [w for w in windows[:done] if w.start < end]
                    del results[len(windows):]
                    duration = windows[-1].end if windows else 0.0
                if progress:
                    progress(min(len(windows), done), len(windows))
                if done >= len(windows):
                    break
        finally:
            if audio_reader is not None:
                audio_reader.close()
            if face_stream is not None:
                face_stream.close()
            if frames is not None:
                frames.close()
        return Analysis(
            model={
                "name": self.model.config.name,
                "version": self.model.config.version,
                "trained": self.model.is_trained,
                "parts": {m: bool(self.model.config.trained.get(m, False)) for m in self.model.modalities},
            },
            media={
                **info.to_dict(),
                "duration": round(duration, 3),
                "has_audio": audio_source is not None,
                "external_audio": audio is not None,
                "has_transcript": bool(segments_text),
            },
            labels=list(self.labels),
            segments=results,
            summary=self._summary(results),
            options={
                "window": self.window,
                "hop": self.hop,
                "modalities": list(self.modalities),
                "frames_per_second": self.frames_per_second,
            },
        )

    @staticmethod
    def _decoded_end(run: _Run, audio: AudioWindowReader | None, faces: _Stream | None,
                     frames: _WindowFrames | None) -> float | None:
        """Where the media read ended (seconds) once every stream read has reached its end; None
        while one has not, or when none is read (text alone)."""
        ends = [e.end for e in (audio, frames) if e is not None]
        if faces is not None:
            ends.append(run.faces_end)
        if not ends or None in ends:
            return None
        return max(ends)

    def _probe(self, source: Source, audio: Source | None) -> tuple[MediaInfo, Source | None, float]:
        """The input's media info, where its audio comes from (None: no audio) and the duration analysed."""
        info = probe(source)
        audio_source: Source | None = source if info.has_audio else None
        audio_info: MediaInfo | None = info if info.has_audio else None
        if audio is not None:
            try:
                audio_info = probe(audio)
            except MediaError as exc:
                raise ExternalAudioError(str(exc)) from None
            if not audio_info.has_audio:
                raise MediaError("the --audio file has no audio stream")
            audio_source = audio
        return info, audio_source, max(info.duration, audio_info.duration if audio_info else 0.0)

    def observe_faces(self, source: Source, *, audio: Source | None = None) -> list[FaceObservation]:
        """The CPU stage of the face path on its own: decode the sampled frames of `source`, find
        and crop the faces, in time order (no net runs). Empty when faces are not analysed (no
        face modality, no video, a seed model). Raises MediaError as `analyze` does."""
        info, _, duration = self._probe(source, audio)
        if "face" not in self.modalities or self.joint or not info.has_video:
            return []
        frames = iter_frames(source, frame_times(duration, self.frames_per_second), fmt="gray",
                             max_side=self.detect_max_side, threads=DECODE_THREADS)
        return list(self._observe(frames, info))

    def _observe(self, frames: Iterable[tuple[float, np.ndarray]], info: MediaInfo) -> Iterator[FaceObservation]:
        """Sampled gray frames -> face observations (a tracker follows the face between frames)."""
        assert self._detector is not None
        cfg = self.model.config.face_preprocess
        tracker = FaceTracker(self._detector, detect_max_side=self.detect_side)
        for t, frame in frames:
            box, faces = tracker.find(frame)
            if box is None:
                yield (t, None, 0, None)
            else:
                # boxes are reported in displayed-frame pixels, whatever size was sampled
                s = (info.width / frame.shape[1]) if info.width else 1.0
                yield (t, crop_face(frame, box, cfg), faces, [int(round(v * s)) for v in box])

    # ------------------------------------------------------------------------------------
    # face
    def _face_stream(self, source: Source, duration: float, run: _Run) -> _Stream:
        """Frame results in time order.

        Two worker threads, started at once: one decodes the sampled frames, the other finds
        faces in them (PyAV and OpenCV release the GIL), while the consuming thread runs the
        face net in batches, so decoding, detection and the models overlap. The queues
        between them are bounded: memory does not grow with the input.
        """
        times = frame_times(duration, self.frames_per_second)
        assert self.model.face is not None and self._detector is not None
        found: queue.Queue = queue.Queue(maxsize=FACE_BATCH * 2)
        stop = threading.Event()
        end_marker = object()
        decoded: queue.Queue = queue.Queue(maxsize=4)  # sampled frames waiting for detection

        def put_to(q: queue.Queue, item: object) -> bool:
            while not stop.is_set():
                try:
                    q.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def decode() -> None:
            try:
                for pair in iter_frames(source, times, fmt="gray", max_side=self.detect_max_side,
                                        threads=DECODE_THREADS):
                    if not put_to(decoded, pair):
                        return
            except BaseException as exc:  # handed to the detection thread, raised there
                put_to(decoded, exc)
            finally:
                put_to(decoded, end_marker)

        def sampled() -> Iterator[tuple[float, np.ndarray]]:
            while True:
                try:
                    item = decoded.get(timeout=0.1)
                except queue.Empty:
                    if stop.is_set():
                        return
                    continue
                if item is end_marker:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item

        def produce() -> None:
            try:
                for item in self._observe(sampled(), run.info):
                    if not put_to(found, item):
                        return
            except BaseException as exc:  # handed to the consumer, raised there
                put_to(found, exc)
            finally:
                put_to(found, end_marker)

        workers = [
            threading.Thread(target=decode, name="emofusion-decode", daemon=True),
            threading.Thread(target=produce, name="emofusion-faces", daemon=True),
        ]
        for worker in workers:  # at once, not at the first next(): they work while voice and text run
            worker.start()

        def observed() -> Iterator[FaceObservation]:
            while True:
                item = found.get()
                if item is end_marker:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item

        return self._net_stream(observed(), workers, stop, lambda: found.empty())

    def _net_stream(self, observations: Iterator[FaceObservation], workers: list[threading.Thread],
                    stop: threading.Event | None = None, caught_up: Callable[[], bool] = lambda: False) -> _Stream:
        """Face observations -> frame results: the face net runs on batches of crops (a full batch,
        or 8 or more when `caught_up()` says the producer is behind)."""
        cfg = self.model.config.face_preprocess
        stop = stop if stop is not None else threading.Event()

        def generate() -> Iterator[_FrameResult]:
            pending: list[FaceObservation] = []

            def flush() -> list[_FrameResult]:
                crops = [c for _, c, _, _ in pending if c is not None]
                probs = None
                if crops:
                    busy = any(w.is_alive() for w in workers)
                    with _torch_threads(_beside_workers() if busy else None):
                        probs = self.model.face_probs(normalize_faces(np.stack(crops), cfg))
                out, k = [], 0
                for t, crop, n, box in pending:
                    if crop is None:
                        out.append(_FrameResult(t, None, 0, None))
                    else:
                        assert probs is not None
                        out.append(_FrameResult(t, probs[k], n, box))
                        k += 1
                pending.clear()
                return out

            try:
                for item in observations:
                    pending.append(item)
                    # run the net on a full batch, or on what there is when the producer is behind
                    if len(pending) >= FACE_BATCH or (caught_up() and len(pending) >= 8):
                        yield from flush()
                if pending:
                    yield from flush()
            finally:
                stop.set()
                for worker in workers:
                    worker.join()

        return _Stream(generate(), stop, workers)

    def _faces_for(self, block: list[Window], stream: _Stream, run: _Run) -> list[FaceResult | None]:
        """Consume the frame results up to the block's end and aggregate them per window."""
        end = block[-1].end
        latest = run.frame_buffer[-1].time if run.frame_buffer else -math.inf
        # frames before this block's first window are no longer needed
        buffer = [f for f in run.frame_buffer if f.time >= block[0].start]
        while not buffer or buffer[-1].time < end:
            try:
                buffer.append(next(stream))
            except StopIteration:
                run.faces_end = buffer[-1].time if buffer else latest
                break
        run.frame_buffer = buffer
        out: list[FaceResult | None] = []
        for w in block:
            frames = [f for f in buffer if w.start <= f.time < w.end]
            with_face = [f for f in frames if f.probs is not None]
            if not with_face:
                out.append(None)
                continue
            mean = np.mean([f.probs for f in with_face], axis=0)
            mid = (w.start + w.end) / 2
            rep = min(with_face, key=lambda f: abs(f.time - mid))
            out.append(
                FaceResult(
                    probs=self._probs(mean),
                    faces=max(f.faces for f in with_face),
                    box=list(rep.box or []),
                    frames=len(with_face),
                )
            )
        return out

    # ------------------------------------------------------------------------------------
    # voice
    def _voiced(self, block: list[Window], reader: AudioWindowReader) -> list[tuple[np.ndarray, float] | None]:
        """Each window's audio and speech fraction; None where it is shorter than 0.5 s or not
        speech-like (the voice is absent there)."""
        min_samples = int(0.5 * reader.sample_rate)
        out: list[tuple[np.ndarray, float] | None] = []
        for w in block:
            wav = reader.read(w.start, w.end)
            frac = speech_fraction(wav) if len(wav) >= min_samples else 0.0
            out.append((wav, frac) if len(wav) >= min_samples and frac >= self.min_speech_fraction else None)
        return out

    def _voices_for(self, block: list[Window], reader: AudioWindowReader) -> list[VoiceResult | None]:
        mel_cfg = self.model.config.mel
        chunks = [(i, *v) for i, v in enumerate(self._voiced(block, reader)) if v is not None]
        out: list[VoiceResult | None] = [None] * len(block)
        by_length: dict[int, list[tuple[int, np.ndarray, float]]] = {}
        for chunk in chunks:
            by_length.setdefault(len(chunk[1]), []).append(chunk)
        for group in by_length.values():
            mels = log_mel(torch.from_numpy(np.stack([c[1] for c in group])), mel_cfg)
            probs = self.model.with_voice_functionals(self.model.voice_probs(mels), [c[1] for c in group])
            for (i, _, frac), p in zip(group, probs):
                out[i] = VoiceResult(self._probs(p), frac)
        return out

    # ------------------------------------------------------------------------------------
    # text
    def _texts_for(self, block: list[Window], segments: list[TranscriptSegment] | None,
                   duration: float, run: _Run) -> list[TextResult | None]:
        assert segments
        cfg = self.model.config.text or {}
        texts, contexts = _window_texts(block, segments, duration, int(cfg.get("context_turns", 0)))
        unique = sorted({(t, c) for t, c in zip(texts, contexts) if t is not None})
        cache = run.text_cache
        todo = [pair for pair in unique if pair not in cache]
        if todo:
            emo, sent = self.model.text_probs([t for t, _ in todo], [c for _, c in todo])
            for pair, e, s in zip(todo, emo, sent):
                cache[pair] = (e, s)
        sentiment_labels = self.model.config.sentiment_labels
        out: list[TextResult | None] = []
        for t, c in zip(texts, contexts):
            if t is None:
                out.append(None)
                continue
            e, s = cache[(t, c)]
            out.append(TextResult(self._probs(e), t, probs_dict(sentiment_labels, s)))
        return out

    # ------------------------------------------------------------------------------------
    # one fused model (a seed checkpoint)
    def _joint_segments(self, block: list[Window], frames: _WindowFrames | None, reader: AudioWindowReader | None,
                        segments: list[TranscriptSegment] | None, duration: float) -> list[Segment]:
        """The block's segments from a joint model: each window's frames, voiced audio and
        transcript text go to `model.predict_windows` together.

        `fused` is the model with every modality the window has. `face`, `voice` and `text`
        hold the same model's prediction from that modality alone (its missing-modality
        inference), present where the modality is: `face` where frames decode (the video
        encoder reads the whole picture: `box` is the whole frame, `faces` 1, no face
        detection runs; `frames` counts the decoded ones), `voice` where the audio passes the
        same speech gate as the voice net's, `text` where transcript text overlaps. A text
        result's `sentiment` is the model's sentiment head on the text alone, or without one
        its emotions mapped to valence.
        """
        from .models.seed_backend import WindowInputs

        clips = frames.take(block) if frames is not None else [None] * len(block)
        voiced = self._voiced(block, reader) if reader is not None else [None] * len(block)
        texts = _window_texts(block, segments, duration)[0] if segments else [None] * len(block)
        inputs = [WindowInputs(frames=c[0] if c else None, audio=v[0] if v else None, text=t)
                  for c, v, t in zip(clips, voiced, texts)]
        predictions = self.model.predict_windows(inputs)
        box = [0, 0, *frames.frame_size] if frames is not None and frames.frame_size else [0, 0, 0, 0]
        sentiment_labels = self.model.config.sentiment_labels
        out: list[Segment] = []
        for w, clip, v, t, pred in zip(block, clips, voiced, texts, predictions):
            if pred is None:
                out.append(Segment(w.start, w.end))
                continue
            parts = pred.parts
            face = FaceResult(self._probs(parts["face"]), 1, list(box), clip[1]) if "face" in parts and clip else None
            voice = VoiceResult(self._probs(parts["voice"]), v[1]) if "voice" in parts and v else None
            text = None
            if "text" in parts and t:
                sent = pred.sentiment.get("text")
                sent = sent if sent is not None else self._emotion_sentiment(parts["text"])
                text = TextResult(self._probs(parts["text"]), t, probs_dict(sentiment_labels, sent / max(sent.sum(), 1e-12)))
            out.append(Segment(w.start, w.end, face, voice, text, Verdict.from_probs(self.labels, pred.fused)))
        return out

    # ------------------------------------------------------------------------------------
    def _probs(self, p: np.ndarray) -> dict[str, float]:
        return probs_dict(self.labels, p)

    def _emotion_sentiment(self, probs: np.ndarray) -> np.ndarray:
        """Emotion probabilities (labels order) mapped to valence, in sentiment_labels order."""
        sentiment_labels = list(self.model.config.sentiment_labels)
        sent = np.zeros(len(sentiment_labels))
        for label, p in zip(self.labels, probs):
            target = EMOTION_TO_SENTIMENT.get(label)
            if target in sentiment_labels:
                sent[sentiment_labels.index(target)] += p
        return sent

    def _vector(self, probs: dict[str, float]) -> np.ndarray:
        return np.array([probs[label] for label in self.labels], dtype=np.float64)

    def _segment(self, w: Window, face: FaceResult | None, voice: VoiceResult | None, text: TextResult | None) -> Segment:
        present = {
            "face": self._vector(face.probs) if face else None,
            "voice": self._vector(voice.probs) if voice else None,
            "text": self._vector(text.probs) if text else None,
        }
        fused = self.model.fuse(present)
        verdict = Verdict.from_probs(self.labels, fused) if fused is not None else None
        return Segment(w.start, w.end, face, voice, text, verdict)

    def _summary(self, segments: list[Segment]) -> Summary:
        counts = {m: sum(1 for s in segments if getattr(s, m) is not None) for m in MODALITIES}
        counts["fused"] = sum(1 for s in segments if s.fused is not None)
        fused = [self._vector(s.fused.probs) for s in segments if s.fused is not None]
        if not fused:
            return Summary(None, None, None, None, None, counts)
        mean = np.mean(fused, axis=0)
        mean = mean / mean.sum()
        verdict = Verdict.from_probs(self.labels, mean)
        sentiment_labels = list(self.model.config.sentiment_labels)
        # text results carry a text net's sentiment, unless the model has none (a seed model
        # without a sentiment head maps emotions to valence there too)
        texts = [s.text for s in segments if s.text is not None] if getattr(self.model, "text_sentiment", True) else []
        if texts:
            sent = np.mean([[t.sentiment[k] for k in sentiment_labels] for t in texts], axis=0)
            source = "text"
        else:
            sent = self._emotion_sentiment(mean)
            source = "emotion"
        sent = sent / sent.sum() if sent.sum() > 0 else sent
        return Summary(
            verdict.probs, verdict.top, verdict.score,
            probs_dict(sentiment_labels, sent), source, counts,
        )
