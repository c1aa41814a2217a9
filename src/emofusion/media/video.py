"""Sampling video frames at chosen times: :func:`iter_frames`."""

from __future__ import annotations

import bisect
import logging
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import av
import av.error
import numpy as np
from av.video.reformatter import VideoReformatter

from ._container import (
    MAX_FRAME_SECONDS,
    MediaError,
    Source,
    discard_others,
    open_container,
    origin_seconds,
    video_stream,
)
from .probe import rotation_of

__all__ = ["iter_frames", "FrameStats", "FORMATS"]

log = logging.getLogger(__name__)

#: fmt argument -> PyAV pixel format.
FORMATS = {"gray": "gray", "rgb": "rgb24", "bgr": "bgr24"}

# Undecodable packets are skipped; once there are this many and more than good ones,
# the stream is given up (MediaError).
_MIN_BAD_PACKETS = 8


@dataclass
class FrameStats:
    """Counters filled in by :func:`iter_frames` (pass one as ``stats=``)."""

    decoded: int = 0  # frames that came out of the decoder
    converted: int = 0  # frames turned into arrays (only the ones yielded)
    yielded: int = 0
    seeks: int = 0
    bad_packets: int = 0


def _scaled_size(w: int, h: int, max_side: int | None) -> tuple[int, int] | None:
    if max_side is None or max(w, h) <= max_side:
        return None
    scale = max_side / max(w, h)
    return max(1, int(round(w * scale))), max(1, int(round(h * scale)))


def _convert(frame, pix_fmt: str, max_side: int | None, reformatter: VideoReformatter) -> np.ndarray:
    """Scale and convert in one swscale pass (gray from YUV is full-range luma), then
    turn upright."""
    size = _scaled_size(frame.width, frame.height, max_side)
    w, h = size if size is not None else (None, None)
    a = reformatter.reformat(frame, width=w, height=h, format=pix_fmt).to_ndarray()
    rot = rotation_of(frame)
    if rot == 90:
        a = np.ascontiguousarray(np.rot90(a, k=-1))
    elif rot == 180:
        a = np.ascontiguousarray(a[::-1, ::-1])
    elif rot == 270:
        a = np.ascontiguousarray(np.rot90(a, k=1))
    return a


class _Decoder:
    """Frames of one video stream in presentation order, with their times, and seeking."""

    def __init__(self, container, stream, stats: FrameStats):
        self.container = container
        self.stream = stream
        self.stats = stats
        self.origin = origin_seconds(container)
        self.tb = float(stream.time_base) if stream.time_base else None
        rate = stream.average_rate or stream.guessed_rate
        self.frame_dur = 1.0 / float(rate) if rate and float(rate) > 0 else 1 / 25
        self._ok = self._bad = 0
        self._gen = self._frames()
        self._last_t: float | None = None
        self._keyframes: list[float] | None = None
        self._complete = False

    def _frames(self) -> Iterator[tuple[float, object]]:
        try:
            for pkt in self.container.demux(self.stream):
                try:
                    frames = self.stream.decode(pkt)
                except av.error.FFmpegError as exc:
                    self.stats.bad_packets += 1
                    self._bad += 1
                    if self._bad >= _MIN_BAD_PACKETS and self._bad > self._ok:
                        raise MediaError(
                            "not a media file we can read: the video does not decode "
                            f"({getattr(exc, 'strerror', None) or exc})"
                        ) from None
                    continue
                if pkt.size:
                    self._ok += 1
                for frame in frames:
                    self.stats.decoded += 1
                    yield self._time(frame), frame
        except av.error.FFmpegError as exc:  # demuxer error (damaged file): end of stream
            log.warning("video stream ended early: %s", getattr(exc, "strerror", None) or exc)

    def _time(self, frame) -> float:
        pts = frame.pts
        if pts is None:
            pts = getattr(frame, "dts", None)
        if pts is not None and frame.time_base is not None:
            t = float(pts * frame.time_base) - self.origin
        elif self._last_t is not None:
            t = self._last_t + self.frame_dur
        else:
            t = 0.0
        self._last_t = t
        return t

    def next(self):
        """(time, frame) or None at the end."""
        return next(self._gen, None)

    def keyframe_before(self, t: float) -> float | None:
        """Time of the last keyframe at or before ``t`` according to the stream's index,
        or None when the index does not reach past ``t`` (WebM without cues, Matroska
        before its cues are loaded: the demuxer only indexes what it has read so far)."""
        if self._keyframes is None or (self._keyframes and self._keyframes[-1] <= t and not self._complete):
            self._load_index()
        kf = self._keyframes
        if not kf or kf[-1] <= t and not self._complete:
            return None
        i = bisect.bisect_right(kf, t + 1e-6) - 1
        return kf[i] if i >= 0 else kf[0]

    def _load_index(self) -> None:
        kf: list[float] = []
        try:
            entries = self.stream.index_entries
            if entries is not None and self.tb:
                tb, origin = self.tb, self.origin
                kf = [e.timestamp * tb - origin for e in entries if e.is_keyframe]
        except Exception:  # pragma: no cover - older PyAV
            kf = []
        kf.sort()
        self._keyframes = kf
        # MP4/MOV sample tables list every sample up front: the index is complete.
        self._complete = bool(kf) and "mov" in self.container.format.name.split(",")

    @property
    def exact_index(self) -> bool:
        """Whether the index lists every keyframe (MP4/MOV sample tables)."""
        if self._keyframes is None:
            self._load_index()
        return self._complete

    def seek(self, t: float) -> None:
        """Go to the keyframe at or before ``t``; the next frames decode from there."""
        self._gen.close()
        ts = t + self.origin
        if self.tb:
            offset, stream = int(math.floor(ts / self.tb)), self.stream
        else:  # pragma: no cover
            offset, stream = int(ts * av.time_base), None
        self.container.seek(max(offset, 0) if t <= 0 else offset, backward=True, any_frame=False, stream=stream)
        self.stats.seeks += 1
        self._last_t = None
        self._gen = self._frames()


def iter_frames(
    source: Source,
    times: Iterable[float],
    fmt: str = "gray",
    max_side: int | None = None,
    *,
    seek_threshold: float = 2.0,
    stats: FrameStats | None = None,
    threads: int | None = None,
) -> Iterator[tuple[float, np.ndarray]]:
    """Yield ``(t, frame)`` for each requested time ``t`` (seconds, non-decreasing).

    ``frame`` is the frame on screen at ``t``: the last one whose timestamp is <= t (the
    first frame for a ``t`` before it).  Times at or after the end of the video (the
    last frame's timestamp plus its duration, at most :data:`MAX_FRAME_SECONDS`) are
    dropped: iteration stops there.

    ``fmt``: "gray" -> (H, W) uint8; "rgb" / "bgr" -> (H, W, 3) uint8.  Frames are
    turned upright from the rotation metadata, and with ``max_side`` downscaled (aspect
    kept) by the reformatter so the longer side is <= ``max_side``.

    Only yielded frames are converted; the frames between are decoded and dropped.
    Instead of decoding everything up to the next time, it seeks to the keyframe before
    that time when the time is more than ``seek_threshold`` seconds ahead of the
    current position and the stream's index does not show that keyframe behind the
    current position (without an index: always); with an exact index (MP4/MOV) it also
    seeks whenever that keyframe lies more than ``seek_threshold / 4`` ahead.
    ``seek_threshold=math.inf`` never seeks.  ``threads``: decoder threads; None lets FFmpeg
    choose (frame and slice threads, one per core); 1 decodes in the calling thread, which
    costs the least CPU time when other work keeps the cores busy.  Each array yielded
    is new (the caller may keep or modify it); at most two decoded frames are held.

    Raises :class:`MediaError` if the source has no video stream (or cannot be opened),
    ``ValueError`` if the times decrease.  A damaged file ends the iteration where it
    stops decoding.  Pass a :class:`FrameStats` as ``stats`` to count the work done.
    """
    if fmt not in FORMATS:
        raise ValueError(f"fmt must be one of {sorted(FORMATS)}, not {fmt!r}")
    if max_side is not None and max_side < 1:
        raise ValueError("max_side must be >= 1")
    if threads is not None and threads < 1:
        raise ValueError("threads must be >= 1 (or None)")
    pix_fmt = FORMATS[fmt]
    stats = stats if stats is not None else FrameStats()
    container = open_container(source)
    try:
        stream = video_stream(container)
        if stream is None:
            raise MediaError("no video stream")
        discard_others(container, stream)
        if threads is None:
            stream.thread_type = "AUTO"
        else:
            stream.thread_type = "SLICE"
            stream.codec_context.thread_count = threads
        dec = _Decoder(container, stream, stats)
        reformatter = VideoReformatter()  # keeps its swscale context between frames

        # With an exact index (MP4/MOV) a seek is worth it whenever it skips this much.
        min_skip = seek_threshold / 4
        cur = None  # (time, frame): the last decoded frame with time <= the last request
        ahead = dec.next()  # the next decoded frame, not yet shown
        if ahead is None:
            raise MediaError("not a media file we can read: the video does not decode")
        first_t = ahead[0]
        prev_t = -math.inf
        end_t = None  # set at the end of the stream

        for t in times:
            t = float(t)
            if math.isnan(t):
                raise ValueError("time is NaN")
            if t < prev_t:
                raise ValueError(f"times must not decrease: {t} after {prev_t}")
            prev_t = t

            # Jump ahead instead of decoding everything in between?
            pos = ahead[0] if ahead is not None else (cur[0] if cur is not None else first_t)
            if ahead is not None and t - pos > min_skip:
                kf = dec.keyframe_before(t)
                if (kf is not None and dec.exact_index and kf - pos > min_skip) or (
                    t - pos > seek_threshold and (kf is None or kf > pos + 1e-6)
                ):
                    dec.seek(t)
                    nxt = dec.next()
                    if nxt is None or (nxt[0] > t + 1e-6 and nxt[0] > first_t + 1e-6):
                        # Landed after t or nowhere (imprecise index): go back further, then
                        # to the top.
                        for back in (t - 10 * max(seek_threshold, 1.0), 0.0):
                            dec.seek(back)
                            nxt = dec.next()
                            if nxt is None or nxt[0] <= t + 1e-6:
                                break
                    cur, ahead = None, nxt
                    if ahead is None and end_t is None:
                        end_t = -math.inf  # nothing decodes past here

            # Decode forward until the next frame lies after t.
            while ahead is not None and ahead[0] <= t + 1e-6:
                cur = ahead
                ahead = dec.next()
            if ahead is None and end_t is None:
                end_t = (cur[0] + _frame_duration(cur[1], dec)) if cur is not None else -math.inf
            if ahead is None and t >= end_t:
                return  # past the end of the video
            pick = cur if cur is not None else ahead  # before the first frame: the first one
            if pick is None:
                return
            stats.converted += 1
            stats.yielded += 1
            yield t, _convert(pick[1], pix_fmt, max_side, reformatter)
    finally:
        container.close()


def _frame_duration(frame, dec: _Decoder) -> float:
    """How long the last frame stays on screen: its duration or the nominal frame
    interval, whichever is longer, but no more than :data:`MAX_FRAME_SECONDS` (a last
    frame said to stay for hours is a claim, not content); plus 1 ms in Matroska, which
    rounds times to ms."""
    d = getattr(frame, "duration", None)
    own = float(d * frame.time_base) if d and frame.time_base is not None else 0.0
    slack = 1e-3 if "matroska" in dec.container.format.name else 0.0
    return min(max(own, dec.frame_dur), MAX_FRAME_SECONDS) + slack
