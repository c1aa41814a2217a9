"""Faces followed across sampled frames: each face gets a track id that persists while the
person stays in view, through short misses and when two faces cross.

A face found in a frame is matched to a live track by where the track is predicted to be (its
last position moved by its last velocity), by size, and by appearance (the correlation of small
normalised face crops); the cheapest admissible pairs are taken first. A track not seen for
`max_gap` seconds ends; a face that matches no track starts a new one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..media.faces import Face

APPEARANCE_SIDE = 16  # pixels of the normalised crop the appearance cue compares
MAX_CENTRE_SHIFT = 1.5  # a match moves at most this many face heights from the predicted centre
MAX_SIZE_RATIO = 1.6  # ... and changes size by at most this factor
MIN_APPEARANCE = 0.2  # ... and correlates with the track's look at least this much
APPEARANCE_WEIGHT = 1.5  # cost = centre shift (face heights) + this x (1 - correlation)
APPEARANCE_MEMORY = 0.7  # a track's look: this much of the old look, the rest the new sighting's


def appearance(crop: np.ndarray) -> np.ndarray:
    """A face crop as a zero-mean, unit-norm vector of APPEARANCE_SIDE^2 values (light-invariant)."""
    import cv2

    small = cv2.resize(crop, (APPEARANCE_SIDE, APPEARANCE_SIDE), interpolation=cv2.INTER_AREA).astype(np.float32).ravel()
    small -= small.mean()
    norm = float(np.linalg.norm(small))
    return small / norm if norm > 1e-6 else small


@dataclass
class _Track:
    id: int
    centre: np.ndarray
    height: float
    velocity: np.ndarray  # pixels per second
    look: np.ndarray
    last_time: float

    def predicted(self, t: float) -> np.ndarray:
        return self.centre + self.velocity * (t - self.last_time)


@dataclass
class FaceTracks:
    """Assigns track ids (1, 2, ...) to the faces of successive frames."""

    max_gap: float = 2.0  # seconds a track survives unseen
    _tracks: list[_Track] = field(default_factory=list)
    _next_id: int = 1

    def update(self, t: float, faces: list[Face], crops: list[np.ndarray]) -> list[int]:
        """The track id of each face found at time `t` (crops: the faces' aligned crops, in order)."""
        self._tracks = [tr for tr in self._tracks if t - tr.last_time <= self.max_gap]
        looks = [appearance(c) for c in crops]
        pairs = []
        for i, face in enumerate(faces):
            x, y, w, h = face.box
            centre = np.array([x + w / 2.0, y + h / 2.0])
            for k, tr in enumerate(self._tracks):
                shift = float(np.linalg.norm(centre - tr.predicted(t))) / max(tr.height, h, 1.0)
                ratio = max(h, tr.height) / max(1.0, min(h, tr.height))
                similar = float(looks[i] @ tr.look)
                if shift <= MAX_CENTRE_SHIFT and ratio <= MAX_SIZE_RATIO and similar >= MIN_APPEARANCE:
                    pairs.append((shift + APPEARANCE_WEIGHT * (1.0 - similar), i, k))
        ids: list[int | None] = [None] * len(faces)
        taken: set[int] = set()
        for _, i, k in sorted(pairs):
            if ids[i] is not None or k in taken:
                continue
            ids[i] = self._tracks[k].id
            taken.add(k)
            self._follow(self._tracks[k], t, faces[i], looks[i])
        for i, face in enumerate(faces):
            if ids[i] is None:
                x, y, w, h = face.box
                track = _Track(self._next_id, np.array([x + w / 2.0, y + h / 2.0]), float(h), np.zeros(2), looks[i], t)
                self._next_id += 1
                self._tracks.append(track)
                ids[i] = track.id
        return [int(i) for i in ids]  # type: ignore[arg-type]

    @staticmethod
    def _follow(track: _Track, t: float, face: Face, look: np.ndarray) -> None:
        x, y, w, h = face.box
        centre = np.array([x + w / 2.0, y + h / 2.0])
        dt = t - track.last_time
        if dt > 0:
            track.velocity = 0.5 * track.velocity + 0.5 * (centre - track.centre) / dt
        track.centre, track.height, track.last_time = centre, float(h), t
        mixed = APPEARANCE_MEMORY * track.look + (1 - APPEARANCE_MEMORY) * look
        norm = float(np.linalg.norm(mixed))
        track.look = mixed / norm if norm > 1e-6 else mixed
