"""Every person in the frame: detection recall on real faces, tracks that keep their identity,
per-person results, who is speaking, and bounded results on hostile input.

Real faces come from FER-2013 `val` under ../shared/data (skipped without it); the clips are
generated (`emofusion.media.synth.make_people_clip`).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import assert_contract_v1

from emofusion.analysis import Analyzer
from emofusion.analysis.people import OFF_SCREEN
from emofusion.analysis.tracks import FaceTracks
from emofusion.data import default_data_root
from emofusion.errors import InvalidOptions
from emofusion.features import align_face
from emofusion.media.faces import FaceDetector
from emofusion.media.scenes import background, detectable_faces, make_people_clip, place_face
from emofusion.media.synth import make_clip
from emofusion.options import MAX_FACES, AnalysisOptions

FER_VAL = default_data_root() / "fer2013" / "val"
needs_fer = pytest.mark.skipif(not FER_VAL.is_dir(), reason="FER-2013 not under ../shared/data")


@pytest.fixture(scope="module")
def faces() -> list[np.ndarray]:
    if not FER_VAL.is_dir():
        pytest.skip("FER-2013 not under ../shared/data")
    return detectable_faces(sorted(FER_VAL.glob("*/*.jpg")), 24)


@pytest.fixture(scope="module")
def analyzer() -> Analyzer:
    return Analyzer("default", transcribe="off", calibrate="off")


def column(box: list[int], width: int = 640, columns: int = 3) -> int:
    return int((box[0] + box[2] / 2) // (width / columns))


# ------------------------------------------------------------------------------ detection


@needs_fer
def test_yunet_finds_real_faces_at_known_boxes(faces):
    """Frames of 1-3 real faces (96-160 px) over varied backdrops: YuNet finds nearly all of them
    where they are, with no false positives, and more than the Haar cascade does."""
    rng = np.random.default_rng(0)
    frames = []
    for k in range(16):
        frame = background(("flat", "gradient", "texture", "clutter")[k % 4], 360, 640, rng)
        count = 1 + k % 3
        truth = [place_face(frame, faces[(3 * k + j) % len(faces)], ((j + 0.5) * 640 / count, 180),
                            int(rng.integers(96, 161))) for j in range(count)]
        frames.append((frame, truth))

    def score(detector: FaceDetector) -> tuple[float, int]:
        hits = false = 0
        for frame, truth in frames:
            found = detector.detect(frame, max_side=640)
            matched = set()
            for tx, ty, ts, _ in truth:
                for i, f in enumerate(found):
                    x, y, w, h = f.box
                    if i not in matched and abs(x + w / 2 - tx - ts / 2) <= 0.3 * ts and abs(y + h / 2 - ty - ts / 2) <= 0.3 * ts:
                        matched.add(i)
                        hits += 1
                        break
            false += len(found) - len(matched)
        return hits / sum(len(t) for _, t in frames), false

    yunet, haar = score(FaceDetector("yunet")), score(FaceDetector("haar"))
    assert yunet[0] >= 0.8 and yunet[1] <= 1, yunet
    assert yunet[0] > haar[0], (yunet, haar)


# ------------------------------------------------------------------------------ tracks


@needs_fer
def test_tracks_keep_identities_when_two_faces_cross(faces):
    """Two people walk past each other (one in front of the other at the crossing), sampled at
    2 frames per second: each keeps the track id it started with, on its own side afterwards."""
    detector, tracks = FaceDetector(), FaceTracks()
    a, b = faces[0], faces[5]
    first: dict[int, float] = {}
    last: dict[int, float] = {}
    for k in range(17):  # 8 s at 2 fps
        t = k / 2
        frame = background("gradient", 360, 640, np.random.default_rng(1))
        xa, xb = 100 + 55 * t, 540 - 55 * t  # they cross at t = 4 s
        place_face(frame, b, (xb, 185), 120)
        place_face(frame, a, (xa, 175), 120)  # a walks in front
        found = detector.detect(frame, max_side=640)
        crops = [align_face(frame, f.box, f.landmarks) for f in found]
        for face, track in zip(found, tracks.update(t, found, crops)):
            x = face.box[0] + face.box[2] / 2
            first.setdefault(track, x)
            last[track] = x
    long_tracks = [k for k in first if abs(last[k] - first[k]) > 300]
    assert len(long_tracks) == 2, (first, last)
    starts_left = min(long_tracks, key=lambda k: first[k])
    starts_right = max(long_tracks, key=lambda k: first[k])
    assert last[starts_left] > 450 and last[starts_right] < 190  # each ended on the other side, not swapped


def test_a_track_survives_short_misses_and_ends_after_long_ones():
    from emofusion.media.faces import Face

    tracks = FaceTracks(max_gap=2.0)
    crop = np.tile(np.arange(48, dtype=np.uint8) * 5, (48, 1))
    face = Face((100, 100, 80, 100), 0.9)
    (first,) = tracks.update(0.0, [face], [crop])
    assert tracks.update(1.5, [face], [crop]) == [first]  # missed at 0.5 and 1.0 s
    assert tracks.update(4.0, [face], [crop]) != [first]  # unseen for 2.5 s: a new track


# ------------------------------------------------------------------------------ people and speakers


@needs_fer
@pytest.mark.parametrize("speaker", [1, None])
def test_people_and_who_is_speaking(tmp_path, faces, analyzer, speaker):
    """Three real faces side by side; one (or nobody, the voice off-screen) moves the mouth with
    the speech. Each person is listed once with a timeline; the voiced windows name the speaker."""
    clip = make_people_clip(tmp_path / "people.mp4", [faces[1], faces[2], faces[3]], speaker=speaker, duration=8.0,
                            face_size=150)
    d = analyzer.analyze(clip).to_dict()
    assert_contract_v1(d)
    assert len(d["people"]) == 3 and sorted(column(p["box"]) for p in d["people"]) == [0, 1, 2]
    for p in d["people"]:
        assert p["frames"] == 16 and p["first_seen"] == 0.0 and p["last_seen"] == 8.0
        assert len(p["windows"]) == 7 and p["thumbnail"]
    assert d["media"]["people"]["speaker_attribution"] == {"used": True, "reason": None}
    voiced = [s for s in d["segments"] if s["voice"] is not None]
    assert len(voiced) >= 6
    expected = next((p["id"] for p in d["people"] if column(p["box"]) == speaker), OFF_SCREEN)
    right = sum(s["speaker"] == expected for s in voiced)
    assert right >= len(voiced) - 1, [s["speaker"] for s in voiced]
    for p in d["people"]:
        for w, s in zip(p["windows"], d["segments"]):
            assert w["speaking"] == (s["speaker"] == p["id"])
            face_only = w["face"]["probs"]
            if w["speaking"]:  # the speaker's fused reading takes the voice in; the others' is their face
                assert w["fused"]["probs"] != face_only
            else:
                assert w["fused"]["probs"] == pytest.approx(face_only, abs=1e-5)
    # the window's main face is the largest one, as before people were tracked
    largest = max(d["people"], key=lambda p: p["box"][2] * p["box"][3])
    assert d["segments"][3]["face"]["faces"] == 3
    assert column(d["segments"][3]["face"]["box"]) == column(largest["box"])


@needs_fer
def test_largest_keeps_one_face_and_haar_tells_no_speaker(tmp_path, faces):
    clip = make_people_clip(tmp_path / "people.mp4", [faces[1], faces[2]], speaker=0, duration=4.0)
    largest = Analyzer("default", transcribe="off", calibrate="off", faces="largest").analyze(clip).to_dict()
    assert len(largest["people"]) == 1 and largest["media"]["people"]["max_faces"] == 1
    haar = Analyzer("default", transcribe="off", calibrate="off", face_detector="haar").analyze(clip).to_dict()
    assert_contract_v1(haar)
    assert all(s["speaker"] is None for s in haar["segments"])
    assert haar["media"]["people"]["speaker_attribution"]["used"] is False
    assert "landmarks" in haar["media"]["people"]["speaker_attribution"]["reason"]


# ------------------------------------------------------------------------------ hostile input


@needs_fer
def test_a_crowd_is_bounded(tmp_path, faces):
    """20 faces in every frame: at most max_faces are read and listed; all are counted."""
    frames = np.empty((8, 360, 640, 3), np.uint8)
    canvas = background("flat", 360, 640, np.random.default_rng(2))
    for k in range(20):
        place_face(canvas, faces[k % len(faces)], ((k % 5 + 0.5) * 128, (k // 5 + 0.5) * 90), 80)
    frames[:] = canvas[:, :, None]
    clip = make_clip(tmp_path / "crowd.mp4", duration=2.0, width=640, height=360, fps=4, frames=frames, with_audio=False)
    d = Analyzer("default", transcribe="off", max_faces=4).analyze(clip).to_dict()
    assert_contract_v1(d)
    assert 1 <= len(d["people"]) <= 4
    assert d["segments"][0]["face"]["faces"] >= 10  # counted, not read


@needs_fer
def test_a_face_in_every_other_frame_stays_one_person(tmp_path, faces):
    frames = np.empty((16, 240, 320, 3), np.uint8)
    for i in range(16):
        canvas = background("gradient", 240, 320, np.random.default_rng(3))
        if (i // 2) % 2 == 0:  # on for 0.5 s, off for 0.5 s (4 fps): every other sampled frame
            place_face(canvas, faces[4], (160, 120), 120)
        frames[i] = canvas[:, :, None]
    clip = make_clip(tmp_path / "blink.mp4", duration=4.0, width=320, height=240, fps=4, frames=frames, with_audio=False)
    d = Analyzer("default", transcribe="off").analyze(clip).to_dict()
    assert [p["id"] for p in d["people"]] == ["p1"] and d["people"][0]["frames"] == 4


def test_no_faces_no_people(tmp_path, analyzer):
    clip = make_clip(tmp_path / "empty.mp4", duration=3.0, width=320, height=240, modulate=True)
    d = analyzer.analyze(clip).to_dict()
    assert d["people"] == [] and all(s["face"] is None for s in d["segments"])
    # speech but no face on screen: the voice is off-screen
    assert {s["speaker"] for s in d["segments"] if s["voice"] is not None} <= {OFF_SCREEN}
    audio_only = analyzer.analyze(make_clip(tmp_path / "a.wav", container="wav", duration=3.0, modulate=True)).to_dict()
    assert audio_only["people"] == [] and all(s["speaker"] is None for s in audio_only["segments"])
    assert audio_only["media"]["people"]["speaker_attribution"] == {"used": False, "reason": "the input has no video"}


def test_face_options_are_checked():
    for bad in ({"faces": "some"}, {"max_faces": 0}, {"max_faces": MAX_FACES + 1}, {"max_faces": 2.5},
                {"face_detector": "mtcnn"}):
        with pytest.raises(InvalidOptions, match=next(iter(bad))):
            AnalysisOptions(**bad)
    assert AnalysisOptions(faces="largest").faces_per_frame == 1
    assert AnalysisOptions.from_mapping(json.dumps({"max_faces": 3})).max_faces == 3


@needs_fer
def test_faces_at_the_edge_of_a_turned_phone_video(tmp_path, faces, analyzer):
    """A phone video stored sideways (rotation 90) with one face cut by the frame's edge and one
    in the middle: both are found upright, their boxes inside the displayed (portrait) frame."""
    frames = np.empty((8, 240, 320, 3), np.uint8)
    for i in range(8):
        canvas = background("gradient", 240, 320, np.random.default_rng(4))
        # stored turned a quarter counter-clockwise: the player turns it back clockwise
        place_face(canvas, faces[6], (120, 200), 110, angle=90)
        place_face(canvas, faces[7], (270, 10), 90, angle=90)  # partly above the stored frame's top
        frames[i] = canvas[:, :, None]
    clip = make_clip(tmp_path / "phone.mp4", duration=2.0, width=320, height=240, fps=4, frames=frames,
                     rotation=90, with_audio=False)
    d = analyzer.analyze(clip).to_dict()
    assert (d["media"]["width"], d["media"]["height"]) == (240, 320)
    assert len(d["people"]) == 2
    for p in d["people"]:
        x, y, w, h = p["box"]
        assert 0 <= x and 0 <= y and x + w <= 240 and y + h <= 320 and h > w * 0.9  # upright, inside


@needs_fer
def test_a_short_clip_lists_the_face_it_saw_once(tmp_path, faces):
    frames = np.empty((2, 240, 320, 3), np.uint8)
    canvas = background("gradient", 240, 320, np.random.default_rng(5))
    place_face(canvas, faces[0], (160, 120), 120)
    frames[:] = canvas[:, :, None]
    clip = make_clip(tmp_path / "short.mp4", duration=0.5, width=320, height=240, fps=4, frames=frames, with_audio=False)
    d = Analyzer("default", transcribe="off").analyze(clip).to_dict()
    assert [(p["id"], p["frames"]) for p in d["people"]] == [("p1", 1)]


def test_who_speaks_rule():
    """The loudest-moving visible mouth speaks if it moved enough; all mouths measured and still
    (or nobody visible): off-screen; a visible mouth not measured (a moving head): not told."""
    from emofusion.analysis.face import PersonFace
    from emofusion.analysis.people import SPEAKING_MOTION, speaker_of
    from emofusion.analysis.results import FaceResult

    def person(mouth):
        return PersonFace(FaceResult(["a", "b"], np.array([0.5, 0.5])), mouth)

    moving = 2 * SPEAKING_MOTION
    assert speaker_of({1: person(0.0), 2: person(moving)}, voiced=True) == "p2"
    assert speaker_of({1: person(0.0), 2: person(moving)}, voiced=False) is None
    assert speaker_of({1: person(0.0), 2: person(0.001)}, voiced=True) == OFF_SCREEN
    assert speaker_of({}, voiced=True) == OFF_SCREEN
    assert speaker_of({1: person(0.0), 2: person(None)}, voiced=True) is None  # p2's head moved: cannot tell
    assert speaker_of({1: person(moving), 2: person(None)}, voiced=True) == "p1"


@needs_fer
def test_moving_heads_are_not_taken_for_speakers(tmp_path, faces, analyzer):
    """Heads drifting more than MAX_HEAD_SHIFT between sampled frames: their mouths are not
    measured, and the speaker is left untold (null) rather than guessed."""
    positions = [(lambda t, k=k: (80 + 180 * k + 35 * t, 180)) for k in range(3)]  # 17.5 px per sampled frame
    clip = make_people_clip(tmp_path / "moving.mp4", [faces[1], faces[2], faces[3]], speaker=None, duration=4.0,
                            face_size=130, positions=positions)
    d = analyzer.analyze(clip).to_dict()
    assert len(d["people"]) == 3
    assert all(w["mouth_motion"] is None for p in d["people"] for w in p["windows"])
    voiced = [s["speaker"] for s in d["segments"] if s["voice"] is not None]
    assert voiced and voiced == [None] * len(voiced)
