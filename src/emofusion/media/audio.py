"""Audio: a whole track (:func:`read_audio`) or windows streamed from a long one
(:class:`AudioWindowReader`), as mono float32 at a chosen sample rate.

Time convention (shared with :func:`~emofusion.media.iter_frames`): seconds from the
container's start time.  Output sample ``k`` is the audio at ``k / sample_rate``: if the
track starts late, it is preceded by silence; samples before 0 are dropped.  Gaps inside
the track are not filled (the decoded samples are taken as contiguous).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator

import av
import av.error
import numpy as np
import soxr

from ._container import (
    MediaError,
    Source,
    audio_stream,
    discard_others,
    open_container,
    origin_seconds,
)

__all__ = ["read_audio", "AudioWindowReader"]

log = logging.getLogger(__name__)

_QUALITY = "HQ"
# Undecodable packets are skipped; once there are this many and more than good ones,
# the "track" is noise a lenient demuxer accepted (random bytes named .mp3): MediaError.
_MIN_BAD_PACKETS = 8


_SCALE = {  # dtype -> (offset, scale) to float in [-1, 1]
    np.dtype(np.float32): (0.0, 1.0),
    np.dtype(np.float64): (0.0, 1.0),
    np.dtype(np.int16): (0.0, 1 / 32768),
    np.dtype(np.int32): (0.0, 1 / 2147483648),
    np.dtype(np.int64): (0.0, 1 / 9223372036854775808),
    np.dtype(np.uint8): (128.0, 1 / 128),
}


def _to_mono(frame) -> np.ndarray:
    """One decoded AudioFrame -> mono float32 in [-1, 1] at the frame's own rate
    (the channels averaged)."""
    a = frame.to_ndarray()
    ch = frame.layout.nb_channels or 1
    if frame.format.is_planar:  # (ch, n)
        chans = [a[i] for i in range(a.shape[0])]
    else:  # packed: (1, n * ch)
        v = a.reshape(-1, ch)
        chans = [v[:, i] for i in range(ch)]
    offset, scale = _SCALE.get(a.dtype, (0.0, 1.0))
    if len(chans) == 1 and a.dtype == np.float32:
        return np.ascontiguousarray(chans[0])
    out = chans[0].astype(np.float32)
    for c in chans[1:]:
        np.add(out, c, out=out, casting="unsafe")
    if offset:
        out -= np.float32(offset * len(chans))
    k = scale / len(chans)
    if k != 1.0:
        out *= np.float32(k)
    return out


def _decode_mono(container, stream, origin: float) -> Iterator[tuple[float | None, np.ndarray, int]]:
    """Yield (time of the first sample or None, mono float32 samples, sample rate) per
    decoded frame.  Corrupt packets are skipped (MediaError when most are corrupt); a
    damaged tail ends the stream."""
    ok = bad = 0
    tb = None
    try:
        for pkt in container.demux(stream):
            try:
                frames = stream.decode(pkt)
            except av.error.FFmpegError as exc:
                bad += 1
                if bad >= _MIN_BAD_PACKETS and bad > ok:
                    raise MediaError(
                        f"not a media file we can read: the audio does not decode ({getattr(exc, 'strerror', None) or exc})"
                    ) from None
                continue
            if pkt.size:
                ok += 1
            for frame in frames:
                if not frame.samples:
                    continue
                t = None
                if frame.pts is not None:
                    if tb is None:
                        tb = float(frame.time_base) if frame.time_base is not None else 0.0
                    t = frame.pts * tb - origin if tb else None
                yield t, _to_mono(frame), frame.sample_rate
    except av.error.FFmpegError as exc:  # demuxer error: treat as the end of the stream
        log.warning("audio stream ended early: %s", getattr(exc, "strerror", None) or exc)
    if bad:
        log.warning("skipped %d undecodable audio packets", bad)


def _declared_end(container, stream, origin: float) -> float | None:
    """End of the track as an MP4/MOV states it (its edit list / track duration).  AAC
    decodes a little past it (encoder padding of the last frame); we cut there.  Other
    containers either trim themselves (Matroska, Ogg) or state estimates, so no cut."""
    if "mov" not in container.format.name.split(","):
        return None
    if stream.duration is None or stream.time_base is None:
        return None
    tb = float(stream.time_base)
    start = stream.start_time * tb if stream.start_time is not None else origin
    end = start - origin + stream.duration * tb
    return end if end > 0 else None


def _open_audio(source: Source):
    container = open_container(source)
    try:
        stream = audio_stream(container)
        if stream is None:
            raise MediaError("no audio stream")
        discard_others(container, stream)
    except BaseException:
        container.close()
        raise
    return container, stream


def _index(t: float, sample_rate: int) -> int:
    return int(math.floor(t * sample_rate + 0.5))


def read_audio(
    source: Source,
    start: float = 0.0,
    end: float | None = None,
    sample_rate: int = 16000,
) -> np.ndarray:
    """The audio track (or its ``[start, end)`` part, seconds) as mono float32 in
    [-1, 1] at ``sample_rate``.

    Decodes with PyAV, downmixes by averaging the channels, resamples with soxr (HQ).
    Meant for short files: the decoded span is held in memory (use
    :class:`AudioWindowReader` for long ones).  Decoding starts at the keyframe before
    ``start`` (a seek) and stops once ``end`` is reached.  Raises :class:`MediaError`
    if there is no audio stream.  The result is shorter than ``end - start`` when the
    track ends first (never zero-padded at the end).
    """
    if end is not None and end < start:
        raise ValueError(f"end ({end}) < start ({start})")
    start = max(0.0, float(start))
    span = None
    if start > 1.0:  # jump to the keyframe a little before start
        span = _decode_span(source, start, end, seek_to=start - 0.5)
        if span is not None and (span[1] is None or span[2] > start):  # overshot: from the top
            span = None
    if span is None:
        span = _decode_span(source, start, end, seek_to=None)
    segments, rate, anchor, stop = span
    if rate is None:
        raise MediaError("not a media file we can read: the audio does not decode")
    if stop is not None and (end is None or stop < end):
        end = max(stop, start)
    return _finish(segments, rate, anchor, start, end, sample_rate)


def _decode_span(source: Source, start: float, end: float | None, seek_to: float | None):
    """Decode from the beginning (or from a seek to ``seek_to``) until ``end``:
    ([(native rate, [mono chunks])...] -- one entry per rate, native rate of the first or
    None if nothing decoded, time of the first sample, declared end of the track or None)."""
    container, stream = _open_audio(source)
    try:
        origin = origin_seconds(container)
        stop = _declared_end(container, stream, origin)
        if seek_to is not None:
            try:
                container.seek(int((seek_to + origin) / stream.time_base), stream=stream, backward=True)
            except (av.error.FFmpegError, OSError, ValueError, ZeroDivisionError, TypeError):
                return None
        segments: list[tuple[int, list[np.ndarray]]] = []  # (rate, chunks): a new one per rate change
        anchor = None
        seconds = 0.0  # decoded so far, before the current segment
        n = 0  # samples in the current segment
        for t, x, sr in _decode_mono(container, stream, origin):
            if anchor is None:
                anchor = t if t is not None else 0.0
                if seek_to is not None and anchor > start:
                    segments.append((sr, []))
                    break
            if not segments or sr != segments[-1][0]:
                if segments:
                    seconds += n / segments[-1][0]
                segments.append((sr, []))
                n = 0
            segments[-1][1].append(x)
            n += len(x)
            if end is not None and anchor + seconds + n / sr > end + 0.1:
                break
    finally:
        container.close()
    if anchor is None:
        return [], None, 0.0, stop
    return segments, segments[0][0], anchor, stop


def _finish(segments, rate: int, anchor: float, start: float, end: float | None, sample_rate: int) -> np.ndarray:
    ys = []
    for sr, chunks in segments:  # each at its own rate (a rate change mid-stream is rare)
        x = np.concatenate(chunks) if len(chunks) != 1 else chunks[0]
        ys.append(soxr.resample(x, sr, sample_rate, quality=_QUALITY) if sr != sample_rate else x)
    y = np.concatenate(ys) if len(ys) != 1 else ys[0]
    offset = _index(anchor, sample_rate)  # absolute index of y[0]
    s = _index(start, sample_rate)
    e = offset + len(y) if end is None else min(_index(end, sample_rate), offset + len(y))
    if e <= s:
        return np.zeros(0, np.float32)
    if s >= offset:
        out = y[s - offset : e - offset]
    else:  # the track starts after `start`: silence first
        out = np.concatenate([np.zeros(min(offset, e) - s, np.float32), y[: max(e - offset, 0)]])
    out = np.ascontiguousarray(out, dtype=np.float32)
    np.clip(out, -1.0, 1.0, out=out)
    return out


class AudioWindowReader:
    """Stream one audio track front to back and hand out ``[start, end)`` windows.

    Windows must be requested in non-decreasing ``start`` order (overlaps are fine).
    The track is decoded once and resampled with a streaming resampler
    (``soxr.ResampleStream``); samples before the latest ``start`` are dropped, so memory
    stays at about one window plus one decoded frame whatever the file's length.

    ``read`` returns mono float32 in [-1, 1] at ``sample_rate``: ``round(end*sr) -
    round(start*sr)`` samples, fewer (possibly none) where the track ends -- never
    zero-padded at the end.  Same clock and same samples as :func:`read_audio`.

    Use it as a context manager, or call :meth:`close`.  Raises :class:`MediaError` when
    the source has no audio stream.
    """

    def __init__(self, source: Source, sample_rate: int = 16000):
        if sample_rate <= 0:
            raise ValueError("sample_rate must be positive")
        self.sample_rate = int(sample_rate)
        self._container, self._stream = _open_audio(source)
        self._origin = origin_seconds(self._container)
        stop = _declared_end(self._container, self._stream, self._origin)
        self._stop = _index(stop, self.sample_rate) if stop is not None else None
        self._frames = _decode_mono(self._container, self._stream, self._origin)
        self._resampler = None
        self._native_rate: int | None = None
        self._buf = np.zeros(1 << 15, np.float32)
        self._lo = 0  # buf[lo:hi] holds samples with absolute index base .. base + (hi - lo)
        self._hi = 0
        self._base: int | None = None  # absolute index of buf[lo]; None until the first frame
        self._keep_from = 0  # absolute index: samples before it are no longer needed
        self._last_start = -math.inf
        self._eof = False
        self._closed = False
        #: Largest number of samples held at once (for tests and memory accounting).
        self.max_buffered = 0

    # -- public -----------------------------------------------------------------
    @property
    def buffered(self) -> int:
        """Samples held right now."""
        return self._hi - self._lo

    @property
    def end(self) -> float | None:
        """Where the track ends (seconds), once reading has reached it; None before.
        Windows that start there or later are empty."""
        stop = self._stop / self.sample_rate if self._stop is not None else None
        if stop is not None and self._last_start >= stop:  # a window from the stated end on was read
            return stop
        if not self._eof or self._base is None:
            return None
        end = (self._base + self.buffered) / self.sample_rate
        return min(end, stop) if stop is not None else end

    def read(self, start: float, end: float) -> np.ndarray:
        if self._closed:
            raise ValueError("read from a closed AudioWindowReader")
        if end < start:
            raise ValueError(f"end ({end}) < start ({start})")
        if start < self._last_start:
            raise ValueError(f"window starts must not decrease: {start} after {self._last_start}")
        self._last_start = start
        sr = self.sample_rate
        s = max(_index(start, sr), 0)
        e = _index(end, sr)
        if self._stop is not None:
            e = min(e, self._stop)
        if e <= s:
            self._drop_before(s)
            return np.zeros(0, np.float32)
        self._drop_before(s)
        while not self._eof and (self._base is None or self._base + self.buffered < e):
            self._pull()
        if self._base is None:  # no audio at all
            return np.zeros(0, np.float32)
        base = self._base
        avail_end = base + self.buffered
        e = min(e, avail_end)
        if e <= s:
            return np.zeros(0, np.float32)
        if s >= base:
            out = self._buf[self._lo + s - base : self._lo + e - base].copy()
        else:  # only before the track's first sample (it starts late): leading silence
            out = np.zeros(e - s, np.float32)
            if e > base:
                out[base - s :] = self._buf[self._lo : self._lo + e - base]
        return out

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            try:
                self._frames.close()
            finally:
                self._container.close()
            self._buf = np.zeros(0, np.float32)
            self._lo = self._hi = 0

    def __enter__(self) -> "AudioWindowReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):  # pragma: no cover - best effort
        try:
            self.close()
        except Exception:
            pass

    # -- internals ----------------------------------------------------------------
    def _drop_before(self, index: int) -> None:
        if index <= self._keep_from:
            return
        self._keep_from = index
        if self._base is None:
            return
        n = min(max(index - self._base, 0), self.buffered)
        if n:
            self._lo += n
            self._base += n
            if self._lo == self._hi:
                self._lo = self._hi = 0

    def _pull(self) -> None:
        """Decode one frame, resample it and append it (or flush at the end)."""
        try:
            t, x, rate = next(self._frames)
        except StopIteration:
            self._eof = True
            if self._native_rate is None:
                raise MediaError("not a media file we can read: the audio does not decode") from None
            if self._resampler is not None:
                self._append(self._resampler.resample_chunk(np.zeros(0, np.float32), last=True))
            return
        if self._native_rate is None:
            self._native_rate = rate
            if rate != self.sample_rate:
                self._resampler = soxr.ResampleStream(rate, self.sample_rate, 1, dtype="float32", quality=_QUALITY)
            first = _index(t if t is not None else 0.0, self.sample_rate)
            if first > 0:  # the track starts late: it is preceded by silence
                self._base = 0
                self._append(np.zeros(first, np.float32))
            else:
                self._base = first
        elif rate != self._native_rate:  # rare: finish the old rate, go on at the new one
            if self._resampler is not None:
                self._append(self._resampler.resample_chunk(np.zeros(0, np.float32), last=True))
            self._native_rate = rate
            self._resampler = None
            if rate != self.sample_rate:
                self._resampler = soxr.ResampleStream(rate, self.sample_rate, 1, dtype="float32", quality=_QUALITY)
        if self._resampler is not None:
            x = self._resampler.resample_chunk(x, last=False)
        self._append(x)

    def _append(self, y: np.ndarray) -> None:
        n = len(y)
        if not n:
            return
        # Whole chunk before what is still needed: skip it (keeps memory flat on jumps).
        if self._base + self.buffered + n <= self._keep_from:
            self._base += self.buffered + n
            self._lo = self._hi = 0
            return
        if self._hi + n > len(self._buf):
            held = self.buffered
            if held + n > len(self._buf) // 2:
                new = np.zeros(max(2 * len(self._buf), 2 * (held + n)), np.float32)
                new[:held] = self._buf[self._lo : self._hi]
                self._buf = new
            else:
                self._buf[:held] = self._buf[self._lo : self._hi]
            self._lo, self._hi = 0, held
        self._buf[self._hi : self._hi + n] = y
        np.clip(self._buf[self._hi : self._hi + n], -1.0, 1.0, out=self._buf[self._hi : self._hi + n])
        self._hi += n
        self._drop_before_current()
        if self.buffered > self.max_buffered:
            self.max_buffered = self.buffered

    def _drop_before_current(self) -> None:
        n = min(max(self._keep_from - self._base, 0), self.buffered)
        if n:
            self._lo += n
            self._base += n
