import json
from pathlib import Path

import numpy as np
import pytest

from emofusion.data import (
    DATASETS,
    DatasetLayoutError,
    Item,
    default_data_root,
    get_dataset,
    leave_one_speaker_out,
    scan_cremad,
    scan_emodb,
    scan_imagefolder,
    scan_manifest,
    scan_meld,
    scan_ravdess,
    speaker_folds,
    split_by_speakers,
)
from emofusion.data.meld import clean_text, decode_bytes, parse_timestamp

# ---------------------------------------------------------------------------------------
# helpers


def wav(path: Path) -> Path:
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.zeros(160, dtype=np.float32), 16000)
    return path


def image(path: Path) -> Path:
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.full((8, 8), 128, dtype=np.uint8))
    return path


def touch(path: Path, data: bytes = b"") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def data_root() -> Path:
    return default_data_root()


# ---------------------------------------------------------------------------------------
# image folders (faces.py, through the registry)


def test_imagefolder_contempt_skipped(tmp_path):
    image(tmp_path / "train" / "happy" / "1.png")
    image(tmp_path / "train" / "fear" / "2.jpg")
    image(tmp_path / "train" / "contempt" / "3.png")  # CK+: no target
    touch(tmp_path / "train" / "happy" / "notes.txt")
    image(tmp_path / "val" / "surprise" / "4.png")
    spec = get_dataset("imagefolder")
    assert spec.modality == "face"
    assert spec.splits(tmp_path) == ["train", "val"]
    scan = spec.scan(tmp_path, "train")
    assert sorted(scan.label_counts().items()) == [("fearful", 1), ("happy", 1)]
    assert scan.skipped == {"label 'contempt' has no target": 1, "not an image (.txt)": 1}
    assert get_dataset("fer2013").scan(tmp_path, "val").label_counts() == {"surprised": 1}
    with pytest.raises(DatasetLayoutError, match="<root>/<split>/<label>"):
        scan_imagefolder(tmp_path, "test")


# ---------------------------------------------------------------------------------------
# RAVDESS


def test_ravdess(tmp_path):
    wav(tmp_path / "Actor_02" / "03-01-02-02-01-02-02.wav")  # calm, strong, actor 2
    wav(tmp_path / "Actor_01" / "03-01-05-01-02-01-01.wav")  # angry, normal, actor 1
    wav(tmp_path / "Actor_01" / "03-02-03-01-01-01-01.wav")  # song
    touch(tmp_path / "Actor_01" / "01-01-08-02-01-01-01.mp4")  # audio-visual
    touch(tmp_path / "Actor_01" / "02-01-04-01-01-01-01.mp4")  # video-only
    wav(tmp_path / "Actor_01" / "03-01-09-01-01-01-01.wav")  # no emotion 09
    wav(tmp_path / "Actor_01" / "take2.wav")
    touch(tmp_path / "Actor_01" / "._03-01-05-01-02-01-01.wav")  # macOS resource fork
    touch(tmp_path / "readme.txt")
    scan = get_dataset("ravdess").scan(tmp_path, "all")
    assert [i.path.name for i in scan.items] == [
        "01-01-08-02-01-01-01.mp4",
        "02-01-04-01-01-01-01.mp4",
        "03-01-05-01-02-01-01.wav",
        "03-02-03-01-01-01-01.wav",
        "03-01-02-02-01-02-02.wav",
    ]
    assert [i.label for i in scan.items] == ["surprised", "sad", "angry", "happy", "neutral"]
    assert [i.speaker for i in scan.items] == ["ravdess_01"] * 4 + ["ravdess_02"]
    calm = scan.items[-1]
    assert calm.meta == {
        "modality": "audio-only",
        "vocal_channel": "speech",
        "intensity": "strong",
        "statement": 1,
        "statement_text": "Kids are talking by the door",
        "repetition": 2,
        "actor": 2,
        "sex": "female",
        "original_label": "calm",
    }
    assert scan.items[0].meta["modality"] == "audio-visual" and scan.items[0].meta["sex"] == "male"
    assert scan.items[1].meta["modality"] == "video-only"
    assert scan.items[3].meta["vocal_channel"] == "song"
    assert scan.skipped == {
        "unknown emotion code '09'": 1,
        "name not MM-VC-EE-II-SS-RR-AA": 1,
        "hidden file": 1,
        "not a .wav/.mp4 file (.txt)": 1,
    }
    with pytest.raises(ValueError, match="one split"):
        get_dataset("ravdess").scan(tmp_path, "train")


def test_ravdess_errors(tmp_path):
    with pytest.raises(DatasetLayoutError, match="Actor_XX/MM-VC-EE-II-SS-RR-AA"):
        scan_ravdess(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetLayoutError, match="expected <root>/Actor_XX"):
        scan_ravdess(tmp_path / "empty")
    wav(tmp_path / "wrong" / "clip.wav")
    with pytest.raises(DatasetLayoutError, match="name not MM-VC"):
        scan_ravdess(tmp_path / "wrong")


# ---------------------------------------------------------------------------------------
# EmoDB


@pytest.mark.parametrize("sub", ["wav", ""])
def test_emodb(tmp_path, sub):
    folder = tmp_path / sub if sub else tmp_path
    wav(folder / "03a01Fa.wav")
    wav(folder / "03a01Lb.wav")  # boredom: no target
    wav(folder / "08b02Wc.wav")
    wav(folder / "16a05Tb.wav")
    wav(folder / "03a01Xa.wav")  # no such code
    wav(folder / "silence.wav")
    scan = get_dataset("emodb").scan(tmp_path, "all")
    assert [(i.speaker, i.label) for i in scan.items] == [
        ("emodb_03", "happy"),
        ("emodb_08", "angry"),
        ("emodb_16", "sad"),
    ]
    assert scan.items[1].meta == {"text_code": "b02", "version": "c", "sex": "female", "original_label": "W"}
    assert scan.skipped == {
        "label 'L' (boredom) has no target": 1,
        "unknown emotion code 'X'": 1,
        "name not like 03a01Fa.wav": 1,
    }


def test_emodb_errors(tmp_path):
    (tmp_path / "wav").mkdir()
    with pytest.raises(DatasetLayoutError, match=r"<root>/wav/\*\.wav"):
        scan_emodb(tmp_path)
    wav(tmp_path / "wav" / "03a01La.wav")  # only boredom: nothing usable, still an error
    with pytest.raises(DatasetLayoutError, match="boredom"):
        scan_emodb(tmp_path)


# ---------------------------------------------------------------------------------------
# CREMA-D


def test_cremad(tmp_path):
    wav(tmp_path / "AudioWAV" / "1001_DFA_ANG_XX.wav")
    wav(tmp_path / "AudioWAV" / "1002_IEO_HAP_HI.wav")
    wav(tmp_path / "AudioWAV" / "1001_DFA_XYZ_XX.wav")
    wav(tmp_path / "AudioWAV" / "1001_DFA.wav")
    touch(tmp_path / "VideoFlash" / "1001_DFA_ANG_XX.flv")
    scan = get_dataset("crema-d").scan(tmp_path, "all")
    assert [(i.speaker, i.label, i.meta["intensity"]) for i in scan.items] == [
        ("cremad_1001", "angry", "XX"),
        ("cremad_1002", "happy", "HI"),
    ]
    assert scan.items[0].meta["video"] == tmp_path / "VideoFlash" / "1001_DFA_ANG_XX.flv"
    assert scan.items[0].meta["sentence"] == "DFA"
    assert "video" not in scan.items[1].meta
    assert scan.skipped == {"unknown emotion code 'XYZ'": 1, "name not like 1001_DFA_ANG_XX.wav": 1}


def test_cremad_flat_and_errors(tmp_path):
    wav(tmp_path / "flat" / "1091_TIE_SAD_LO.wav")
    assert scan_cremad(tmp_path / "flat").items[0].label == "sad"
    (tmp_path / "none").mkdir()
    with pytest.raises(DatasetLayoutError, match="AudioWAV/1001_DFA_ANG_XX.wav"):
        scan_cremad(tmp_path / "none")


# ---------------------------------------------------------------------------------------
# MELD

MELD_HEADER = (
    b"Sr No.,Utterance,Speaker,Emotion,Sentiment,Dialogue_ID,Utterance_ID,Season,Episode,StartTime,EndTime\r\n"
)


def meld_row(no, utt: bytes, speaker: bytes, emo, sent, d, u, start=b"00:16:16,059", end=b"00:16:21,731"):
    cells = [str(no).encode(), b'"' + utt + b'"', speaker, emo, sent, str(d).encode(), str(u).encode()]
    cells += [b"8", b"21", b'"' + start + b'"', b'"' + end + b'"']
    return b",".join(cells) + b"\r\n"


def test_meld(tmp_path):
    rows = [
        meld_row(1, b"You must\x92ve had your hands full.", b"Chandler", b"neutral", b"neutral", 0, 0),  # cp1252
        meld_row(2, "That\u2019s it, \u201cgreat\u201d\u2026".encode(), b"Monica", b"joy", b"positive", 0, 1),
        meld_row(3, "It\u00e2\u20ac\u2122s mojibake".encode(), b"Ross", b"anger", b"negative", 0, 2),  # cp1252-style
        meld_row(4, "It\u00e2\x80\x99s latin-1 mojibake".encode(), b"Ross", b"sadness", b"negative", 1, 0),
        meld_row(5, "Caf\u00e9 ol\u00e9".encode(), b"Phoebe", b"surprise", b"positive", 1, 1, b"01:02:03,5", b"bad"),
        meld_row(6, b"Nope", b"Joey", b"sarcasm", b"negative", 1, 2),  # unknown label
        meld_row(7, b"x", b"Joey", b"fear", b"negative", b"?", 3),  # bad id
        meld_row(8, b"Multi\nline", b"Richard\x92s Date", b"disgust", b"negative", 2, 0),
    ]
    touch(tmp_path / "train_sent_emo.csv", MELD_HEADER + b"".join(rows))
    touch(tmp_path / "dev_sent_emo.csv", MELD_HEADER + meld_row(1, b"Hi", b"Rachel", b"fear", b"negative", 0, 1))
    touch(tmp_path / "dev_splits" / "dia0_utt1.mp4")
    spec = get_dataset("meld")
    assert spec.modality == "text"
    assert spec.splits(tmp_path) == ["train", "dev"]
    scan = spec.scan(tmp_path, "train")
    assert [i.text for i in scan.items] == [
        "You must've had your hands full.",
        "That's it, \"great\"...",
        "It's mojibake",
        "It's latin-1 mojibake",
        "Caf\u00e9 ol\u00e9",
        "Multi line",
    ]
    assert [i.label for i in scan.items] == ["neutral", "happy", "angry", "sad", "surprised", "disgust"]
    assert [i.sentiment for i in scan.items] == ["neutral", "positive", "negative", "negative", "positive", "negative"]
    assert [i.speaker for i in scan.items][-1] == "Richard's Date"
    assert [(i.meta["dialogue_id"], i.meta["utterance_id"]) for i in scan.items] == [
        (0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (2, 0)
    ]
    first = scan.items[0]
    assert first.path is None and first.start is None
    assert first.meta["start"] == pytest.approx(16 * 60 + 16.059)
    assert first.meta["end"] == pytest.approx(16 * 60 + 21.731)
    assert first.meta["season"] == 8 and first.meta["episode"] == 21 and first.meta["original_label"] == "neutral"
    assert scan.items[4].meta["start"] == pytest.approx(3723.5) and scan.items[4].meta["end"] is None
    assert scan.skipped == {"unknown label 'sarcasm'": 1, "row without dialogue/utterance id": 1}
    dev = scan_meld(tmp_path, "val")
    assert dev.items[0].path == tmp_path / "dev_splits" / "dia0_utt1.mp4"
    assert dev.items[0].label == "fearful"
    with pytest.raises(DatasetLayoutError, match=r"\{train,dev,test\}_sent_emo.csv"):
        scan_meld(tmp_path, "test")
    with pytest.raises(ValueError, match="unknown MELD split"):
        scan_meld(tmp_path, "holdout")


def test_meld_whole_file_cp1252(tmp_path):
    row = meld_row(1, "Caf\u00e9 \u2018ok\u2019".encode("cp1252"), b"Joey", b"joy", b"positive", 0, 0)
    touch(tmp_path / "train_sent_emo.csv", MELD_HEADER + row)
    touch(tmp_path / "train" / "dia0_utt0.mp4")
    item = scan_meld(tmp_path, "train").items[0]
    assert item.text == "Caf\u00e9 'ok'"
    assert item.path == tmp_path / "train" / "dia0_utt0.mp4"


def test_meld_errors(tmp_path):
    with pytest.raises(DatasetLayoutError, match="_sent_emo.csv"):
        scan_meld(tmp_path / "nowhere", "train")
    touch(tmp_path / "train_sent_emo.csv", b"a,b\r\n1,2\r\n")
    with pytest.raises(DatasetLayoutError, match="lacks columns"):
        scan_meld(tmp_path, "train")


def test_text_helpers():
    assert decode_bytes(b"\xef\xbb\xbfa\x92b \xe2\x80\x99") == "a\u2019b \u2019"
    assert clean_text("Don\u00e2\u20ac\u2122t \u00c3\u00a9t\u00c3\u00a9") == "Don't \u00e9t\u00e9"
    assert clean_text("Nestl\u00e9 \u00e0 la carte") == "Nestl\u00e9 \u00e0 la carte"  # real accents untouched
    assert parse_timestamp("0:00:01.25") == pytest.approx(1.25)
    assert parse_timestamp("") is None


# ---------------------------------------------------------------------------------------
# manifests


def test_manifest_csv(tmp_path):
    wav(tmp_path / "clips" / "a.wav")
    absolute = wav(tmp_path / "elsewhere" / "b.wav")
    lines = [
        "path,label,start,end,text,speaker,sentiment,session",
        "clips/a.wav,calm,0.5,2.0,hello there,spk1,positive,s1",
        f"{absolute},Anger,,,,spk2,,s2",
        "clips/a.wav,sarcastic,,,,,,",
        "clips/a.wav,boredom,,,,,,",
        ",happy,,,,,,",
        "clips/a.wav,,,,,,,",
        "clips/a.wav,happy,soon,,,,,",
        "clips/a.wav,happy,3,1,,,,",
        "clips/missing.wav,happy,,,,,,",
        "clips/a.wav,happy,,,,,meh,",
        "",
    ]
    manifest = touch(tmp_path / "m.csv", "\n".join(lines).encode())
    scan = get_dataset("manifest").scan(manifest, "all")
    assert len(scan.items) == 2
    a, b = scan.items
    assert a.path == tmp_path / "clips" / "a.wav"
    assert (a.label, a.start, a.end, a.text) == ("neutral", 0.5, 2.0, "hello there")
    assert (a.speaker, a.sentiment) == ("spk1", "positive")
    assert a.meta == {"session": "s1", "original_label": "calm"}
    assert (b.path, b.label, b.start, b.sentiment) == (absolute, "angry", None, None)
    assert scan.skipped == {
        "unknown label 'sarcastic'": 1,
        "label 'boredom' has no target": 1,
        "row without path": 1,
        "row without label": 1,
        "bad number in start": 1,
        "end not after start": 1,
        "file not found": 1,
        "unknown sentiment 'meh'": 1,
    }


def test_manifest_jsonl(tmp_path):
    wav(tmp_path / "a.wav")
    lines = [
        json.dumps({"path": "a.wav", "label": "fear", "start": 1, "end": 2.5, "speaker": "x"}),
        "{not json",
        json.dumps(["a.wav", "happy"]),
        json.dumps({"path": "a.wav"}),
        json.dumps({"path": "a.wav", "label": "happy", "end": "NaN"}),
    ]
    manifest = touch(tmp_path / "m.jsonl", "\n".join(lines).encode())
    scan = scan_manifest(manifest)
    assert [(i.label, i.start, i.end, i.speaker) for i in scan.items] == [("fearful", 1.0, 2.5, "x")]
    assert scan.skipped == {
        "bad JSON line": 1,
        "row that is not a JSON object": 1,
        "row without label": 1,
        "bad number in end": 1,
    }


def test_manifest_errors(tmp_path):
    expected = "fields: path"
    with pytest.raises(DatasetLayoutError, match=expected):
        scan_manifest(tmp_path / "none.csv")
    with pytest.raises(DatasetLayoutError, match=expected):
        scan_manifest(touch(tmp_path / "empty.csv"))
    with pytest.raises(DatasetLayoutError, match=expected):
        scan_manifest(touch(tmp_path / "empty.jsonl"))
    with pytest.raises(DatasetLayoutError, match="lacks 'path'"):
        scan_manifest(touch(tmp_path / "nohead.csv", b"file,emotion\na.wav,happy\n"))
    with pytest.raises(DatasetLayoutError, match="every row was skipped"):
        scan_manifest(touch(tmp_path / "bad.csv", b"path,label\nmissing.wav,happy\n"))
    with pytest.raises(DatasetLayoutError, match="unknown suffix"):
        scan_manifest(touch(tmp_path / "m.txt", b"x"))


# ---------------------------------------------------------------------------------------
# registry


def test_registry():
    assert set(DATASETS) == {"fer2013", "imagefolder", "ravdess", "emodb", "cremad", "meld", "goemotions", "manifest"}
    for name, spec in DATASETS.items():
        assert spec.name == name and spec.modality in ("face", "voice", "text") and spec.layout
    with pytest.raises(ValueError, match="known: cremad, emodb"):
        get_dataset("iemocap")


def test_goemotions_real_splits():
    """The copy in ../shared/data: official train/dev, single-label rows kept (8.9% are multi-label)."""
    from emofusion.data import default_data_root

    root = default_data_root() / "goemotions"
    if not (root / "ekman" / "dev.tsv").is_file():
        pytest.skip("GoEmotions is not in ../shared/data")
    dev = DATASETS["goemotions"].scan(root, "dev")
    assert len(dev.items) == 4946 and sum(dev.skipped.values()) == 480
    assert {i.label for i in dev.items} == {"neutral", "happy", "sad", "angry", "fearful", "disgust", "surprised"}
    assert sum(i.sentiment is None for i in dev.items) == 459  # the `ambiguous` group


def test_registry_splits_of_missing_roots(tmp_path):
    assert DATASETS["ravdess"].splits(tmp_path / "none") == []
    assert DATASETS["manifest"].splits(tmp_path / "none.csv") == []
    assert DATASETS["meld"].splits(tmp_path) == []
    assert DATASETS["emodb"].splits(tmp_path) == ["all"]


# ---------------------------------------------------------------------------------------
# splits


def actors(n=20, clips=3):
    return [
        Item(path=None, label="happy", speaker=f"ravdess_{a:02d}", meta={"i": i})
        for a in range(1, n + 1)
        for i in range(clips)
    ]


def _check_folds(items, folds):
    speakers = {i.speaker for i in items}
    validated = []
    for train, val in folds:
        tr, va = {i.speaker for i in train}, {i.speaker for i in val}
        assert not tr & va
        assert tr | va == speakers
        assert len(train) + len(val) == len(items)
        validated += sorted(va)
    assert sorted(validated) == sorted(speakers)  # each speaker validated exactly once


def test_speaker_folds_ravdess_contiguous():
    items = actors()
    folds = speaker_folds(items, 5)
    _check_folds(items, folds)
    assert [sorted({i.speaker for i in val}) for _, val in folds][0] == [f"ravdess_{a:02d}" for a in (1, 2, 3, 4)]
    assert [len({i.speaker for i in val}) for _, val in folds] == [4] * 5
    assert speaker_folds(items, 5) == folds  # deterministic
    shuffled = speaker_folds(items, 5, seed=3)
    _check_folds(items, shuffled)
    assert speaker_folds(items, 5, seed=3) == shuffled
    uneven = speaker_folds(actors(7), 3)
    assert [len({i.speaker for i in val}) for _, val in uneven] == [3, 2, 2]
    _check_folds(actors(7), uneven)


def test_loso_and_explicit_split():
    items = actors(4, 2)
    folds = leave_one_speaker_out(items)
    assert len(folds) == 4
    _check_folds(items, folds)
    train, val = split_by_speakers(items, ["ravdess_03"])
    assert {i.speaker for i in val} == {"ravdess_03"} and len(train) == 6
    with pytest.raises(ValueError, match="not in the items"):
        split_by_speakers(items, ["ravdess_99"])


def test_split_errors():
    with pytest.raises(ValueError, match="only 4 speakers"):
        speaker_folds(actors(4), 5)
    with pytest.raises(ValueError, match="no speaker"):
        speaker_folds(actors(4) + [Item(path=None, label="sad")], 2)
    with pytest.raises(ValueError, match="no speaker"):
        leave_one_speaker_out([Item(path=None, label="sad")])


# ---------------------------------------------------------------------------------------
# real data (skipped where ../shared/data or $EMOFUSION_DATA is absent)


def real(sub: str) -> Path:
    path = data_root() / sub
    if not path.exists():
        pytest.skip(f"real data not present at {path}")
    return path


def test_real_fer2013():
    scan = get_dataset("fer2013").scan(real("fer2013"), "val")
    assert len(scan.items) == 3589 and not scan.skipped
    assert scan.label_counts()["happy"] == 895


def test_real_ravdess():
    scan = scan_ravdess(real("ravdess-speech-16k"))
    assert len(scan.items) == 1194 and not scan.skipped
    assert len({i.speaker for i in scan.items}) == 20
    assert scan.label_counts()["neutral"] == 237  # neutral + calm
    _check_folds(scan.items, speaker_folds(scan.items, 5))


def test_real_emodb():
    scan = scan_emodb(real("emodb"))
    assert len(scan.items) == 535 - 81
    assert scan.skipped == {"label 'L' (boredom) has no target": 81}
    assert len({i.speaker for i in scan.items}) == 10


@pytest.mark.parametrize("split, rows", [("train", 9989), ("dev", 1109)])
def test_real_meld(split, rows):
    scan = scan_meld(real("meld"), split)
    assert len(scan.items) == rows and not scan.skipped
    for item in scan.items:
        assert not any(bad in item.text for bad in ("\u00e2\u20ac", "\u00e2\x80", "\x92", "\u00c3", "\u2019"))
    ids = [(i.meta["dialogue_id"], i.meta["utterance_id"]) for i in scan.items]
    assert ids == sorted(ids)
