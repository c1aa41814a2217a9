"""Face detection and the tracker that follows a face between sampled frames."""

import numpy as np
import pytest
from media_factory import make_face_image

from emofusion.media.faces import FaceDetector, FaceTracker

H, W = 360, 640


@pytest.fixture(scope="module")
def detector():
    return FaceDetector()


def frame_with_face(x: int, y: int, side: int) -> np.ndarray:
    """A face pasted on a horizontal gradient (on a flat background, histogram equalisation
    leaves Haar nothing to find)."""
    frame = np.tile(np.linspace(30, 200, W), (H, 1)).astype(np.uint8)
    frame[y : y + side, x : x + side] = make_face_image(side)
    return frame


def iou(a, b) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    inter = max(0, min(ax + aw, bx + bw) - max(ax, bx)) * max(0, min(ay + ah, by + bh) - max(ay, by))
    return inter / (aw * ah + bw * bh - inter)


def test_detect_limits_box_sizes(detector):
    frame = frame_with_face(200, 100, 150)
    (box,) = detector._detect(frame)
    assert 100 <= box[2] <= 160
    assert detector._detect(frame, max_side=box[2] // 2) == []
    assert detector._detect(frame, min_side=box[2] * 2) == []
    # the scales above the limit no longer vote: the same face, its box no larger than allowed
    (limited,) = detector._detect(frame, max_side=box[2] + 10)
    assert limited[2] <= box[2] + 10 and iou(limited, box) > 0.8


@pytest.mark.parametrize("settings", [{}, {"track_face_px": 56, "track_min": 0.6, "track_max": 1.6}])
def test_tracker_follows_a_moving_face(detector, settings):
    """Between full-frame passes the face is found by the region search, where a full-frame
    pass finds it, and its box agrees with that pass's."""
    tracker = FaceTracker(detector, redetect_every=4, **settings)
    searched = 0
    for k in range(12):
        frame = frame_with_face(120 + 18 * k, 80 + 6 * k, 140 + 2 * k)
        box, faces = tracker.find(frame)
        if tracker.last_searched:
            searched += 1
        (full,) = detector.detect(frame, max_side=tracker.detect_max_side)
        assert box is not None and faces == 1
        assert iou(box, full) > 0.7, (k, box, full)
    assert searched == 9  # frames 2-4, 6-8, 10-12 of each run of four


def test_tracker_redetects_when_the_region_search_fails(detector):
    """A face that jumped out of the searched region is found by a full-frame pass at once."""
    tracker = FaceTracker(detector, redetect_every=10)
    first, _ = tracker.find(frame_with_face(40, 60, 140))
    moved = frame_with_face(440, 150, 140)
    box, _ = tracker.find(moved)
    assert not tracker.last_searched  # this frame was detected in full
    assert box is not None and iou(box, detector.detect(moved, max_side=320)[0]) == 1.0
    assert iou(box, first) == 0.0


def test_tracker_settings_are_checked(detector):
    for bad in ({"track_margin": -0.1}, {"track_face_px": 0}, {"track_min": 0}, {"track_min": 1.2, "track_max": 1.0}):
        with pytest.raises(ValueError, match="track_"):
            FaceTracker(detector, **bad)
