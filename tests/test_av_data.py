"""Real dataset layouts in multimodal training: RAVDESS audio-visual files, CREMA-D video + .wav,
MELD clips with a split-based validation (tiny generated layouts)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from emofusion.data import DatasetLayoutError, get_dataset
from emofusion.data.av import multimodal_items
from emofusion.train.multimodal import MultimodalTask
from emofusion.train.recipe import Recipe
from media_factory import make_clip as _make_clip
from support import MeldRow, ravdess_path, write_meld_csv

CLIP = dict(duration=0.5, width=32, height=32, fps=8, sample_rate=16000)


def make_clip(path: Path, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return _make_clip(path, **kw)


def _model(modalities=("video", "audio")) -> dict:
    encoders = {"video": {"type": "r3d18", "config": {"width": 4}, "proj_dim": 8},
                "audio": {"type": "mel_cnn", "config": {"channels": [4], "dim": 8}}}
    return {"labels": ["neutral", "happy", "sad", "angry"], "modalities": list(modalities),
            "preprocess": {"frames": 2, "size": 16, "audio_seconds": 0.5}, "encoders": encoders,
            "fusion": {"type": "concat", "dim": 8}, "heads": {"emotion": 4, "sentiment": 3}}


def _task(tmp_path: Path, data: dict, modalities=("video", "audio")) -> MultimodalTask:
    recipe = Recipe(name="av", task="multimodal", data=data, model=_model(modalities))
    return MultimodalTask(recipe, tmp_path / "cache")


def _energy(audio: np.ndarray) -> np.ndarray:
    return np.abs(audio.astype(np.float32)).mean(axis=1)


# ---------------------------------------------------------------------------------------
# RAVDESS: the audio-visual (01) files only


@pytest.fixture(scope="module")
def ravdess(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ravdess")
    for actor in (1, 2):
        for emotion in ("03", "04"):  # happy, sad
            make_clip(ravdess_path(root, actor, emotion, modality="01"), **CLIP)  # audio-visual: picture + sound
            make_clip(ravdess_path(root, actor, emotion, modality="02"), with_audio=False, **CLIP)  # video-only
            make_clip(ravdess_path(root, actor, emotion, modality="03"), container="wav", **CLIP)  # audio-only
    make_clip(root / "Actor_01" / "03-01-05-01-01-01-01.wav", container="wav", **CLIP)  # angry, audio only
    return root


def test_ravdess_audio_visual_items(ravdess):
    scan = get_dataset("ravdess").scan(ravdess, "all")
    av = multimodal_items("ravdess", scan, video=True, audio=True)
    assert [i.path.name[:2] for i in av.items] == ["01"] * 4
    assert av.skipped["RAVDESS video-only file (02-*): no audio"] == 4
    assert av.skipped["RAVDESS audio-only file (03-*): no video"] == 5
    # an audio-only model takes each performance once: its audio-visual file where there is one
    audio = multimodal_items("ravdess", scan, video=False, audio=True)
    assert sorted(i.path.name for i in audio.items) == sorted(
        [i.path.name for i in av.items] + ["03-01-05-01-01-01-01.wav"])
    assert audio.skipped["RAVDESS second file of a performance (the audio-visual one is used)"] == 4


def test_ravdess_multimodal_task(tmp_path, ravdess):
    task = _task(tmp_path, {"sources": [{"dataset": "ravdess", "root": str(ravdess)}], "val_speakers": ["ravdess_02"]})
    assert len(task.train_y) == len(task.val_y) == 2
    assert task.data_summary()["skipped"]["RAVDESS video-only file (02-*): no audio"] == 4
    for data in (task.train_data, task.val_data):
        assert data["frames"].reshape(2, -1).max(axis=1).min() > 0  # every item has its picture
        assert _energy(data["audio"]).min() > 100  # and its sound (a 0.5-amplitude tone)


def test_ravdess_without_audio_visual_files(tmp_path):
    make_clip(tmp_path / "Actor_01" / "03-01-03-01-01-01-01.wav", container="wav", **CLIP)
    make_clip(tmp_path / "Actor_01" / "02-01-03-01-01-01-01.mp4", with_audio=False, **CLIP)
    scan = get_dataset("ravdess").scan(tmp_path, "all")
    with pytest.raises(DatasetLayoutError, match=r"no items can feed this model's video \+ audio.*01-VC-EE-II-SS-RR-AA\.mp4"):
        multimodal_items("ravdess", scan, video=True, audio=True)
    with pytest.raises(DatasetLayoutError, match="audio-visual files"):
        _task(tmp_path, {"sources": [{"dataset": "ravdess", "root": str(tmp_path)}], "val_speakers": ["ravdess_01"]})


# ---------------------------------------------------------------------------------------
# CREMA-D: frames from the video, sound from the .wav


@pytest.fixture(scope="module")
def cremad(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cremad")
    for actor, code in (("1001", "HAP"), ("1001", "SAD"), ("1002", "HAP"), ("1002", "ANG")):
        name = f"{actor}_DFA_{code}_XX"
        make_clip(root / "AudioWAV" / f"{name}.wav", container="wav", **CLIP)  # the sound: a tone
        if code != "ANG":  # 1002_DFA_ANG_XX has no video
            # CREMA-D's own format (FLV1 + MP3), silent here: audio read from it would be zeros
            make_clip(root / "VideoFlash" / f"{name}.flv", container="flv", video_codec="flv",
                      audio_codec="libmp3lame", silent=True, **{**CLIP, "sample_rate": 22050})
    return root


def test_cremad_multimodal_task_reads_video_and_wav(tmp_path, cremad):
    task = _task(tmp_path, {"sources": [{"dataset": "cremad", "root": str(cremad)}], "val_speakers": ["cremad_1002"]})
    assert len(task.train_y) == 2 and len(task.val_y) == 1
    assert task.data_summary()["skipped"] == {"CREMA-D clip without its video (VideoFlash/<name>.flv)": 1}
    for data in (task.train_data, task.val_data):
        assert data["frames"].reshape(len(data["frames"]), -1).max(axis=1).min() > 0
        assert _energy(data["audio"]).min() > 100  # the .wav's tone, not the video's silence
    av = multimodal_items("cremad", get_dataset("cremad").scan(cremad, "all"), video=True, audio=True)
    assert all(i.path.suffix == ".flv" and i.meta["audio_path"].suffix == ".wav" for i in av.items)
    assert all(i.path.stem == i.meta["audio_path"].stem for i in av.items)


def test_cremad_audio_only_model_keeps_every_wav(tmp_path, cremad):
    av = multimodal_items("cremad", get_dataset("cremad").scan(cremad, "all"), video=False, audio=True)
    assert len(av.items) == 4 and all(i.path.suffix == ".wav" for i in av.items)


def test_cremad_without_videos(tmp_path):
    make_clip(tmp_path / "AudioWAV" / "1001_DFA_HAP_XX.wav", container="wav", **CLIP)
    with pytest.raises(DatasetLayoutError, match=r"VideoFlash/1001_DFA_ANG_XX\.flv"):
        _task(tmp_path, {"sources": [{"dataset": "cremad", "root": str(tmp_path)}], "val_speakers": ["cremad_1001"]})


# ---------------------------------------------------------------------------------------
# MELD: the utterance clips, validated on the dev split


def _meld_csv(path: Path, rows: list[MeldRow]) -> None:
    """A MELD csv of `rows`, from season 8 episode 21."""
    write_meld_csv(path, rows, season=8, episode=21)


@pytest.fixture(scope="module")
def meld(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("meld")
    _meld_csv(root / "train_sent_emo.csv", [("Hi there", "Ross", "joy", "positive", 0, 0),
                                            ("Go away", "Monica", "anger", "negative", 0, 1),
                                            ("No clip for me", "Ross", "sadness", "negative", 1, 0)])
    _meld_csv(root / "dev_sent_emo.csv", [("Oh no", "Ross", "sadness", "negative", 0, 0)])
    for folder, name in (("train_splits", "dia0_utt0"), ("train_splits", "dia0_utt1"), ("dev_splits_complete", "dia0_utt0")):
        make_clip(root / folder / f"{name}.mp4", **CLIP)
    return root


def test_meld_clips_train_on_train_validate_on_dev(tmp_path, meld):
    task = _task(tmp_path, {"sources": [{"dataset": "meld", "root": str(meld), "split": "train", "val_split": "dev"}]})
    assert len(task.train_y) == 2 and len(task.val_y) == 1  # the row without a clip is left out
    assert task.data_summary()["skipped"] == {"MELD row without its clip": 1}
    assert task.train_data["texts"] == ["Hi there", "Go away"] and task.val_data["texts"] == ["Oh no"]
    assert list(task.train_s) == [2, 0] and list(task.val_s) == [0]  # positive, negative
    assert task.val_speakers == ["Ross"] and "Ross" in task.train_speakers  # by split, not by speaker
    for data in (task.train_data, task.val_data):
        assert data["frames"].reshape(len(data["frames"]), -1).max(axis=1).min() > 0
        assert _energy(data["audio"]).min() > 100


def test_meld_text_only_keeps_rows_without_clips(meld):
    scan = get_dataset("meld").scan(meld, "train")
    assert len(multimodal_items("meld", scan, video=False, audio=False).items) == 3
    assert len(multimodal_items("meld", scan, video=False, audio=True).items) == 2


def test_meld_layout_errors(tmp_path, meld):
    with pytest.raises(DatasetLayoutError, match=r'has splits \[.train., .dev.\].*val_split = "dev"'):
        _task(tmp_path, {"sources": [{"dataset": "meld", "root": str(meld)}], "val_speakers": ["Ross"]})
    with pytest.raises(ValueError, match="val_speakers .* every source here validates on its own val_split"):
        _task(tmp_path, {"sources": [{"dataset": "meld", "root": str(meld), "split": "train", "val_split": "dev"}],
                         "val_speakers": ["Ross"]})
    bare = tmp_path / "bare"
    bare.mkdir()
    _meld_csv(bare / "train_sent_emo.csv", [("Hi", "Ross", "joy", "positive", 0, 0)])
    _meld_csv(bare / "dev_sent_emo.csv", [("Hi", "Ross", "joy", "positive", 0, 0)])
    with pytest.raises(DatasetLayoutError, match=r"<split>_splits/dia\{D\}_utt\{U\}\.mp4"):
        _task(tmp_path, {"sources": [{"dataset": "meld", "root": str(bare), "split": "train", "val_split": "dev"}]})


def test_face_and_audio_only_datasets_are_refused(tmp_path):
    from emofusion.data import DatasetScan

    with pytest.raises(DatasetLayoutError, match="face images"):
        multimodal_items("fer2013", DatasetScan(root=tmp_path, items=[]), video=True, audio=True)
    with pytest.raises(DatasetLayoutError, match="EmoDB has audio only"):
        multimodal_items("emodb", DatasetScan(root=tmp_path, items=[]), video=True, audio=True)
