"""The face path: sampled frames -> face detection and crop (preprocess) -> the face net on
batches of crops (forward) -> each window's mean over its frames with a face (postprocess).

Decoding and detection run in two worker threads, started at once, while the calling thread runs
the nets (PyAV and OpenCV release the GIL), so decoding, detection and the models overlap. The
queues between them are bounded: memory does not grow with the input.
"""

from __future__ import annotations

import math
import queue
import threading
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

import numpy as np

from ..media.faces import FaceDetector, FaceTracker
from ..features import crop_face, normalize_faces
from ..media import MediaInfo, Source, iter_frames
from ..models.interfaces import LateFusionModel
from .results import FaceResult
from .threads import beside_workers, torch_threads
from .windows import Window, frame_times

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


@dataclass
class _FrameResult:
    time: float
    probs: np.ndarray | None  # None: no face in this frame
    faces: int
    box: list[int] | None


class FacePath:
    """The face path of a late-fusion model, with its detector and sampling settings."""

    def __init__(self, model: LateFusionModel, *, detector: str, frames_per_second: float,
                 detect_max_side: int, detect_side: int):
        self.model = model
        self.frames_per_second = frames_per_second
        self.detect_max_side = detect_max_side  # frames are sampled at most this large (face crops come from them)
        self.detect_side = detect_side  # full-frame face detection runs on a copy at most this large
        self.detector = FaceDetector(detector)  # FaceDetectorError (face_detector_unavailable) when it cannot load

    # -- preprocess ---------------------------------------------------------------------------
    def sampled_frames(self, source: Source, duration: float) -> Iterator[tuple[float, np.ndarray]]:
        """The gray frames at the sampling instants, decoded in one forward pass."""
        return iter_frames(source, frame_times(duration, self.frames_per_second), fmt="gray",
                           max_side=self.detect_max_side, threads=DECODE_THREADS)

    def observe(self, frames: Iterable[tuple[float, np.ndarray]], info: MediaInfo) -> Iterator[FaceObservation]:
        """Sampled gray frames -> face observations (a tracker follows the face between frames)."""
        cfg = self.model.config.face_preprocess
        tracker = FaceTracker(self.detector, detect_max_side=self.detect_side)
        for t, frame in frames:
            box, faces = tracker.find(frame)
            if box is None:
                yield (t, None, 0, None)
            else:
                # boxes are reported in displayed-frame pixels, whatever size was sampled
                s = (info.width / frame.shape[1]) if info.width else 1.0
                yield (t, crop_face(frame, box, cfg), faces, [int(round(v * s)) for v in box])

    # -- a run over one input ------------------------------------------------------------------
    def start(self, source: Source, duration: float, info: MediaInfo,
              observations: list[FaceObservation] | None = None) -> "FaceRun":
        """Start the path over one input: worker threads decode and detect from now on, unless
        the observations were made elsewhere (then only the net runs here)."""
        if observations is not None:
            return FaceRun(self, iter(observations), [])
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
                for pair in self.sampled_frames(source, duration):
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
                for item in self.observe(sampled(), info):
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

        return FaceRun(self, observed(), workers, stop, lambda: found.empty())

    # -- forward --------------------------------------------------------------------------------
    def forward(self, crops: list[np.ndarray], beside_busy_workers: bool) -> np.ndarray:
        """The face net's probabilities for a batch of crops."""
        cfg = self.model.config.face_preprocess
        with torch_threads(beside_workers() if beside_busy_workers else None):
            return self.model.face_probs(normalize_faces(np.stack(crops), cfg))


class FaceRun:
    """The face path over one input: frame results in time order, aggregated per window."""

    def __init__(self, path: FacePath, observations: Iterator[FaceObservation], workers: list[threading.Thread],
                 stop: threading.Event | None = None, caught_up: Callable[[], bool] = lambda: False):
        self.path, self._workers = path, workers
        self._stop = stop if stop is not None else threading.Event()
        self._frames = self._frame_results(observations, caught_up)
        self._buffer: list[_FrameResult] = []
        self.end: float | None = None  # the last frame result's time, once the results have ended

    @property
    def busy(self) -> bool:
        """Whether the worker threads are still decoding or detecting."""
        return any(w.is_alive() for w in self._workers)

    def _frame_results(self, observations: Iterator[FaceObservation], caught_up: Callable[[], bool]) -> Iterator[_FrameResult]:
        """Observations -> frame results: the net runs on a full batch of crops, or on 8 or more
        when `caught_up()` says the producer is behind."""
        pending: list[FaceObservation] = []

        def flush() -> list[_FrameResult]:
            crops = [c for _, c, _, _ in pending if c is not None]
            probs = self.path.forward(crops, self.busy) if crops else None
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
                if len(pending) >= FACE_BATCH or (caught_up() and len(pending) >= 8):
                    yield from flush()
            if pending:
                yield from flush()
        finally:
            self._stop.set()
            for worker in self._workers:
                worker.join()

    # -- postprocess ----------------------------------------------------------------------------
    def results_for(self, block: list[Window]) -> list[FaceResult | None]:
        """Consume the frame results up to the block's end and aggregate them per window: the
        mean probabilities over the frames with a face, the box of the one nearest the middle."""
        end = block[-1].end
        latest = self._buffer[-1].time if self._buffer else -math.inf
        # frames before this block's first window are no longer needed
        buffer = [f for f in self._buffer if f.time >= block[0].start]
        while not buffer or buffer[-1].time < end:
            try:
                buffer.append(next(self._frames))
            except StopIteration:
                self.end = buffer[-1].time if buffer else latest
                break
        self._buffer = buffer
        labels = self.path.model.labels
        out: list[FaceResult | None] = []
        for w in block:
            with_face = [f for f in buffer if w.start <= f.time < w.end and f.probs is not None]
            if not with_face:
                out.append(None)
                continue
            mid = (w.start + w.end) / 2
            rep = min(with_face, key=lambda f: abs(f.time - mid))
            out.append(FaceResult(labels, np.mean([f.probs for f in with_face], axis=0),
                                  faces=max(f.faces for f in with_face), box=list(rep.box or []), frames=len(with_face)))
        return out

    def close(self) -> None:
        """Stop and join the worker threads, even when the results were never read."""
        self._frames.close()
        self._stop.set()
        for worker in self._workers:
            worker.join()
