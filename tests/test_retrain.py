"""Gated retraining (`emofusion retrain`), the model registry, and a running server following it.

The corpora are generated: each emotion is a tone. The "old" corpus (a RAVDESS layout) uses low
tones, the "new" data (a manifest of other speakers) high ones, so a voice part trained on the old
corpus alone cannot read the new speakers and one fine-tuned with them can.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from emofusion.cli import app
from emofusion.models import load_model
from emofusion.models.registry import ModelRegistry
from s3_fixtures import s3_bucket, s3_server  # noqa: F401
from support import ravdess_grid, write_ravdess_wavs

runner = CliRunner()
EMOTIONS = {"01": "neutral", "03": "happy", "05": "angry"}
OLD_TONES = {"01": 180.0, "03": 260.0, "05": 340.0}
NEW_TONES = {"neutral": 900.0, "happy": 1300.0, "angry": 1700.0}
SR = 16000


def _tone(freq: float, seed: int, seconds: float = 1.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    wobble = 1 + 0.03 * rng.standard_normal()
    return (0.3 * np.sin(2 * np.pi * freq * wobble * t) + 0.02 * rng.standard_normal(len(t))).astype(np.float32)


def _recipe(path: Path, old: Path) -> Path:
    path.write_text(f"""
name = "tiny-voice"
task = "voice"
[data]
sources = [{{ dataset = "ravdess", root = "{old}" }}]
val_speakers = ["ravdess_05", "ravdess_06"]
[model]
labels = ["neutral", "happy", "angry"]
channels = [4, 8]
segment_seconds = 0.5
functionals = {{ feature_set = "spectral_v1", c = 0.3, weight = 0.9 }}
[optim]
epochs = 1
batch_size = 8
lr = 0.003
""")
    return path


def _new_manifest(folder: Path, speakers=("new_a", "new_b", "new_c", "new_d"), rows_extra: list[dict] | None = None) -> Path:
    import soundfile as sf

    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for s, speaker in enumerate(speakers):
        for label, freq in NEW_TONES.items():
            for rep in range(4):
                name = f"{speaker}-{label}-{rep}.wav"
                sf.write(folder / name, _tone(freq, seed=1000 + 100 * s + 10 * rep + len(label)), SR)
                rows.append({"path": name, "label": label, "speaker": speaker})
    manifest = folder / "labels.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows + (rows_extra or [])))
    return manifest


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """(recipe, registry root with v0001 = a voice part trained on the old corpus only)."""
    root = tmp_path_factory.mktemp("retrain")
    old = write_ravdess_wavs(root / "old", ravdess_grid(actors=range(1, 7), emotions=EMOTIONS, reps=(1, 2, 3)),
                             lambda actor, emotion, rep: _tone(OLD_TONES[emotion], seed=actor * 10 + rep))
    recipe = _recipe(root / "voice.toml", old)
    result = runner.invoke(app, ["train", str(recipe), "--out", str(root / "base"), "--epochs", "2"])
    assert result.exit_code == 0, result.output
    return recipe, root / "base" / "last"


def _registry(tmp_path: Path, base: Path) -> Path:
    result = runner.invoke(app, ["registry", "init", str(tmp_path / "registry"), "--model", str(base)])
    assert result.exit_code == 0, result.output
    return tmp_path / "registry"


def test_retraining_promotes_a_better_candidate_and_records_why(tmp_path, corpus):
    recipe, base = corpus
    registry = _registry(tmp_path, base)
    manifest = _new_manifest(tmp_path / "new")
    result = runner.invoke(app, ["retrain", str(recipe), "--registry", str(registry), "--data", str(manifest),
                                 "--work", str(tmp_path / "work"), "--epochs", "2", "--holdout-speaker", "new_d"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["promoted"] and report["version"] == "v0002" and report["serving"] == "v0002"
    new_before = report["metrics"]["current"]["new_heldout"]["uar"]
    new_after = report["metrics"]["candidate"]["new_heldout"]["uar"]
    assert new_after > new_before and new_after >= 0.9, report["metrics"]
    old_before, old_after = (report["metrics"][m]["ravdess"]["uar"] for m in ("current", "candidate"))
    assert old_after >= old_before - 0.02
    assert report["provenance"]["new_data"]["heldout_speakers"] == ["new_d"]
    assert report["provenance"]["training"]["epochs"] == 2 and report["provenance"]["parent"] == "v0001"
    assert "new_d" not in report["provenance"]["new_data"]["train_speakers"]
    state = ModelRegistry(registry).state()
    assert state.current == "v0002" and [r["status"] for r in state.versions] == ["seed", "promoted"]
    served = load_model(registry / "versions" / "v0002", load_text_encoder=False)
    assert served.config.version.endswith("+r2")
    # the held-out speaker was never trained on: the candidate's training record lists the rest
    trained_on = served.config.extra["parts"]["voice"]["data"]["train_speakers"]
    assert "new_d" not in trained_on and "new_a" in trained_on
    listing = runner.invoke(app, ["registry", "list", str(registry)])
    assert listing.exit_code == 0 and "* v0002  promoted" in listing.stdout


def test_a_candidate_that_does_not_pass_the_gate_is_recorded_not_served(tmp_path, corpus):
    recipe, base = corpus
    registry = _registry(tmp_path, base)
    manifest = _new_manifest(tmp_path / "new")
    result = runner.invoke(app, ["retrain", str(recipe), "--registry", str(registry), "--data", str(manifest),
                                 "--work", str(tmp_path / "work"), "--epochs", "1", "--holdout-speaker", "new_d",
                                 "--min-gain", "0.99"])
    assert result.exit_code == 3, result.output
    report = json.loads(result.stdout)
    assert not report["promoted"] and report["serving"] == "v0001"
    assert "new_heldout" in report["gate"]["reason"] and "the rule is more than 0.990 above the current model" in report["gate"]["reason"]
    state = ModelRegistry(registry).state()
    assert state.current == "v0001" and state.versions[-1]["status"] == "rejected"
    assert not (registry / "versions" / "v0002").exists()  # refused weights are never put where a server looks
    assert (tmp_path / "work" / "candidate" / "model.safetensors").is_file()  # but kept for inspection
    rollback_to_rejected = runner.invoke(app, ["registry", "serve-version", str(registry), "v0002"])
    assert rollback_to_rejected.exit_code == 2 and "rejected" in rollback_to_rejected.output


@pytest.mark.parametrize("case, expected", [
    ("unknown_label", "unknown label 'ecstatic'"),
    ("label_model_lacks", "not among the model's labels"),
    ("missing_file", "file not found"),
    ("unreadable_file", "not readable audio"),
    ("no_speaker", "have no speaker"),
    ("validation_speaker", "are validation speakers of the recipe"),
    ("one_speaker", "at least 2 are needed"),
])
def test_bad_new_data_is_refused_before_training(tmp_path, corpus, case, expected):
    recipe, base = corpus
    registry = _registry(tmp_path, base)
    folder = tmp_path / "new"
    extra: dict[str, list[dict]] = {
        "unknown_label": [{"path": "new_a-happy-0.wav", "label": "ecstatic", "speaker": "new_a"}],
        "label_model_lacks": [{"path": "new_a-happy-0.wav", "label": "sad", "speaker": "new_a"}],
        "missing_file": [{"path": "gone.wav", "label": "happy", "speaker": "new_a"}],
        "unreadable_file": [{"path": "broken.wav", "label": "happy", "speaker": "new_a"}],
        "no_speaker": [{"path": "new_a-happy-0.wav", "label": "happy"}],
        "validation_speaker": [{"path": "new_a-happy-0.wav", "label": "happy", "speaker": "ravdess_05"}],
        "one_speaker": [],
    }
    speakers = ("new_a",) if case == "one_speaker" else ("new_a", "new_b")
    manifest = _new_manifest(folder, speakers, extra[case])
    (folder / "broken.wav").write_bytes(b"RIFF not really a wave file")
    result = runner.invoke(app, ["retrain", str(recipe), "--registry", str(registry), "--data", str(manifest),
                                 "--work", str(tmp_path / "work")])
    assert result.exit_code == 2, result.output
    assert expected in result.output and "Traceback" not in result.output
    assert ModelRegistry(registry).state().versions[-1]["id"] == "v0001"  # nothing recorded, nothing promoted
    assert not (tmp_path / "work" / "run").exists()  # refused before any training


def test_a_recipe_whose_architecture_differs_from_the_current_model_is_refused(tmp_path, corpus):
    recipe, base = corpus
    registry = _registry(tmp_path, base)
    other = tmp_path / "wider.toml"
    other.write_text(recipe.read_text().replace("channels = [4, 8]", "channels = [4, 16]"))
    result = runner.invoke(app, ["retrain", str(other), "--registry", str(registry),
                                 "--data", str(_new_manifest(tmp_path / "new")), "--work", str(tmp_path / "work")])
    assert result.exit_code == 2 and "does not match the current model" in result.output, result.output
    assert ModelRegistry(registry).state().current == "v0001"


def test_registry_errors_are_one_line(tmp_path, corpus):
    recipe, base = corpus
    missing = runner.invoke(app, ["retrain", str(recipe), "--registry", str(tmp_path / "none"), "--data",
                                  str(tmp_path / "x.jsonl"), "--work", str(tmp_path / "w")])
    assert missing.exit_code == 2 and "not a model registry" in missing.output
    registry = _registry(tmp_path, base)
    again = runner.invoke(app, ["registry", "init", str(registry), "--model", str(base)])
    assert again.exit_code == 2 and "already holds a registry" in again.output
    nothing_before = runner.invoke(app, ["registry", "rollback", str(registry)])
    assert nothing_before.exit_code == 2 and "nothing to roll back to" in nothing_before.output
    both = runner.invoke(app, ["retrain", str(recipe), "--registry", str(registry), "--work", str(tmp_path / "w")])
    assert both.exit_code == 2 and "either --data" in both.output
    (registry / "registry.lock").write_text("123")
    locked = runner.invoke(app, ["registry", "serve-version", str(registry), "v0001"])
    assert locked.exit_code == 2 and "being changed by another process" in locked.output


def test_watching_a_folder_retrains_once_per_new_manifest(tmp_path, corpus):
    recipe, base = corpus
    registry = _registry(tmp_path, base)
    inbox = tmp_path / "inbox"
    _new_manifest(inbox / "batch1")
    args = ["retrain", str(recipe), "--registry", str(registry), "--watch", str(inbox), "--once",
            "--work", str(tmp_path / "work"), "--epochs", "1", "--holdout-speaker", "new_d"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    outcomes = json.loads(first.stdout)
    assert [o["key"] for o in outcomes] == ["batch1/labels.jsonl"] and outcomes[0]["version"] == "v0002"
    again = runner.invoke(app, args)  # the same manifest is not retrained on twice
    assert again.exit_code == 0 and json.loads(again.stdout) == []
    (inbox / "bad").mkdir()
    (inbox / "bad" / "labels.csv").write_text("path,label,speaker\nnothing.wav,happy,x\n")
    third = runner.invoke(app, args)
    bad = json.loads(third.stdout)
    assert [o["key"] for o in bad] == ["bad/labels.csv"] and bad[0]["code"] == "invalid_retraining_data"
    unreadable = runner.invoke(app, args[:5] + [str(tmp_path / "no-such-inbox")] + args[6:])
    assert unreadable.exit_code == 2 and "the watched folder does not exist" in unreadable.output


def test_watching_an_s3_prefix(tmp_path, corpus, s3_server, s3_bucket, monkeypatch):
    import boto3

    recipe, base = corpus
    registry = _registry(tmp_path, base)
    local = _new_manifest(tmp_path / "upload")
    client = boto3.client("s3", endpoint_url=s3_server)
    for path in sorted(local.parent.iterdir()):
        if path.suffix == ".wav":
            client.upload_file(str(path), s3_bucket, f"incoming/day1/{path.name}")
    client.upload_file(str(local), s3_bucket, "incoming/day1/labels.jsonl")  # the manifest last
    monkeypatch.setenv("EMOFUSION_S3_ENDPOINT_URL", s3_server)
    result = runner.invoke(app, ["retrain", str(recipe), "--registry", str(registry), "--watch",
                                 f"s3://{s3_bucket}/incoming", "--once", "--work", str(tmp_path / "work"),
                                 "--epochs", "1", "--holdout-speaker", "new_d"])
    assert result.exit_code == 0, result.output
    (outcome,) = json.loads(result.stdout)
    assert outcome["key"] == "day1/labels.jsonl" and outcome["version"] == "v0002", outcome
    missing = runner.invoke(app, ["retrain", str(recipe), "--registry", str(registry), "--watch",
                                  "s3://no-such-bucket-here/x", "--once", "--work", str(tmp_path / "work")])
    assert missing.exit_code == 2 and "cannot read the watched location" in missing.output


def test_a_running_server_follows_promotions_and_rollbacks(tmp_path, corpus):
    """The served model changes with the registry's current version, without a restart; a version
    that cannot be loaded is not served."""
    from fastapi.testclient import TestClient

    from emofusion.models.registry import copy_folder
    from emofusion.serve.app import create_app
    from serve_support import make_settings

    _, base = corpus
    registry_root = _registry(tmp_path, base)
    registry = ModelRegistry(registry_root)
    second = tmp_path / "second"
    copy_folder(base, second.mkdir() or second)
    config = json.loads((second / "config.json").read_text())
    config["version"] = "9.9.9"
    (second / "config.json").write_text(json.dumps(config))
    settings = make_settings(tmp_path / "home", base, registry=str(registry_root), registry_poll_seconds=0.1, model="")

    def served(client) -> str:
        return client.get("/ping").json()["model"]["version"]

    def wait_until(client, version: str) -> None:
        deadline = time.monotonic() + 20
        while served(client) != version and time.monotonic() < deadline:
            time.sleep(0.1)
        assert served(client) == version

    with TestClient(create_app(settings, start_jobs=False)) as client:
        first = served(client)
        with registry.locked():
            registry.add_version(lambda dst: copy_folder(second, dst), {"status": "promoted"}, make_current=True,
                                 action="promote")
        wait_until(client, "9.9.9")
        assert runner.invoke(app, ["registry", "rollback", str(registry_root)]).exit_code == 0
        wait_until(client, first)
        with registry.locked():  # a promoted version whose weights cannot be loaded
            registry.add_version(lambda dst: (dst / "config.json").write_text("{}"), {"status": "promoted"},
                                 make_current=True, action="promote")
        time.sleep(1.0)
        assert served(client) == first  # still the last good model
        assert client.get("/ping").status_code == 200


def _fake_version(dst: Path) -> None:
    (dst / "config.json").write_text("{}")


def test_rollback_returns_to_the_version_each_one_replaced(tmp_path):
    """v3 is rolled back to v2, then v4 is promoted over v2: rolling v4 back serves v2, not the
    rolled-back v3; rolling back again serves v1."""
    registry = ModelRegistry(tmp_path / "registry")
    seed = tmp_path / "seed"
    seed.mkdir()
    _fake_version(seed)
    assert registry.seed(seed, {"source": "test"}) == "v0001"
    for _ in range(2):
        with registry.locked():
            registry.add_version(_fake_version, {"status": "promoted"}, make_current=True, action="promote")
    assert registry.rollback() == "v0002"
    with registry.locked():
        assert registry.add_version(_fake_version, {"status": "promoted"}, make_current=True, action="promote") == "v0004"
    assert registry.rollback() == "v0002"
    assert registry.rollback() == "v0001"
    with pytest.raises(Exception, match="nothing to roll back to"):
        registry.rollback()
    assert [h["action"] for h in registry.state().history] == ["seed", "promote", "promote", "rollback", "promote",
                                                              "rollback", "rollback"]


def test_a_registry_never_reuses_a_version_left_half_written(tmp_path):
    from emofusion.errors import RegistryError

    registry = ModelRegistry(tmp_path / "registry")
    seed = tmp_path / "seed"
    seed.mkdir()
    _fake_version(seed)
    registry.seed(seed, {})
    (registry.root / "versions" / "v0002").mkdir()  # a folder whose index entry was never written
    with registry.locked():
        assert registry.add_version(_fake_version, {"status": "promoted"}, make_current=True, action="promote") == "v0003"

    def broken(dst: Path) -> None:
        raise OSError(28, "No space left on device")

    with registry.locked(), pytest.raises(RegistryError, match="cannot write version v0004"):
        registry.add_version(broken, {"status": "promoted"}, make_current=True, action="promote")
    assert registry.state().current == "v0003" and not list((registry.root / ".staging").iterdir())
    registry.index_path.write_text('{"format": "emofusion-registry/1"}')
    with pytest.raises(RegistryError, match="without current"):
        registry.state()


def test_voice_training_reads_a_manifest_rows_segment(tmp_path):
    """A row with start/end (a user's label for a window) trains on that part of the file only."""
    import soundfile as sf

    from emofusion.train.recipe import load_recipe
    from emofusion.train.tasks.voice import VoiceTask

    rows = []
    for s, speaker in enumerate(("a", "b")):
        for k, label in enumerate(("neutral", "happy")):
            name = f"{speaker}{k}.wav"
            sf.write(tmp_path / name, _tone(300.0 + 100 * k, seed=s * 10 + k, seconds=3.0), SR)
            rows.append({"path": name, "label": label, "speaker": speaker, "start": 0.5, "end": 1.75})
            rows.append({"path": name, "label": label, "speaker": speaker})
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    recipe = tmp_path / "r.toml"
    recipe.write_text(f"""
name = "segments"
task = "voice"
[data]
sources = [{{ dataset = "manifest", root = "{tmp_path / 'm.jsonl'}" }}]
val_speakers = ["b"]
[model]
labels = ["neutral", "happy"]
channels = [4, 8]
segment_seconds = 0.5
""")
    for cached in (False, True):  # the first run fills the cache, the second reads it
        task = VoiceTask(load_recipe(recipe), tmp_path / "cache")
        assert [len(w) for w in task.train_wavs] == [20000, 48000, 20000, 48000], cached
