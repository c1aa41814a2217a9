"""Reading media: probing containers, decoding audio, sampling video frames.

Every function takes a :data:`Source` -- a path or the file's bytes -- and raises
:class:`MediaError` (one-line reason) for input it cannot use.  Times are seconds from
the container's start time, the same clock for audio and video.
"""

from __future__ import annotations

from ._container import MediaError, Source, open_container
from .audio import AudioWindowReader, read_audio
from .probe import MediaInfo, probe
from .video import FrameStats, iter_frames

__all__ = [
    "Source",
    "MediaError",
    "MediaInfo",
    "open_container",
    "probe",
    "read_audio",
    "AudioWindowReader",
    "iter_frames",
    "FrameStats",
]
