"""Per-person results: who is speaking in each voiced window, and each tracked person's timeline
(their face, and the voice and words attributed to them, fused per window).

Who is speaking is read from the video: the visible person whose mouth moves most in a window
with speech (`face.mouth_motion`, measured between sampled frames on crops framed by the eyes),
when it moves at least SPEAKING_MOTION; when nobody's does, the voice is off-screen. The voice
path only says when there is speech; the mouth says whose it is. Sampled twice a second, this
holds for still heads and not for moving ones (docs/experiments/people.md).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .face import PersonFace, TrackSeen, WindowFaces
from .results import FaceResult, TextResult, Verdict, VoiceResult
from .windows import Window

#: A visible person speaks in a voiced window when their mouth motion there is at least this
#: (in units of the crop's contrast, after a blur; still heads measure about 0, talking ones mostly 0.02-0.2:
#: scripts/experiments/speaker_attribution.py, docs/experiments/people.md).
SPEAKING_MOTION = 0.015
OFF_SCREEN = "off_screen"
MAX_PEOPLE = 32  # people listed in a result, those seen in the most frames first
THUMBNAIL_SIDE = 64

Fuse = Callable[[dict[str, "np.ndarray | None"]], "np.ndarray | None"]


def person_id(track: int) -> str:
    """The id a person has in the JSON ("p1", "p2", ...)."""
    return f"p{track}"


def speaker_among(mouths: Mapping[str, float | None], threshold: float = SPEAKING_MOTION) -> str | None:
    """Who speaks in a window with speech, from each visible person's mouth motion there (by
    person id; None: not measured): the mouth that moved most, when it moved at least `threshold`;
    OFF_SCREEN when every visible mouth was measured and none did (or nobody is visible); None
    when a visible mouth could not be measured (a moving head, no landmarks): not told."""
    measured = {k: v for k, v in mouths.items() if v is not None}
    if measured:
        best = max(measured, key=measured.__getitem__)
        if measured[best] >= threshold:
            return best
    return OFF_SCREEN if len(measured) == len(mouths) else None


def speaker_of(people: dict[int, PersonFace], voiced: bool) -> str | None:
    """Who speaks in a window (`speaker_among`); None without speech."""
    if not voiced:
        return None
    return speaker_among({person_id(track): p.mouth for track, p in people.items()})


@dataclass
class PersonWindow:
    """One person in one window."""

    start: float
    end: float
    face: FaceResult
    mouth: float | None
    speaking: bool
    fused: Verdict | None

    def to_dict(self) -> dict[str, Any]:
        return {"start": round(self.start, 3), "end": round(self.end, 3),
                "face": {"probs": self.face.probs_dict(), "box": self.face.box, "frames": self.face.frames},
                "mouth_motion": None if self.mouth is None else round(self.mouth, 4),
                "speaking": self.speaking, "fused": self.fused.to_dict() if self.fused else None}


@dataclass
class Person:
    """One tracked person: when they were seen, how they look, their windows and summary."""

    id: str
    windows: list[PersonWindow]
    frames: int  # sampled frames in which the face was analysed
    box: list[int]  # the largest box the face had
    box_time: float  # the time of the frame it was largest in
    thumbnail: np.ndarray | None = None  # that frame's face crop (uint8 grayscale)
    labels: Sequence[str] = ()

    @property
    def first_seen(self) -> float:
        return self.windows[0].start

    @property
    def last_seen(self) -> float:
        return self.windows[-1].end

    @property
    def summary(self) -> Verdict | None:
        """The mean of the person's fused distributions over their windows."""
        fused = [w.fused.probs for w in self.windows if w.fused is not None]
        if not fused:
            return None
        mean = np.mean(fused, axis=0)
        return Verdict(self.labels, mean / mean.sum())

    def to_dict(self) -> dict[str, Any]:
        summary = self.summary
        verdict = summary.to_dict() if summary else {"probs": None, "top": None, "score": None}
        return {
            "id": self.id, "first_seen": round(self.first_seen, 3), "last_seen": round(self.last_seen, 3),
            "frames": self.frames, "box": self.box, "box_time": round(self.box_time, 3),
            "thumbnail": thumbnail_uri(self.thumbnail) if self.thumbnail is not None else None,
            "windows": [w.to_dict() for w in self.windows],
            "summary": {**verdict, "windows": len(self.windows),
                        "speaking_windows": sum(1 for w in self.windows if w.speaking)},
        }


def thumbnail_uri(crop: np.ndarray) -> str:
    """A face crop as a small JPEG data URI."""
    import cv2

    img = cv2.resize(crop, (THUMBNAIL_SIDE, THUMBNAIL_SIDE), interpolation=cv2.INTER_CUBIC)
    ok, data = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 85])
    return "data:image/jpeg;base64," + base64.b64encode(data.tobytes()).decode("ascii") if ok else ""


@dataclass
class PeopleTimeline:
    """Collects each tracked person's windows while an input is analysed, and lists them at the end."""

    labels: Sequence[str]
    fuse: Fuse
    watches_mouths: bool = True  # False: the detector gives no landmarks, who speaks is not told
    max_people: int = MAX_PEOPLE
    _windows: dict[int, list[PersonWindow]] = field(default_factory=dict)

    def add(self, window: Window, faces: WindowFaces, voice: VoiceResult | None, text: TextResult | None) -> str | None:
        """Record one window's people; returns who speaks in it (see `speaker_of`)."""
        speaker = speaker_of(faces.people, voice is not None) if self.watches_mouths else None
        for track, seen in faces.people.items():
            speaking = speaker == person_id(track)
            present = {"face": seen.result.probs, "voice": voice.probs if speaking and voice else None,
                       "text": text.probs if speaking and text else None}
            fused = self.fuse(present)
            self._windows.setdefault(track, []).append(PersonWindow(
                window.start, window.end, seen.result, seen.mouth, speaking,
                Verdict(self.labels, fused) if fused is not None else None))
        return speaker

    def keep_only(self, tracks: "dict[int, TrackSeen]") -> None:
        """Forget the windows of tracks the face path forgot."""
        for track in [k for k in self._windows if k not in tracks]:
            del self._windows[track]

    def people(self, seen: dict[int, TrackSeen], sampled_frames: int) -> tuple[list[Person], int]:
        """(the people listed, in id order: at most max_people, those seen in the most frames, and
        only those seen in 2 frames or more unless the input has fewer than 4 sampled frames (a
        short clip); how many tracks were left out). `seen`: each track's frames and largest face
        (`face.FaceRun.tracks`); `sampled_frames`: how many frames the face path read."""
        min_frames = 2 if sampled_frames >= 4 else 1
        people = []
        for track, windows in self._windows.items():
            stats = seen.get(track)
            if stats is None:
                continue
            people.append(Person(person_id(track), windows, stats.frames, list(stats.box), stats.time, stats.crop,
                                 self.labels))
        kept = sorted((p for p in people if p.frames >= min_frames), key=lambda p: (-p.frames, int(p.id[1:])))
        listed = sorted(kept[: self.max_people], key=lambda p: int(p.id[1:]))
        return listed, len(people) - len(listed)
