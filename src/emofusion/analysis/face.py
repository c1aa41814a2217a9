"""The face path: sampled frames -> faces found, tracked and cropped (preprocess) -> the face net
on batches of crops (forward) -> per window, the main face's mean over its frames, and each
tracked person's (postprocess).

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

from ..features import align_face, eye_framed, normalize_faces
from ..media import MediaInfo, Source, iter_frames
from ..media.faces import FaceDetector
from ..models.interfaces import LateFusionModel
from .results import FaceResult
from .threads import beside_workers, torch_threads
from .tracks import FaceTracks
from .windows import Window, frame_times


@dataclass(frozen=True)
class Sighting:
    """One face in one sampled frame, as the CPU stage found it."""

    track: int  # the person's track id (`tracks.FaceTracks`)
    crop: np.ndarray  # what the face net reads: uint8, FaceConfig.size square, aligned when landmarks were found
    box: tuple[int, int, int, int]  # x, y, width, height in displayed-frame pixels
    # how much the mouth moved since this track's previous sampled frame (`mouth_motion`); None
    # without landmarks, for a track's first frame, or when the head moved (MAX_HEAD_SHIFT)
    mouth: float | None


# What the CPU stage of the face path finds in one sampled frame: (time in s, the faces analysed,
# largest first (at most max_faces), the number of faces found). `Analyzer.observe_faces` returns
# them and `Analyzer.analyze(face_observations=...)` takes them, so decoding, detection and
# tracking can run elsewhere than the nets (the Ray engine's decode stage).
FaceObservation = tuple[float, list[Sighting], int]

# The mouth and eye regions of an eye-framed crop (`features.eye_framed`; fractions of its side:
# rows, then columns)
MOUTH_REGION = (0.50, 0.85, 0.25, 0.75)
EYES_REGION = (0.04, 0.32, 0.10, 0.90)
MOTION_BLUR = 0.04  # the blur before comparing crops, as a fraction of their side
MOUTH_GAP = 1.0  # seconds: a mouth is compared only with its own crop at most this long before
# ... and only when the face moved less than this (its centre, in face heights) in between: on a
# moving head the eye-framed crops do not register closely enough (the landmarks jitter by a few
# pixels), and motion there measured as much as talking (docs/experiments/people.md)
MAX_HEAD_SHIFT = 0.06


def mouth_view(framed: np.ndarray) -> np.ndarray:
    """An eye-framed crop (`features.eye_framed`) as `mouth_motion` compares it: blurred (compression
    noise, which changes between frames of a still face, is fine detail; a mouth opening is not)
    and in units of its own contrast. Each sampled frame's view is made once and compared with the
    next one's."""
    import cv2

    c = cv2.GaussianBlur(framed.astype(np.float32), (0, 0), MOTION_BLUR * framed.shape[0])
    return (c - c.mean()) / max(float(c.std()), 1.0)


def mouth_motion(before: np.ndarray, after: np.ndarray) -> float:
    """How much the mouth moved between two views (`mouth_view`) of one face: the mean absolute
    change of the mouth region, less that of the eye region (what the whole face's motion, light
    and compression change anyway)."""
    n = before.shape[0]

    def change(region: tuple[float, float, float, float]) -> float:
        r0, r1, c0, c1 = (int(round(v * n)) for v in region)
        return float(np.abs(before[r0:r1, c0:c1] - after[r0:r1, c0:c1]).mean())

    return change(MOUTH_REGION) - change(EYES_REGION)


FACE_BATCH = 32  # face crops per face-net call
# Tracks kept per input (their frame counts and largest crop); beyond it the ended tracks seen
# least are forgotten, so a crowd or a long input cannot grow memory without bound.
MAX_TRACKS_KEPT = 256

# The face path decodes in one thread: it runs beside face detection and the nets, which keep the
# other cores busy, and FFmpeg's frame threads cost more CPU time for little wall time even alone
# (every frame of the 10 s x264 720p clip on 2 idle cores: 1.4-1.8x the CPU time of one thread,
# between 13% less and 15% more wall time in two runs; benchmarks/bench_analyze.py measures both).
DECODE_THREADS = 1


@dataclass
class _FrameResult:
    time: float
    faces: int  # faces found
    seen: list[tuple[Sighting, np.ndarray]]  # the faces analysed, largest first, with the face net's probabilities


@dataclass
class PersonFace:
    """What the face path saw of one tracked person in one window."""

    result: FaceResult  # mean probabilities over the window's frames with this face, the box nearest the middle
    mouth: float | None  # mean mouth motion over those frames (None: measured in none of them)


@dataclass
class TrackSeen:
    """What the face path saw of one track over the whole input: its frames and largest face."""

    frames: int
    box: tuple[int, int, int, int]  # the largest box, displayed-frame pixels
    time: float  # when it was that large
    crop: np.ndarray  # the crop then
    last: float  # when it was last seen


@dataclass
class WindowFaces:
    """The face path's findings in one window: the main face (the largest in each frame) and everyone."""

    main: FaceResult | None
    people: dict[int, PersonFace]


class FacePath:
    """The face path of a late-fusion model, with its detector and sampling settings."""

    def __init__(self, model: LateFusionModel, *, detector: str, frames_per_second: float,
                 detect_max_side: int, detect_side: int, max_faces: int):
        self.model = model
        self.frames_per_second = frames_per_second
        self.detect_max_side = detect_max_side  # frames are sampled at most this large (face crops come from them)
        self.detect_side = detect_side  # face detection runs on a copy at most this large
        self.max_faces = max_faces  # the largest faces of each frame analysed; the rest only counted
        self.detector = FaceDetector(detector)  # FaceDetectorError (face_detector_unavailable) when it cannot load

    # -- preprocess ---------------------------------------------------------------------------
    def sampled_frames(self, source: Source, duration: float) -> Iterator[tuple[float, np.ndarray]]:
        """The gray frames at the sampling instants, decoded in one forward pass."""
        return iter_frames(source, frame_times(duration, self.frames_per_second), fmt="gray",
                           max_side=self.detect_max_side, threads=DECODE_THREADS)

    def observe(self, frames: Iterable[tuple[float, np.ndarray]], info: MediaInfo) -> Iterator[FaceObservation]:
        """Sampled gray frames -> face observations: the largest faces found, cropped (aligned on
        the eyes when the detector gives landmarks), tracked, and their mouths' motion."""
        cfg = self.model.config.face_preprocess
        tracks = FaceTracks()
        last: dict[int, tuple[float, np.ndarray, np.ndarray]] = {}  # track -> (time, mouth view, centre) then
        for t, frame in frames:
            found = self.detector.detect(frame, max_side=self.detect_side)
            faces = found[: self.max_faces]
            crops = [align_face(frame, f.box, f.landmarks, cfg) for f in faces]
            ids = tracks.update(t, faces, crops)
            # boxes are reported in displayed-frame pixels, whatever size was sampled
            s = (info.width / frame.shape[1]) if info.width else 1.0
            seen = []
            for face, crop, track in zip(faces, crops, ids):
                mouth = None
                if face.landmarks is not None:
                    view = mouth_view(eye_framed(frame, face.landmarks))
                    centre = np.array([face.box[0] + face.box[2] / 2, face.box[1] + face.box[3] / 2])
                    before = last.get(track)
                    if (before is not None and t - before[0] <= MOUTH_GAP
                            and np.linalg.norm(centre - before[2]) <= MAX_HEAD_SHIFT * face.box[3]):
                        mouth = mouth_motion(before[1], view)
                    last[track] = (t, view, centre)
                seen.append(Sighting(track, crop, _displayed_box(face.box, s, frame.shape), mouth))
            for track in [k for k, (when, *_) in last.items() if t - when > MOUTH_GAP]:
                del last[track]
            yield (t, seen, len(found))

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
        self.tracks: dict[int, TrackSeen] = {}  # the tracks so far (see MAX_TRACKS_KEPT): frames seen, largest face
        self.frames = 0  # sampled frames consumed so far
        self.forgotten = 0  # tracks forgotten to keep memory bounded

    @property
    def busy(self) -> bool:
        """Whether the worker threads are still decoding or detecting."""
        return any(w.is_alive() for w in self._workers)

    def _frame_results(self, observations: Iterator[FaceObservation], caught_up: Callable[[], bool]) -> Iterator[_FrameResult]:
        """Observations -> frame results: the net runs on a full batch of crops, or on 8 or more
        when `caught_up()` says the producer is behind."""
        pending: list[FaceObservation] = []

        def flush() -> list[_FrameResult]:
            crops = [s.crop for _, seen, _ in pending for s in seen]
            probs = self.path.forward(crops, self.busy) if crops else None
            out, k = [], 0
            for t, seen, n in pending:
                assert probs is not None or not seen
                out.append(_FrameResult(t, n, [(s, probs[k + j]) for j, s in enumerate(seen)]))  # type: ignore[index]
                k += len(seen)
            pending.clear()
            return out

        try:
            crops = 0
            for item in observations:
                pending.append(item)
                crops += len(item[1])
                if crops >= FACE_BATCH or len(pending) >= FACE_BATCH or (caught_up() and crops >= 8):
                    crops = 0
                    yield from flush()
            if pending:
                yield from flush()
        finally:
            self._stop.set()
            for worker in self._workers:
                worker.join()

    # -- postprocess ----------------------------------------------------------------------------
    def results_for(self, block: list[Window]) -> list[WindowFaces]:
        """Consume the frame results up to the block's end and aggregate them per window: for the
        main face (the largest in each frame) and for each tracked person, the mean probabilities
        over the frames with that face, the box of the one nearest the middle."""
        end = block[-1].end
        latest = self._buffer[-1].time if self._buffer else -math.inf
        # frames before this block's first window are no longer needed
        buffer = [f for f in self._buffer if f.time >= block[0].start]
        while not buffer or buffer[-1].time < end:
            try:
                frame = next(self._frames)
            except StopIteration:
                self.end = buffer[-1].time if buffer else latest
                break
            buffer.append(frame)
            self._count(frame)
        self._buffer = buffer
        labels = self.path.model.labels
        out: list[WindowFaces] = []
        for w in block:
            frames = [f for f in buffer if w.start <= f.time < w.end]
            mid = (w.start + w.end) / 2
            mains = [(f.time, f.faces, *f.seen[0]) for f in frames if f.seen]
            main = _face_result(labels, mains, mid) if mains else None
            by_track: dict[int, list] = {}
            for f in frames:
                for sighting, probs in f.seen:
                    by_track.setdefault(sighting.track, []).append((f.time, f.faces, sighting, probs))
            people = {}
            for track, seen in by_track.items():
                mouths = [s.mouth for _, _, s, _ in seen if s.mouth is not None]
                people[track] = PersonFace(_face_result(labels, seen, mid), float(np.mean(mouths)) if mouths else None)
            out.append(WindowFaces(main, people))
        return out

    def _count(self, frame: _FrameResult) -> None:
        self.frames += 1
        for sighting, _ in frame.seen:
            known = self.tracks.get(sighting.track)
            area = sighting.box[2] * sighting.box[3]
            if known is None or area > known.box[2] * known.box[3]:
                self.tracks[sighting.track] = TrackSeen((known.frames if known else 0) + 1, sighting.box, frame.time,
                                                        sighting.crop, frame.time)
            else:
                known.frames += 1
                known.last = frame.time
        if len(self.tracks) > MAX_TRACKS_KEPT:
            # a long input with many short tracks (passers-by, a crowd): forget the ended tracks seen least
            ended = sorted((k for k, v in self.tracks.items() if v.last < frame.time), key=lambda k: self.tracks[k].frames)
            for track in ended[: len(self.tracks) - MAX_TRACKS_KEPT // 2]:
                del self.tracks[track]
                self.forgotten += 1

    def close(self) -> None:
        """Stop and join the worker threads, even when the results were never read."""
        self._frames.close()
        self._stop.set()
        for worker in self._workers:
            worker.join()


def _face_result(labels, seen: list[tuple[float, int, Sighting, np.ndarray]], mid: float) -> FaceResult:
    """(time, faces found, sighting, probabilities) of one face over a window's frames -> its FaceResult."""
    rep = min(seen, key=lambda item: abs(item[0] - mid))
    return FaceResult(labels, np.mean([probs for *_, probs in seen], axis=0), faces=max(n for _, n, _, _ in seen),
                      box=list(rep[2].box), frames=len(seen))


def _displayed_box(box: tuple[int, int, int, int], scale: float, shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """A box in sampled-frame pixels -> displayed-frame pixels, cut to the frame (a face at the
    edge is found partly outside it)."""
    x, y, w, h = box
    height, width = shape[:2]
    x0, y0 = max(0, x), max(0, y)
    x1, y1 = min(width, x + w), min(height, y + h)
    return (int(round(x0 * scale)), int(round(y0 * scale)), int(round(max(1, x1 - x0) * scale)),
            int(round(max(1, y1 - y0) * scale)))
