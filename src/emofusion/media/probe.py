"""What is in a media file: :func:`probe` -> :class:`MediaInfo`."""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter, deque
from dataclasses import dataclass

import av
import av.error

from ._container import (
    MAX_FRAME_SECONDS,
    MediaError,
    Source,
    audio_stream,
    open_container,
    origin_seconds,
    video_stream,
)

__all__ = ["MediaInfo", "probe", "rotation_of"]

log = logging.getLogger(__name__)

# probe() decodes the first frame of each stream (to check it decodes and to read the
# rotation); it gives up after this many packets.
_PROBE_MAX_PACKETS = 400
# ... and decodes this many audio packets: most of them must decode.
_PROBE_AUDIO_PACKETS = 8
# The duration is where the packets end, when the headers state one more than this past it
# (seconds): the headers of a 2 s file can claim 10 hours.
_CLAIM_SLACK = 0.5
# A file with less audio and video than this (seconds) is not an input.
_MIN_SECONDS = 0.1
# The end of a stream lies among its last packets in decoding order (B-frames reorder a few).
_TAIL_PACKETS = 32
# Where the end cannot be reached by a jump, the packets of a file with a stated duration are
# read from the start up to this many (a minute or more of video and audio).
_SCAN_PACKETS = 5000


@dataclass(frozen=True)
class MediaInfo:
    """The streams of a media file, as :func:`probe` found them.

    Times are seconds on the file's own clock, whose 0 is the container's start time
    (the time :func:`read_audio`, :class:`AudioWindowReader` and :func:`iter_frames` use).
    """

    duration: float
    has_video: bool
    has_audio: bool
    container: str
    width: int | None
    height: int | None
    fps: float | None
    rotation: int
    video_codec: str | None
    audio_codec: str | None
    audio_sample_rate: int | None
    audio_channels: int | None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def rotation_of(frame) -> int:
    """Degrees clockwise (0, 90, 180, 270) to turn ``frame`` to display it upright.

    PyAV's ``VideoFrame.rotation`` is FFmpeg's display-matrix angle, counter-clockwise;
    a phone's portrait video (legacy tag ``rotate=90``) reads -90 there and 90 here.
    """
    try:
        ccw = frame.rotation
    except Exception:  # pragma: no cover - no side data support
        return 0
    if not ccw:
        return 0
    return int(round(-float(ccw) / 90.0)) * 90 % 360


def _rate(stream) -> float | None:
    for name in ("average_rate", "guessed_rate", "base_rate"):
        try:
            r = getattr(stream, name)
        except Exception:
            r = None
        if r is not None and r.denominator and float(r) > 0 and float(r) < 10_000:
            return float(r)
    return None


def _stream_end(stream, origin: float) -> float | None:
    if stream.duration is None or stream.time_base is None:
        return None
    tb = float(stream.time_base)
    start = stream.start_time * tb if stream.start_time is not None else origin
    return (start - origin) + stream.duration * tb


def _scan_end(container, streams, origin: float, stated: float | None) -> float | None:
    """Where the packets of ``streams`` end (seconds), or None when that is not found.

    Reads packets, never decodes: those from the keyframe before the ``stated`` end (or,
    with none stated, before the end of the file) on.  Where the container cannot jump
    there, or finds nothing there, it reads from the start: every packet when no end is
    stated, else at most ``_SCAN_PACKETS`` (a longer file keeps its stated end: None).
    A packet counts for no longer than the most common packet duration of its stream in
    the part read, nor :data:`MAX_FRAME_SECONDS`: a longer stated duration is a claim,
    not content.
    """
    far = 30 * 24 * 3600.0  # past the end of any real file
    # the jump is in the container's own time, whose 0 may lie `origin` before the streams' start
    target = max(origin + min(stated, far) - 1.0, 0.0) if stated is not None else far
    try:
        container.seek(int(target * av.time_base), backward=True, any_frame=False)
        end = _packets_end(container, streams, origin, None)
    except av.error.FFmpegError as exc:
        log.debug("cannot jump to the end: %s", exc)
        end = None
    if end is None:
        try:
            container.seek(0)
        except av.error.FFmpegError as exc:
            log.debug("cannot go back to the start: %s", exc)
        end = _packets_end(container, streams, origin, None if stated is None else _SCAN_PACKETS)
    return end


def _packets_end(container, streams, origin: float, limit: int | None) -> float | None:
    """Where the packets from the container's position on end (see :func:`_scan_end`);
    None when none has a timestamp, or there are more than ``limit``."""
    tails: dict[int, deque[tuple[float, float]]] = {s.index: deque(maxlen=_TAIL_PACKETS) for s in streams}
    durations: dict[int, Counter[float]] = {s.index: Counter() for s in streams}
    n = 0
    try:
        for pkt in container.demux(*streams):
            if pkt.pts is None or pkt.time_base is None:
                continue
            n += 1
            if limit is not None and n > limit:
                return None
            tb = float(pkt.time_base)
            duration = (pkt.duration or 0) * tb
            tails[pkt.stream.index].append((pkt.pts * tb - origin, duration))
            durations[pkt.stream.index][duration] += 1
    except av.error.FFmpegError as exc:  # damaged tail: keep what we saw
        log.debug("duration scan stopped: %s", exc)
    ends = []
    for index, tail in tails.items():
        if tail:
            typical = min(durations[index].most_common(1)[0][0], MAX_FRAME_SECONDS)
            ends.append(max(t + min(d, typical) for t, d in tail))
    return max(ends) if ends else None


def _first_frames(container, streams) -> tuple[dict, set, bool]:
    """Decode the first frame of each stream (and a few audio packets, to tell a real
    track from noise a lenient demuxer accepted).

    Returns ({index: first frame} of the streams that decode, {indices whose packets
    were seen}, whether the end of the file was reached)."""
    got: dict = {}
    seen: set = set()
    audio_ok: dict = {}
    audio_bad: dict = {}
    want = {s.index for s in streams}
    n = 0
    eof = True

    def done(idx, kind) -> bool:
        if idx not in got:
            return False
        if kind != "audio":
            return True
        return audio_ok.get(idx, 0) + audio_bad.get(idx, 0) >= _PROBE_AUDIO_PACKETS

    try:
        for pkt in container.demux(*streams):
            idx = pkt.stream.index
            kind = pkt.stream.type
            if done(idx, kind):
                continue
            if pkt.size:
                seen.add(idx)
                n += 1
            try:
                frames = pkt.decode()
                if kind == "audio" and pkt.size:
                    audio_ok[idx] = audio_ok.get(idx, 0) + 1
            except av.error.FFmpegError:
                frames = []
                if kind == "audio":
                    audio_bad[idx] = audio_bad.get(idx, 0) + 1
            if frames and idx not in got:
                got[idx] = frames[0]
            if all(done(s.index, s.type) for s in streams):
                eof = False
                break
            if n >= _PROBE_MAX_PACKETS:
                eof = False
                break
    except av.error.FFmpegError as exc:
        log.debug("probe demux stopped: %s", exc)
    for s in streams:  # frame-threaded / delayed decoders: drain what was sent
        if s.index not in got and s.index in seen:
            try:
                frames = s.decode(None)
            except Exception:
                frames = []
            if frames:
                got[s.index] = frames[0]
    for idx, bad in audio_bad.items():  # mostly undecodable: noise, not a track
        if bad > audio_ok.get(idx, 0) and idx in got:
            del got[idx]
    return got, seen, eof


def probe(source: Source) -> MediaInfo:
    """Describe ``source`` (a path or the file's bytes).

    Raises :class:`MediaError` when it is not an audio/video file we can read, has
    neither an audio nor a video stream, or holds less than 0.1 s of them.  Cheap: reads
    the header, decodes the first frame of each stream (to check they decode and to read
    the rotation) and reads the packets of the file's tail, without decoding them, to
    find where the streams end.  The duration is the one the headers state, unless the
    packets end more than half a second before it (headers that claim hours for a file
    of seconds) or the headers state none: then it is where the packets end.
    """
    container = open_container(source)
    try:
        return _probe(container)
    finally:
        container.close()


def _probe(container) -> MediaInfo:
    vs = video_stream(container)
    aud = audio_stream(container)
    streams = [s for s in (vs, aud) if s is not None]
    if not streams:
        if container.streams.subtitles:
            raise MediaError("no audio or video stream (subtitles only)")
        raise MediaError("no audio or video stream")
    origin = origin_seconds(container)

    ends = [e for e in (_stream_end(s, origin) for s in streams) if e is not None]
    stated = max(ends) if ends else None
    if stated is None and container.duration is not None:
        stated = container.duration / av.time_base

    got, seen, eof = _first_frames(container, streams)
    # A stream counts if its first frame decodes.  One not seen in the first packets may
    # start later (kept), unless the whole file was read without a packet of it.
    if vs is not None and vs.index not in got and (vs.index in seen or eof):
        log.info("video stream does not decode; treating the file as having no video")
        vs = None
    if aud is not None and aud.index not in got and (aud.index in seen or eof):
        log.info("audio stream does not decode; treating the file as having no audio")
        aud = None
    if vs is None and aud is None:
        raise MediaError("not a media file we can read: no audio or video that decodes (corrupt or truncated?)")

    if stated is not None and stated <= 0:
        stated = None
    measured = _scan_end(container, [s for s in (vs, aud) if s is not None], origin, stated)
    duration = stated
    if measured is not None and (stated is None or measured < stated - _CLAIM_SLACK):
        if stated is not None:
            log.info("the headers say %.3f s but the packets end at %.3f s: taking the packets' end", stated, measured)
        duration = measured
    if duration is None or duration <= 0:
        raise MediaError("not a media file we can read: no duration (empty or corrupt)")
    if duration < _MIN_SECONDS:
        raise MediaError(
            f"not a media file we can read: only {duration:.3f} s of audio and video, under {_MIN_SECONDS:g} s "
            "(truncated, or its headers claim what it does not hold)"
        )

    width = height = fps = None
    rotation = 0
    vcodec = acodec = None
    if vs is not None:
        frame = got.get(vs.index)
        cc = vs.codec_context
        width = (frame.width if frame is not None else cc.width) or None
        height = (frame.height if frame is not None else cc.height) or None
        rotation = rotation_of(frame) if frame is not None else 0
        if rotation in (90, 270):
            width, height = height, width
        fps = _rate(vs)
        vcodec = cc.name
    sr = ch = None
    if aud is not None:
        cc = aud.codec_context
        acodec = cc.name
        sr = cc.sample_rate or None
        try:
            ch = cc.channels or cc.layout.nb_channels or None
        except Exception:
            ch = None
        frame = got.get(aud.index)
        if frame is not None:  # decoders know better than headers (e.g. HE-AAC, opus)
            sr = frame.sample_rate or sr
            ch = frame.layout.nb_channels or ch
    return MediaInfo(
        duration=float(duration),
        has_video=vs is not None,
        has_audio=aud is not None,
        container=container.format.name,
        width=width,
        height=height,
        fps=fps,
        rotation=rotation,
        video_codec=vcodec,
        audio_codec=acodec,
        audio_sample_rate=sr,
        audio_channels=ch,
    )
