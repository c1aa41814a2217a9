"""Opening containers with PyAV, and turning every way that can fail into one :class:`MediaError`."""

from __future__ import annotations

import io
import os
import stat

import av
import av.error

from ..errors import MediaError  # noqa: F401  (re-exported: the error family lives in emofusion.errors)

__all__ = ["Source", "MediaError", "open_container", "MAX_FRAME_SECONDS"]

Source = str | os.PathLike | bytes
"""A path, or the file's bytes in memory."""

# Demuxers FFmpeg picks from a file's extension or from weak signatures that are not
# audio/video: text art (tty for .txt, bin/xbin/adf/idf) and still images.
_TEXT_FORMATS = {"tty", "bin", "xbin", "adf", "idf"}
_IMAGE_FORMATS = {"image2", "image2pipe"}
# Video codecs that are text art or still images, whatever the demuxer said.
_NON_VIDEO_CODECS = {"ansi", "bintext", "xbin", "idf"}

# Bounded probing: at most this many bytes are read to guess the format / find the streams.
_OPEN_OPTIONS = {"probesize": str(5 * 1024 * 1024), "analyzeduration": str(5_000_000)}

#: The longest one packet or frame is taken to last (seconds): a longer stated duration -- a last
#: sample stretched over hours, a still picture said to stay for a day -- is a claim, not content.
MAX_FRAME_SECONDS = 10.0


def _check_path(path: str) -> None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise MediaError("no such file") from None
    except NotADirectoryError:
        raise MediaError("no such file") from None
    except PermissionError:
        raise MediaError("permission denied") from None
    except OSError as exc:
        raise MediaError(f"cannot read the file: {exc.strerror or exc}") from None
    if stat.S_ISDIR(st.st_mode):
        raise MediaError("is a directory, not a file")
    if stat.S_ISREG(st.st_mode) and st.st_size == 0:
        raise MediaError("empty file")
    if not os.access(path, os.R_OK):
        raise MediaError("permission denied")


def _reason_from_av(exc: BaseException) -> str:
    if isinstance(exc, FileNotFoundError):
        return "no such file"
    if isinstance(exc, IsADirectoryError):
        return "is a directory, not a file"
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, av.error.InvalidDataError):
        return "not a media file we can read: unknown format, or corrupt or truncated data"
    if isinstance(exc, av.error.FFmpegError):
        text = getattr(exc, "strerror", None) or str(exc)
        return f"not a media file we can read: {text}"
    if isinstance(exc, (MemoryError, RecursionError)):
        return f"not a media file we can read: {type(exc).__name__}"
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return f"cannot read the media: {text}"


def open_container(source: Source) -> av.container.InputContainer:
    """Open ``source`` (a path or the file's bytes) for reading.

    Raises :class:`MediaError` with a one-line reason for anything that is not an
    audio/video file we can demux: missing path, directory, empty file, unknown or
    truncated data, text files, still images.  The caller closes the container.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise MediaError("empty file")
        file: object = io.BytesIO(bytes(source))
    elif isinstance(source, io.IOBase):  # tolerated: an already-open binary file object
        file = source
    else:
        try:
            path = os.fspath(source)
        except TypeError:
            raise TypeError(f"source must be a path or bytes, not {type(source).__name__}") from None
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        _check_path(path)
        file = path
    try:
        container = av.open(file, mode="r", options=_OPEN_OPTIONS)
    except MediaError:
        raise
    except Exception as exc:  # av raises its own hierarchy, plus OSError subclasses
        raise MediaError(_reason_from_av(exc)) from None
    try:
        _reject_non_media(container)
    except BaseException:
        container.close()
        raise
    return container


def _reject_non_media(container: av.container.InputContainer) -> None:
    names = set(container.format.name.split(","))
    if names & _TEXT_FORMATS:
        raise MediaError("not a media file we can read: looks like a text or binary file")
    if names & _IMAGE_FORMATS or any(n.endswith("_pipe") for n in names):
        raise MediaError("an image, not audio or video")
    for s in container.streams:
        if s.type == "video" and s.codec_context.name in _NON_VIDEO_CODECS:
            raise MediaError("not a media file we can read: looks like a text or binary file")


def is_attached_picture(stream) -> bool:
    """Cover art in mp3/flac/m4a files is a one-frame 'video' stream: not video."""
    try:
        return bool(stream.disposition & av.stream.Disposition.attached_pic)
    except Exception:  # pragma: no cover - older PyAV
        return False


def video_stream(container):
    """The video stream we read (None if there is none): the best non-cover-art one."""
    candidates = [s for s in container.streams.video if not is_attached_picture(s)]
    if not candidates:
        return None
    try:
        best = container.streams.best("video")
    except Exception:
        best = None
    if best is not None and best in candidates:
        return best
    return candidates[0]


def audio_stream(container):
    """The audio stream we read (None if there is none)."""
    if not container.streams.audio:
        return None
    try:
        best = container.streams.best("audio")
    except Exception:
        best = None
    return best if best is not None else container.streams.audio[0]


def origin_seconds(container) -> float:
    """Media time 0: the container's start time (so audio and video share one clock)."""
    st = container.start_time
    if st is None:
        return 0.0
    return st / av.time_base


def discard_others(container, keep) -> None:
    """Ask the demuxer to skip the packets of every stream but ``keep`` (saves I/O)."""
    for s in container.streams:
        if s is not keep and s.index != keep.index:
            try:
                s.discard = av.stream.Discard.all
            except Exception:  # pragma: no cover - best effort
                pass
