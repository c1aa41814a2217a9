"""Generated media for tests, benchmarks and the demo: clips in many containers, a face OpenCV can find.

    from emofusion.media.synth import make_clip, make_face_image, frame_index, FRAME_CODE_BITS

    python -m emofusion.media.synth demo out/demo.mp4     # a 10 s 640x360 demo clip

Everything is encoded with PyAV (no system ffmpeg, nothing downloaded).

Video frames carry their index as a binary code: a row of ``FRAME_CODE_BITS`` black/white
cells along the top edge (bit 0 leftmost), readable back with :func:`frame_index` even
after compression and downscaling.  Below it a diagonal pattern moves each frame, and an
optional face (grayscale) is pasted in the middle.  Audio is a sine tone (amplitude 0.5),
optionally amplitude-modulated at 4 Hz with two harmonics so it looks like speech to a VAD.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

__all__ = ["make_clip", "make_face_image", "frame_index", "FRAME_CODE_BITS", "tone", "CONTAINERS"]

FRAME_CODE_BITS = 7  # frame indices 0..127
_CODE_ROWS = 0.2  # the code band is the top 20 % of the frame

# container -> (video codec, audio codec) the tests use by default
CONTAINERS = {
    "mp4": ("libx264", "aac"),
    "mov": ("libx264", "aac"),
    "mkv": ("libx264", "libopus"),
    "webm": ("libvpx", "libopus"),
    "avi": ("mpeg4", "libmp3lame"),
    "wav": (None, "pcm_s16le"),
    "mp3": (None, "libmp3lame"),
    "flac": (None, "flac"),
    "ogg": (None, "libopus"),
}

_AUDIO_ONLY = {"wav", "mp3", "flac", "ogg", "m4a", "opus"}


def tone(duration: float, sample_rate: int, tone_hz: float = 220.0, modulate: bool = False) -> np.ndarray:
    """The audio make_clip writes (mono float32), for comparisons."""
    n = int(round(duration * sample_rate))
    t = np.arange(n, dtype=np.float64) / sample_rate
    x = np.sin(2 * np.pi * tone_hz * t)
    if modulate:
        x = x + 0.3 * np.sin(2 * np.pi * 2 * tone_hz * t) + 0.15 * np.sin(2 * np.pi * 3 * tone_hz * t)
        x = x / 1.45 * (0.55 + 0.45 * np.sin(2 * np.pi * 4.0 * t))
    return (0.5 * x).astype(np.float32)


def _frame_image(i: int, width: int, height: int, face: np.ndarray | None) -> np.ndarray:
    """Grayscale frame i: moving diagonal stripes, the index code on top, the face in the middle."""
    yy, xx = np.mgrid[0:height, 0:width]
    img = (96 + 48 * np.sin((xx + yy + 4 * i) * (2 * np.pi / 32))).astype(np.uint8)
    band = max(8, int(round(height * _CODE_ROWS)))
    cell = width // FRAME_CODE_BITS
    img[:band] = 128
    for b in range(FRAME_CODE_BITS):
        img[:band, b * cell : (b + 1) * cell] = 235 if (i >> b) & 1 else 20
    if face is not None:
        _paste(img, face)
    return img


def _paste(frame: np.ndarray, face: np.ndarray) -> None:
    """Paste ``face`` where :func:`_frame_image` would (centred below the code band)."""
    height, width = frame.shape[:2]
    band = max(8, int(round(height * _CODE_ROWS)))
    fh, fw = face.shape[:2]
    if fh > height - band or fw > width:
        raise ValueError(f"face {fw}x{fh} does not fit below the code band of a {width}x{height} frame")
    y0 = band + (height - band - fh) // 2
    x0 = (width - fw) // 2
    frame[y0 : y0 + fh, x0 : x0 + fw] = face


def frame_index(img: np.ndarray) -> int:
    """Read the index code back from a decoded (upright, possibly downscaled) frame:
    gray (H, W) or colour (H, W, 3)."""
    if img.ndim == 3:
        img = img.mean(axis=2)
    h, w = img.shape
    band = max(8, int(round(h * _CODE_ROWS)))
    cell = w / FRAME_CODE_BITS
    y = band // 2
    idx = 0
    for b in range(FRAME_CODE_BITS):
        x = int((b + 0.45) * cell)
        v = float(img[max(0, y - 1) : y + 2, max(0, x - 1) : x + 2].mean())
        if v > 128:
            idx |= 1 << b
    return idx


def _default_rate(audio_codec: str, sample_rate: int | None) -> int:
    if sample_rate is not None:
        return sample_rate
    return 48000 if "opus" in audio_codec else 16000


def make_clip(
    path,
    *,
    container: str = "mp4",
    video_codec: str | None = "libx264",
    audio_codec: str | None = "aac",
    duration: float = 2.0,
    width: int = 160,
    height: int = 120,
    fps: int = 15,
    with_video: bool = True,
    with_audio: bool = True,
    sample_rate: int | None = None,
    channels: int = 1,
    tone_hz: float = 220.0,
    silent: bool = False,
    modulate: bool = False,
    face: np.ndarray | None = None,
    rotation: int = 0,
    gop_size: int | None = None,
    bframes: int | None = 0,
    preset: str = "ultrafast",
    audio_start: float = 0.0,
    options: dict | None = None,
    audio: np.ndarray | None = None,
    frames: np.ndarray | None = None,
) -> Path:
    """Encode a small clip to ``path`` (suffix replaced by ``container`` if missing) and
    return its path.

    ``video_codec`` / ``audio_codec`` default to those of :data:`CONTAINERS` for the
    container when left at the mp4 defaults; audio-only containers (wav, mp3, flac, ogg)
    get no video.  ``sample_rate`` defaults to 48000 for opus, else 16000.  ``rotation``
    (0/90/180/270) writes a display matrix asking players to turn the picture that many
    degrees clockwise (mp4/mov).  ``gop_size`` sets the keyframe interval (frames) and
    ``bframes`` the B-frames x264 may use (frames then decode out of order); ``preset``
    the x264 preset (``"medium"``, x264's default and what ``ffmpeg -i in out.mp4``
    writes, adds CABAC, deblocking and more reference frames: slower to decode);
    ``bframes=None`` leaves the number of B-frames to the preset.
    ``audio_start`` delays the audio (seconds of nothing before its first sample).
    ``channels`` > 1 writes the same tone in each channel.  ``face``: a uint8 image,
    grayscale (H, W) or RGB (H, W, 3) -- e.g. :func:`make_face_image` -- pasted in the
    middle of every frame, below the frame-index band (the top 20 % of the frame); it
    must fit there.
    ``audio``: mono float32 samples at ``sample_rate`` to write instead of the tone.
    ``frames``: (N, height, width, 3) uint8 RGB pictures to write instead of the generated
    ones (N = duration x fps).
    ``options`` go to the muxer, e.g. ``{"movflags": "faststart"}`` (mp4: index first)
    or ``{"live": "1"}`` (webm/mkv as a browser records it: no duration, no cues).
    """
    path = Path(path)
    if not path.suffix:
        path = path.with_suffix("." + container)
    defaults = {**CONTAINERS, "m4a": (None, "aac"), "opus": (None, "libopus")}
    if container in defaults and (video_codec, audio_codec) == ("libx264", "aac"):
        video_codec, audio_codec = defaults[container]
    if container in _AUDIO_ONLY:
        with_video = False
    if video_codec is None:
        with_video = False
    if audio_codec is None:
        with_audio = False
    if not (with_video or with_audio):
        raise ValueError("a clip needs audio or video")
    fmt = {"mkv": "matroska", "m4a": "ipod"}.get(container, container)

    with av.open(str(path), mode="w", format=fmt, options=dict(options or {})) as out:
        vs = as_ = None
        if with_video:
            vs = out.add_stream(video_codec, rate=fps)
            vs.width, vs.height = width, height
            vs.pix_fmt = "yuv420p"
            vs.thread_count = 1  # encoder threads cost more than they save on tiny clips
            if gop_size is not None:
                vs.gop_size = gop_size
            if video_codec == "libx264":
                params = [f"bframes={bframes}"] if bframes is not None else []
                if gop_size is not None:
                    params += [f"keyint={gop_size}", f"min-keyint={gop_size}", "scenecut=0"]
                vs.options = {"preset": preset, **({"x264-params": ":".join(params)} if params else {})}
            elif video_codec in ("libvpx", "libvpx-vp9"):
                vs.options = {"deadline": "realtime", "cpu-used": "8", "threads": "1"}
                vs.bit_rate = 400_000
            elif video_codec == "mpeg4":
                vs.bit_rate = 400_000
            if rotation:
                if rotation not in (90, 180, 270):
                    raise ValueError("rotation must be 0, 90, 180 or 270")
                ccw = (-rotation) % 360
                vs.set_display_rotation(ccw if ccw <= 180 else ccw - 360)
        if with_audio:
            rate = _default_rate(audio_codec, sample_rate)
            layout = "mono" if channels == 1 else "stereo"
            as_ = out.add_stream(audio_codec, rate=rate, layout=layout)
            if audio_codec in ("aac", "libmp3lame", "libopus"):
                as_.bit_rate = 64_000

        packets: list = []
        # Video
        if vs is not None:
            n_frames = int(round(duration * fps))
            vs.time_base = Fraction(1, fps)
            if frames is not None and frames.shape != (n_frames, height, width, 3):
                raise ValueError(f"frames must be ({n_frames}, {height}, {width}, 3), not {frames.shape}")
            for i in range(n_frames):
                if frames is not None:
                    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frames[i]), format="rgb24")
                    frame.pts = i
                    frame.time_base = Fraction(1, fps)
                    packets += vs.encode(frame)
                    continue
                g = _frame_image(i, width, height, face if face is not None and face.ndim == 2 else None)
                rgb = np.repeat(g[:, :, None], 3, axis=2)
                if face is not None and face.ndim == 3:
                    _paste(rgb, face)
                frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
                frame.pts = i
                frame.time_base = Fraction(1, fps)
                packets += vs.encode(frame)
            packets += vs.encode()

        # Audio
        if as_ is not None:
            rate = as_.codec_context.sample_rate
            n = int(round((duration - audio_start) * rate))
            if audio is not None:
                if rate != (sample_rate or rate):
                    raise ValueError("audio samples must be at the clip's sample_rate")
                x = np.zeros(n, np.float32)
                x[: min(n, len(audio))] = audio[:n]
            else:
                x = np.zeros(n, np.float32) if silent else tone(duration - audio_start, rate, tone_hz, modulate)[:n]
            block = 4096
            first = int(round(audio_start * rate))
            for k in range(0, n, block):
                chunk = x[k : k + block]
                arr = np.repeat(chunk[None, :], channels, axis=0).astype(np.float32)
                frame = av.AudioFrame.from_ndarray(arr, format="fltp", layout=as_.codec_context.layout.name)
                frame.sample_rate = rate
                frame.pts = first + k
                frame.time_base = Fraction(1, rate)
                packets += as_.encode(frame)
            apk = as_.encode()
            packets += apk
            if container == "avi":
                # AVI cannot store the encoder's negative start (mp3 priming); FFmpeg would
                # shift every stream by it and leave holes in the video. Start audio at 0.
                apk = [p for p in packets if p.stream is as_]
                low = min((p.dts for p in apk if p.dts is not None), default=0)
                if low < 0:
                    for p in apk:
                        p.pts = p.pts - low if p.pts is not None else None
                        p.dts = p.dts - low if p.dts is not None else None

        # Interleave by time, as real files are.
        def when(pkt):
            ts = pkt.dts if pkt.dts is not None else (pkt.pts if pkt.pts is not None else 0)
            return float(ts * pkt.time_base) if pkt.time_base is not None else 0.0

        for pkt in sorted(packets, key=when):  # stable: each stream keeps its order
            out.mux(pkt)
    return path


# --------------------------------------------------------------------------- faces


def make_face_image(size: int = 160, background: int = 60) -> np.ndarray:
    """A synthetic grayscale face (uint8, ``size`` x ``size``) that OpenCV's Haar
    frontal-face cascade finds: ``detectMultiScale(img, 1.1, 5)`` returns exactly one
    box, alone (48..240 px) or pasted into a larger frame, also after JPEG/H.264
    compression or mild noise.  Drawn large (dark hair, light oval face, brows, eyes with
    shadowed sockets, bright nose bridge, nostrils, mouth), blurred, then resized."""
    import cv2

    big = 400
    img = np.full((big, big), background, np.uint8)
    c = big // 2

    def p(f: float) -> int:
        return int(round(big * f))

    cv2.ellipse(img, (c, p(0.44)), (p(0.36), p(0.42)), 0, 0, 360, 40, -1)  # hair / head
    cv2.ellipse(img, (c, p(0.54)), (p(0.30), p(0.38)), 0, 0, 360, 185, -1)  # face
    cv2.ellipse(img, (c, p(0.22)), (p(0.30), p(0.12)), 0, 180, 360, 40, -1)  # hairline
    ey, ex = p(0.46), p(0.12)
    for sx in (-1, 1):
        x = c + sx * ex
        cv2.ellipse(img, (x, ey - p(0.07)), (p(0.075), p(0.02)), 0, 0, 360, 60, -1)  # brow
        cv2.ellipse(img, (x, ey), (p(0.07), p(0.04)), 0, 0, 360, 110, -1)  # socket shadow
        cv2.ellipse(img, (x, ey), (p(0.05), p(0.022)), 0, 0, 360, 220, -1)  # eye white
        cv2.circle(img, (x, ey), p(0.02), 40, -1)  # iris
    cv2.ellipse(img, (c, p(0.56)), (p(0.03), p(0.08)), 0, 0, 360, 200, -1)  # nose bridge
    for sx in (-1, 1):
        cv2.ellipse(img, (c + sx * p(0.035), p(0.63)), (p(0.02), p(0.012)), 0, 0, 360, 90, -1)  # nostrils
    cv2.ellipse(img, (c, p(0.74)), (p(0.09), p(0.025)), 0, 0, 360, 80, -1)  # mouth
    img = cv2.GaussianBlur(img, (0, 0), big / 100)
    return cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)


def main(argv: list[str] | None = None) -> None:
    """`python -m emofusion.media.synth demo PATH [--duration S] [--width W] [--height H]`."""
    import argparse

    ap = argparse.ArgumentParser(description="Write a generated clip (synthetic face, speech-like tone).")
    ap.add_argument("kind", choices=["demo"])
    ap.add_argument("path")
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=360)
    ap.add_argument("--fps", type=int, default=30)
    args = ap.parse_args(argv)
    Path(args.path).parent.mkdir(parents=True, exist_ok=True)
    face = make_face_image(int(args.height * 0.5))
    out = make_clip(args.path, duration=args.duration, width=args.width, height=args.height, fps=args.fps,
                    face=face, modulate=True)
    print(out)


if __name__ == "__main__":
    main()
