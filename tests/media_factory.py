"""The tests' media factory lives in the package (emofusion.media.synth), shared with benchmarks and the demo;
what only the tests need (files that lie about themselves) is here."""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from emofusion.media.synth import *  # noqa: F401,F403
from emofusion.media.synth import CONTAINERS, FRAME_CODE_BITS, frame_index, make_clip, make_face_image, tone  # noqa: F401

# ISO-BMFF boxes made of child boxes, on the way to the ones patched below.
_MP4_CONTAINERS = {b"moov", b"trak", b"mdia", b"edts", b"minf", b"stbl"}


def make_long_claim_mp4(path: str | os.PathLike, real_seconds: float = 2.0, claimed_seconds: float = 36000.0,
                        **clip: Any) -> Path:
    """A small real MP4 (video + audio, :func:`make_clip`, ``real_seconds`` long) whose headers claim
    ``claimed_seconds`` (see :func:`claim_mp4_duration`), as a hand-edited or hostile upload would.
    ``clip`` goes to :func:`make_clip`. Returns the path."""
    path = make_clip(Path(path), container="mp4", duration=real_seconds, **clip)
    path.write_bytes(claim_mp4_duration(path.read_bytes(), claimed_seconds))
    return path


def claim_mp4_duration(data: bytes, seconds: float) -> bytes:
    """The MP4 ``data`` claiming to last ``seconds``: the movie, track and media header durations, the
    edit lists' segments and each track's last sample (its time-to-sample entry) all say so, each in its
    own timescale (version 0 and 1 boxes). FFmpeg 8 believes the claim only when the sample table and
    the edit list both make it: the headers alone give way to the sample table. A track without an
    edit list gets one (one segment from media time 0); that and a split time-to-sample entry need
    the moov after the mdat (FFmpeg's default). Raises ValueError for data that is not such an MP4 or
    a duration a version 0 field cannot hold."""
    boxes = list(_boxes(data, 0, len(data)))
    moov = next((b for b in boxes if b[0] == b"moov"), None)
    if moov is None:
        raise ValueError("no moov box")
    mvhd = next((b for b in _boxes(data, moov[2], moov[3]) if b[0] == b"mvhd"), None)
    if mvhd is None:
        raise ValueError("no mvhd box")
    movie_scale = _header_timescale(data, mvhd[2])
    out = bytearray()
    for typ, start, body, end in boxes:
        if typ != b"moov":
            out += data[start:end]
            continue
        new = _rebuild(data, typ, body, end, seconds, movie_scale, 0)
        if len(new) != end - start and any(b[0] == b"mdat" and b[1] > start for b in boxes):
            raise ValueError("moov before mdat: a grown moov would move the samples")
        out += new
    return bytes(out)


def _boxes(data: bytes, start: int, end: int) -> Iterator[tuple[bytes, int, int, int]]:
    """(type, start, payload start, end) of each box in data[start:end]."""
    i = start
    while i + 8 <= end:
        size, typ = struct.unpack(">I4s", data[i : i + 8])
        head = 8
        if size == 1:
            (size,) = struct.unpack(">Q", data[i + 8 : i + 16])
            head = 16
        elif size == 0:
            size = end - i
        if size < head or i + size > end:
            raise ValueError(f"bad box size at {i}")
        yield typ, i, i + head, i + size
        i += size


def _box(typ: bytes, payload: bytes) -> bytes:
    """A box of type ``typ`` holding ``payload``."""
    return struct.pack(">I4s", 8 + len(payload), typ) + payload


def _header_timescale(data: bytes, body: int) -> int:
    """The timescale of an mvhd or mdhd whose payload starts at ``body``."""
    offset = 4 + (16 if data[body] == 1 else 8)
    return struct.unpack(">I", data[body + offset : body + offset + 4])[0]


def _put(payload: bytearray, offset: int, version: int, value: int) -> None:
    """Write a duration field: 64 bits in version 1 boxes, 32 in version 0."""
    if version == 1:
        struct.pack_into(">Q", payload, offset, value)
    elif value >= 1 << 32:
        raise ValueError(f"{value} does not fit a version 0 duration field")
    else:
        struct.pack_into(">I", payload, offset, value)


def _rebuild(data: bytes, typ: bytes, body: int, end: int, seconds: float, movie_scale: int,
             media_scale: int) -> bytes:
    """The box ``typ`` (payload data[body:end]) with its durations claiming ``seconds``; ``media_scale``
    is the timescale of the track it is in (0 outside a track's media)."""
    payload = bytearray(data[body:end])
    v = payload[0] if payload else 0
    movie = int(round(seconds * movie_scale))
    if typ == b"mvhd":
        _put(payload, 4 + (20 if v == 1 else 12), v, movie)
    elif typ == b"tkhd":
        _put(payload, 4 + (24 if v == 1 else 16), v, movie)
    elif typ == b"mdhd":
        _put(payload, 4 + (20 if v == 1 else 12), v, int(round(seconds * _header_timescale(data, body))))
    elif typ == b"elst":
        (count,) = struct.unpack_from(">I", payload, 4)
        entry = 20 if v == 1 else 12
        for k in range(count):
            _put(payload, 8 + k * entry, v, movie)
    elif typ == b"stts":
        (count,) = struct.unpack_from(">I", payload, 4)
        entries = [struct.unpack_from(">II", payload, 8 + 8 * k) for k in range(count)]
        if not entries or not media_scale:
            raise ValueError("a track without samples or timescale")
        n, delta = entries[-1]
        before = sum(c * d for c, d in entries) - delta  # media time before the last sample
        entries[-1:] = [(n - 1, delta)] if n > 1 else []
        last = int(round(seconds * media_scale)) - before
        if not 0 < last < 1 << 32:
            raise ValueError(f"{seconds} s cannot end with one sample of this track")
        entries.append((1, last))
        table = b"".join(struct.pack(">II", *e) for e in entries)
        payload = bytearray(payload[:4] + struct.pack(">I", len(entries)) + table)
    elif typ in _MP4_CONTAINERS:
        children = list(_boxes(data, body, end))
        if typ == b"mdia":
            media_scale = next((_header_timescale(data, c[2]) for c in children if c[0] == b"mdhd"), 0)
        payload = bytearray()
        for ctyp, _, cbody, cend in children:
            payload += _rebuild(data, ctyp, cbody, cend, seconds, movie_scale, media_scale)
            if ctyp == b"tkhd" and not any(c[0] == b"edts" for c in children):
                # one segment from media time 0 at rate 1.0 (version 1 where 32 bits are too few),
                # right after the track header
                if movie < 1 << 32:
                    elst = struct.pack(">4xIIiHH", 1, movie, 0, 1, 0)
                else:
                    elst = struct.pack(">IIQqHH", 1 << 24, 1, movie, 0, 1, 0)
                payload += _box(b"edts", _box(b"elst", elst))
    return _box(typ, bytes(payload))


# --- spoken words ------------------------------------------------------------------------------

#: Two sentences of the speech clip: one happy, one angry, with a pause between them.
SPOKEN = ("I am so happy to see you again.", "This is terrible, I hate it.")
SPEECH_LEAD, SPEECH_GAP = 0.5, 3.0


def espeak_wav(text: str, speed: int | None = 150) -> bytes:
    """``text`` spoken by espeak-ng's en-us voice as WAV bytes (`speed` in words per minute;
    None: espeak-ng's own default, 175); the test is skipped when espeak-ng is not installed
    (scripts/ensure-test-services.sh installs it)."""
    import shutil
    import subprocess

    import pytest

    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (scripts/ensure-test-services.sh installs it)")
    rate = ["-s", str(speed)] if speed is not None else []
    return subprocess.run(["espeak-ng", "-v", "en-us", *rate, "--stdout", text], check=True,
                          capture_output=True).stdout


def espeak_audio(text: str):
    """``text`` as :func:`espeak_wav` speaks it, decoded: 16 kHz mono float32."""
    from emofusion.media import read_audio

    return read_audio(espeak_wav(text))


def make_speech_clip(path: str | os.PathLike, **clip: Any) -> tuple[Path, list[tuple[float, float]]]:
    """A video (the synthetic face) whose sound is :data:`SPOKEN`: SPEECH_LEAD s of silence, the
    first sentence, SPEECH_GAP s of silence, the second, 0.5 s of silence. Returns the path and
    each sentence's (start, end) in seconds."""
    import numpy as np

    first, second = (espeak_audio(s) for s in SPOKEN)
    silence = [np.zeros(int(16000 * s), np.float32) for s in (SPEECH_LEAD, SPEECH_GAP, 0.5)]
    audio = np.concatenate([silence[0], first, silence[1], second, silence[2]])
    start1 = SPEECH_LEAD
    end1 = start1 + first.size / 16000
    start2 = end1 + SPEECH_GAP
    end2 = start2 + second.size / 16000
    clip.setdefault("face", make_face_image(80))
    path = make_clip(Path(path), duration=audio.size / 16000, sample_rate=16000, audio=audio, **clip)
    return path, [(start1, end1), (start2, end2)]
