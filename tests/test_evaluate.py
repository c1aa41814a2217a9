"""`emofusion evaluate` and emofusion.evaluate, on tiny generated data and tiny random models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import build_tiny_encoder
from support import invoke_cli, noise, write_goemotions, write_meld_csv, write_ravdess_wavs
from typer.testing import Result

from emofusion.evaluate import EvaluationError, evaluate_cross_validation, evaluate_dataset, predict_items
from emofusion.features import log_mel, normalize_faces
from emofusion.labels import EMOTIONS
from emofusion.models import EmotionModel, ModelConfig, load_model

REPORT_KEYS = {"accuracy", "uar", "macro_f1", "weighted_f1", "n", "labels", "confusion_matrix", "per_class",
               "roc_auc_ovr", "ece", "skipped", "dataset", "root", "split", "model"}


def run(*args: object) -> Result:
    """`emofusion evaluate ARGS...`."""
    return invoke_cli("evaluate", *args)


def assert_fails(result, *needles: str) -> str:
    """Exit code 2, one `error:` line on stderr, no traceback."""
    assert result.exit_code == 2, (result.exit_code, result.output)
    err = result.stderr.strip()
    assert err.startswith("error: "), err
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in err, (needle, err)
    return err


# ---------------------------------------------------------------------------------------
# tiny models and data


def face_model(folder: Path, labels=EMOTIONS, seed: int = 0) -> Path:
    import torch

    torch.manual_seed(seed)
    cfg = ModelConfig(name="tinyface", labels=list(labels),
                      face={"channels": [4, 8], "dropout": 0.0, "tta_flip": False, "preprocess": {"size": 48}})
    return EmotionModel(cfg).save_pretrained(folder)


def voice_model(folder: Path, extra: dict | None = None, seed: int = 0) -> Path:
    import torch

    torch.manual_seed(seed)
    cfg = ModelConfig(name="tinyvoice", voice={"channels": [4, 8], "dropout": 0.0, "preprocess": {}},
                      extra=extra or {})
    return EmotionModel(cfg).save_pretrained(folder)


WORDS = ["oh", "my", "god", "i", "am", "so", "happy", "sad", "what", "no", "yes", "you", "are", "here", "okay", "."]


@pytest.fixture(scope="module")
def tiny_encoder(tmp_path_factory) -> Path:
    """A random 16-d BERT encoder whose vocabulary is WORDS."""
    return build_tiny_encoder(tmp_path_factory.mktemp("encoder"), WORDS)


def text_model(folder: Path, encoder: Path, labels=EMOTIONS) -> Path:
    import torch

    torch.manual_seed(0)
    cfg = ModelConfig(name="tinytext", labels=list(labels),
                      text={"encoder": str(encoder), "embed_dim": 16, "hidden": 8, "dropout": 0.0,
                            "use_context": True, "context_turns": 2, "max_length": 32})
    return EmotionModel(cfg, load_text_encoder=False).save_pretrained(folder)


def write_image(path: Path, rng: np.random.Generator) -> Path:
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), rng.integers(0, 256, (48, 48), dtype=np.uint8))
    return path


def ravdess(root: Path, rng: np.random.Generator, corrupt: bool = True) -> Path:
    """Actor_01: 3 clips, Actor_02: 3 clips (+ one corrupt one)."""
    seconds = {"05": 0.3, "03": 0.8, "04": 1.0}
    grid = [(actor, emotion, rep) for actor in (1, 2) for rep, emotion in enumerate(seconds, start=1)]
    write_ravdess_wavs(root, grid, lambda actor, emotion, rep: noise(seconds[emotion], rng))
    if corrupt:
        bad = root / "Actor_02" / "03-01-06-01-02-01-02.wav"
        bad.write_bytes(rng.integers(0, 256, 3000, dtype=np.uint8).tobytes())
    return root


MELD_ROWS = [
    ("oh my god", "Rachel", "surprise", "positive", 0, 0),
    ("i am so happy", "Monica", "joy", "positive", 0, 1),
    ("what", "Ross", "neutral", "neutral", 0, 2),
    ("no no no", "Joey", "disgust", "negative", 0, 3),
    ("you are here", "Chandler", "joy", "positive", 1, 0),
    ("i am sad", "Phoebe", "sadness", "negative", 1, 1),
    ("okay", "Rachel", "anger", "negative", 1, 2),
]


def meld(root: Path) -> Path:
    """The dev split only: MELD_ROWS."""
    write_meld_csv(root / "dev_sent_emo.csv", MELD_ROWS)
    return root


# ---------------------------------------------------------------------------------------
# faces


def test_face_imagefolder_cli(tmp_path):
    import cv2

    rng = np.random.default_rng(0)
    root = tmp_path / "faces"
    truth = {}
    for label in ("happy", "sad", "angry"):
        for k in range(3):
            truth[write_image(root / "val" / label / f"{k}.png", rng)] = label
    for k in range(2):
        write_image(root / "val" / "contempt" / f"{k}.png", rng)  # no target: skipped, counted
    for k in range(2):
        write_image(root / "val" / "surprise" / f"{k}.png", rng)  # the model lacks "surprised"
    (root / "val" / "happy" / "broken.png").write_bytes(b"not a png at all")
    labels = [name for name in EMOTIONS if name != "surprised"]
    model_dir = face_model(tmp_path / "model", labels=labels)

    out, png = tmp_path / "report.json", tmp_path / "cm.png"
    result = run("--dataset", "imagefolder", "--root", root, "--split", "val", "--model", model_dir,
                 "--json", out, "--plot", png)
    assert result.exit_code == 0, result.output
    assert "accuracy" in result.stdout and "skipped" in result.stdout  # the readable summary
    report = json.loads(out.read_text())
    assert REPORT_KEYS <= set(report)
    assert report["n"] == 9
    assert report["labels"] == labels
    assert report["skipped"] == {
        "label 'contempt' has no target": 2,
        "label 'surprised' not in the model's labels": 2,
        "unreadable file: unreadable image": 1,
    }
    assert report["model"] == {"name": "tinyface", "version": "0.0.0", "trained": False}
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # independently: the model's own face_probs on the same images
    model = load_model(model_dir)
    paths = sorted(truth)
    crops = np.stack([cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in paths])
    probs = model.face_probs(normalize_faces(crops, model.config.face_preprocess))
    y = np.array([labels.index(truth[p]) for p in paths])
    assert report["accuracy"] == pytest.approx(float(np.mean(probs.argmax(1) == y)))
    cm = np.zeros((len(labels), len(labels)), dtype=int)
    np.add.at(cm, (y, probs.argmax(1)), 1)
    assert report["confusion_matrix"] == cm.tolist()


def test_face_split_all_reports_each_split(tmp_path):
    rng = np.random.default_rng(1)
    root = tmp_path / "faces"
    for split in ("train", "val"):
        for label in ("happy", "sad"):
            for k in range(2):
                write_image(root / split / label / f"{k}.png", rng)
    model = load_model(face_model(tmp_path / "model"))
    report = evaluate_dataset(model, "imagefolder", root, split="all")
    assert report["n"] == 8
    assert set(report["splits"]) == {"train", "val"}
    assert all(rep["n"] == 4 for rep in report["splits"].values())
    cm = np.asarray(report["splits"]["train"]["confusion_matrix"]) + np.asarray(report["splits"]["val"]["confusion_matrix"])
    assert cm.tolist() == report["confusion_matrix"]


# ---------------------------------------------------------------------------------------
# voice


def test_voice_ravdess_cli_and_speakers(tmp_path):
    rng = np.random.default_rng(2)
    root = ravdess(tmp_path / "ravdess", rng)
    model_dir = voice_model(tmp_path / "model")

    result = run("--dataset", "ravdess", "--root", root, "--model", model_dir, "--json", "-")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)  # --json -: only JSON on stdout
    assert REPORT_KEYS <= set(report)
    assert report["n"] == 6
    assert report["split"] == "all"
    unreadable = {k: v for k, v in report["skipped"].items() if k.startswith("unreadable file: ")}
    assert sum(unreadable.values()) == 1, report["skipped"]
    assert "warning:" in result.stderr  # random weights are flagged

    result = run("--dataset", "ravdess", "--root", root, "--model", model_dir, "--json", "-", "--speakers", "ravdess_01")
    assert result.exit_code == 0, result.output
    only = json.loads(result.stdout)
    assert only["n"] == 3 and only["speakers"] == ["ravdess_01"]
    assert not any(k.startswith("unreadable") for k in only["skipped"])  # the corrupt clip is actor 02's

    assert_fails(run("--dataset", "ravdess", "--root", root, "--model", model_dir, "--speakers", "ravdess_99"),
                 "ravdess_99")


def test_voice_short_clip_padded_to_half_a_second(tmp_path):
    rng = np.random.default_rng(3)
    root = ravdess(tmp_path / "ravdess", rng, corrupt=False)
    model = load_model(voice_model(tmp_path / "model"))
    from emofusion.data import get_dataset
    from emofusion.media import read_audio

    items = [i for i in get_dataset("ravdess").scan(root, "all").items if i.speaker == "ravdess_01"]
    y, probs, skipped, extra = predict_items(model, "voice", items)
    assert not skipped and len(y) == 3
    k = next(k for k, item in enumerate(items) if item.label == "angry")  # the 0.3 s clip
    wav = read_audio(items[k].path)
    assert len(wav) == 4800
    expected = model.voice_probs(log_mel(np.pad(wav, (0, 8000 - len(wav))), model.config.mel).unsqueeze(0))
    np.testing.assert_allclose(probs[k], expected[0], rtol=1e-5, atol=1e-6)
    unpadded = model.voice_probs(log_mel(wav, model.config.mel).unsqueeze(0))
    assert not np.allclose(probs[k], unpadded[0], rtol=1e-5, atol=1e-6)


def test_cross_validation_pools_held_out_folds(tmp_path):
    rng = np.random.default_rng(4)
    root = ravdess(tmp_path / "ravdess", rng)
    cv = tmp_path / "cv"
    m1 = voice_model(cv / "fold1" / "last", {"data": {"val_speakers": ["ravdess_01"]}}, seed=1)
    m2 = voice_model(cv / "fold2" / "last", {"data": {"val_speakers": ["ravdess_02"]}}, seed=2)

    report = evaluate_cross_validation(cv, "ravdess", root)
    assert report["n"] == 6
    assert list(report["folds"]) == ["fold1", "fold2"]
    assert report["folds"]["fold1"]["speakers"] == ["ravdess_01"]
    assert report["unevaluated_speakers"] == []
    # each fold model predicts exactly its own speakers: same as evaluating it alone on them
    f1 = evaluate_dataset(load_model(m1), "ravdess", root, speakers=["ravdess_01"])
    f2 = evaluate_dataset(load_model(m2), "ravdess", root, speakers=["ravdess_02"])
    assert report["folds"]["fold1"]["confusion_matrix"] == f1["confusion_matrix"]
    assert report["folds"]["fold2"]["confusion_matrix"] == f2["confusion_matrix"]
    pooled = np.asarray(f1["confusion_matrix"]) + np.asarray(f2["confusion_matrix"])
    assert report["confusion_matrix"] == pooled.tolist()
    assert sum(v for k, v in report["skipped"].items() if k.startswith("unreadable")) == 1

    result = run("--dataset", "ravdess", "--root", root, "--cv-dir", cv, "--json", "-")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["n"] == 6

    # folds trained on several sources also hold out other datasets' speakers: ignored here
    voice_model(cv / "fold1" / "last", {"data": {"val_speakers": ["emodb_03", "ravdess_01"]}}, seed=1)
    voice_model(cv / "fold3" / "last", {"data": {"val_speakers": ["emodb_08"]}})
    mixed = evaluate_cross_validation(cv, "ravdess", root)
    assert mixed["confusion_matrix"] == report["confusion_matrix"]
    assert mixed["folds"]["fold1"]["speakers"] == ["ravdess_01"]
    assert list(mixed["folds_unused"]) == ["fold3"]
    result = run("--dataset", "ravdess", "--root", root, "--cv-dir", cv)
    assert result.exit_code == 0 and "fold3 not used" in result.stdout, result.output

    # two folds holding out the same speaker
    voice_model(cv / "fold3" / "last", {"data": {"val_speakers": ["ravdess_02"]}})
    with pytest.raises(EvaluationError, match="ravdess_02.*two folds"):
        evaluate_cross_validation(cv, "ravdess", root)
    assert_fails(run("--dataset", "ravdess", "--root", root, "--cv-dir", cv), "two folds")
    # a fold with no held-out speakers; a fold that does not say
    voice_model(cv / "fold3" / "last", {"data": {"val_speakers": []}})
    with pytest.raises(EvaluationError, match="no held-out speakers"):
        evaluate_cross_validation(cv, "ravdess", root)
    voice_model(cv / "fold3" / "last", {"data": {}})
    with pytest.raises(EvaluationError, match="val_speakers"):
        evaluate_cross_validation(cv, "ravdess", root)


# ---------------------------------------------------------------------------------------
# text


def test_meld_text_with_sentiment(tmp_path, tiny_encoder):
    root = meld(tmp_path / "meld")
    labels = [name for name in EMOTIONS if name != "disgust"]
    model_dir = text_model(tmp_path / "model", tiny_encoder, labels=labels)

    out = tmp_path / "meld.json"
    result = run("--dataset", "meld", "--root", root, "--model", model_dir, "--json", out)  # default split: dev
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["split"] == "dev"
    assert report["n"] == 6
    assert report["skipped"] == {"label 'disgust' not in the model's labels": 1}
    sentiment = report["sentiment"]
    assert sentiment["labels"] == ["negative", "neutral", "positive"] and sentiment["n"] == 6
    assert {"accuracy", "macro_f1", "weighted_f1", "confusion_matrix"} <= set(sentiment)

    # independently: contexts are the previous (up to 2) utterances of the same dialogue,
    # including ones whose label the model lacks
    model = load_model(model_dir, load_text_encoder=False)  # heads only in model.safetensors
    texts = [r[0] for r in MELD_ROWS]
    ctx = ["", "oh my god", "oh my god i am so happy", "i am so happy what", "", "you are here", "you are here i am sad"]
    keep = [i for i, r in enumerate(MELD_ROWS) if r[2] != "disgust"]
    emo, sent = model.text_probs([texts[i] for i in keep], [ctx[i] for i in keep])
    names = {"surprise": "surprised", "joy": "happy", "sadness": "sad", "anger": "angry"}
    y = np.array([labels.index(names.get(MELD_ROWS[i][2], MELD_ROWS[i][2])) for i in keep])
    assert report["accuracy"] == pytest.approx(float(np.mean(emo.argmax(1) == y)))
    s = np.array([["negative", "neutral", "positive"].index(MELD_ROWS[i][3]) for i in keep])
    assert sentiment["accuracy"] == pytest.approx(float(np.mean(sent.argmax(1) == s)))


def test_goemotions_single_label_rows_with_group_sentiment(tmp_path, tiny_encoder):
    rows = [("so happy for you", "3", "3"), ("this is so sad", "5", "1"), ("wow, really?", "6", "0"),
            ("ugh and yay", "0,3", "1,3"), ("that is gross", "1", "1")]
    root = write_goemotions(tmp_path / "go", {"dev": rows})
    model_dir = text_model(tmp_path / "model", tiny_encoder)
    out = tmp_path / "go.json"
    result = run("--dataset", "goemotions", "--root", root, "--model", model_dir, "--json", out)  # default: dev
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["split"] == "dev" and report["n"] == 4
    assert report["skipped"] == {"multi-label row (several Ekman emotions)": 1}
    assert report["sentiment"]["n"] == 3  # "wow, really?" is ambiguous: no sentiment truth
    # a comment has no dialogue: read without context
    model = load_model(model_dir, load_text_encoder=False)
    emo, _ = model.text_probs(["so happy for you", "this is so sad", "wow, really?", "that is gross"], ["", "", "", ""])
    y = np.array([EMOTIONS.index(n) for n in ("happy", "sad", "surprised", "disgust")])
    assert report["accuracy"] == pytest.approx(float(np.mean(emo.argmax(1) == y)))


# ---------------------------------------------------------------------------------------
# bad input


def test_bad_input_fails_cleanly(tmp_path):
    rng = np.random.default_rng(5)
    face_dir = face_model(tmp_path / "face_model")
    voice_dir = voice_model(tmp_path / "voice_model")
    empty = tmp_path / "empty"
    empty.mkdir()

    assert_fails(run("--dataset", "imagefolder", "--root", empty, "--model", face_dir), "expected")
    assert_fails(run("--dataset", "ravdess", "--root", empty, "--model", voice_dir), "expected", "Actor_")
    assert_fails(run("--dataset", "meld", "--root", empty, "--model", voice_dir), "meld")  # no text net

    flat = tmp_path / "flat"
    for k in range(2):
        write_image(flat / f"{k}.png", rng)  # images directly under root: no split/label folders
    assert_fails(run("--dataset", "imagefolder", "--root", flat, "--model", face_dir), "expected", "<split>/<label>")
    assert_fails(run("--dataset", "fer2013", "--root", flat, "--model", face_dir), "val")  # default split val

    assert_fails(run("--dataset", "nosuchset", "--root", empty, "--model", face_dir), "unknown dataset", "ravdess")
    assert_fails(run("--dataset", "ravdess", "--root", tmp_path / "missing", "--model", voice_dir), "no such")
    assert_fails(run("--dataset", "ravdess", "--root", empty, "--model", tmp_path / "no_model"), "no_model")

    faces = tmp_path / "faces"
    write_image(faces / "val" / "happy" / "0.png", rng)
    assert_fails(run("--dataset", "imagefolder", "--root", faces, "--model", voice_dir), "has no face net")
    (faces / "val" / "weird_label").mkdir()
    assert_fails(run("--dataset", "imagefolder", "--root", faces, "--model", face_dir), "weird_label")

    broken = tmp_path / "broken"
    for actor in ("01", "02"):
        p = broken / f"Actor_{actor}" / f"03-01-05-01-01-01-{actor}.wav"
        p.parent.mkdir(parents=True)
        p.write_bytes(rng.integers(0, 256, 2000, dtype=np.uint8).tobytes())
    err = assert_fails(run("--dataset", "ravdess", "--root", broken, "--model", voice_dir), "unreadable file")
    assert "2" in err


def test_nothing_left_is_an_error_not_n0(tmp_path):
    from emofusion.data import Item

    model = load_model(face_model(tmp_path / "model", labels=["happy", "sad"]))
    items = [Item(path=tmp_path / "x.png", label="angry")]
    with pytest.raises(EvaluationError, match="no item could be evaluated.*'angry' not in the model's labels: 1"):
        predict_items(model, "face", items)
    with pytest.raises(EvaluationError, match="no voice net"):
        predict_items(model, "voice", items)
