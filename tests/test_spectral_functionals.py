"""Our own acoustic feature set (`spectral_v1`): what its features measure, its edge cases, the
choice of the head's c on held-out speakers, and a voice model trained with it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import tiny_voice_recipe
from test_voice_functionals import (_ravdess, _speech_like, assert_analysis_gives_the_clip_level_voice,
                                   modules_imported_by_functionals)
from typer.testing import CliRunner

from emofusion.cli import app
from emofusion.features import SPECTRAL_DIM, SPECTRAL_SET, acoustic_functionals, log_mel, spectral_functionals
from emofusion.media import read_audio
from emofusion.models import load_model
from emofusion.models.voice import combine_voice, select_functionals_c

runner = CliRunner()
SR = 16000
CONTOURS = 64 + 20 + 5  # log-mel bands, MFCCs, energy, centroid, flatness, alpha ratio, flux
PER_CONTOUR = 13  # mean, std, q10, q25, q50, q75, q90, range, slope, skew, kurtosis, mean |diff|, std diff
CENTROID = 64 + 20 + 1  # contour index of the spectral centroid (kHz)
SEMITONES = CONTOURS  # the log-F0 block follows the frame contours


def _feature(features: np.ndarray, contour: int, functional: int) -> float:
    return float(features[contour * PER_CONTOUR + functional])


def _harmonic(f0: float, seconds: float = 1.5, amplitude: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (amplitude * sum(np.sin(2 * np.pi * f0 * k * t) / k for k in (1, 2, 3, 4))).astype(np.float32)


@pytest.mark.parametrize("f0", [110.0, 200.0, 310.0])
def test_pitch_block_reads_the_fundamental_in_semitones_above_100_hz(f0):
    features = spectral_functionals(_harmonic(f0))
    median = _feature(features, SEMITONES, 4)
    assert median == pytest.approx(12 * np.log2(f0 / 100.0), abs=0.5)
    assert features[-1] > 0.9  # voiced fraction: the whole tone is voiced


def test_centroid_of_a_pure_tone_is_its_frequency():
    t = np.arange(SR) / SR
    features = spectral_functionals((0.5 * np.sin(2 * np.pi * 1000.0 * t)).astype(np.float32))
    assert _feature(features, CENTROID, 0) == pytest.approx(1.0, abs=0.05)  # kHz


def test_features_do_not_depend_on_gain_and_each_clip_stands_alone():
    """Every contour is relative (mel bands less their common mean, energy below the loudest
    frame, ratios), so a quieter recording gives the same features; and a clip's row does not
    depend on the clips beside it."""
    a, b = _speech_like(2.0, 180.0, 1), _speech_like(1.3, 240.0, 2)
    quiet = spectral_functionals(a * 0.1)
    np.testing.assert_allclose(quiet, spectral_functionals(a), rtol=1e-3, atol=2e-3)
    both = acoustic_functionals([a, b], SPECTRAL_SET)
    assert both.shape == (2, SPECTRAL_DIM) and both.dtype == np.float32
    np.testing.assert_array_equal(acoustic_functionals([b], SPECTRAL_SET)[0], both[1])


@pytest.mark.parametrize("wav", [
    np.zeros(SR, dtype=np.float32),  # digital silence
    np.zeros(100, dtype=np.float32),  # shorter than one STFT window
    (3.0 * np.random.default_rng(0).standard_normal(300)).astype(np.float32),  # short, beyond full scale
    (0.1 * np.random.default_rng(1).standard_normal(2 * SR)).astype(np.float32),  # noise: nothing voiced
    np.zeros(0, dtype=np.float32),  # empty
], ids=["silence", "short", "loud", "noise", "empty"])
def test_edge_cases_give_finite_rows_of_the_full_width(wav):
    row = spectral_functionals(wav)
    assert row.shape == (SPECTRAL_DIM,) and np.isfinite(row).all()


def test_the_set_is_defined_at_16_khz_only_and_empty_input_is_empty():
    with pytest.raises(ValueError, match="16000 Hz"):
        acoustic_functionals([np.zeros(8000, np.float32)], SPECTRAL_SET, sample_rate=8000)
    assert acoustic_functionals([], SPECTRAL_SET).shape == (0, SPECTRAL_DIM)


def test_computing_the_set_needs_neither_opensmile_nor_pandas():
    assert modules_imported_by_functionals(SPECTRAL_SET, SPECTRAL_DIM, {"opensmile", "pandas", "sklearn"}) == []


# --------------------------------------------------------------------------- choosing c
def _speakers(n_speakers: int, per_speaker: int) -> list[str]:
    return [f"s{k}" for k in range(n_speakers) for _ in range(per_speaker)]


def test_c_choice_prefers_weak_regularisation_when_the_features_carry_the_label():
    rng = np.random.default_rng(0)
    speakers = _speakers(6, 30)
    y = rng.integers(0, 3, len(speakers))
    feats = rng.standard_normal((len(speakers), 20)) + 3.0 * np.eye(3)[y] @ rng.standard_normal((3, 20))
    assert select_functionals_c(feats, y, speakers, 3, [1e-4, 1e-2, 1.0]) == 1.0


def test_c_choice_prefers_strong_regularisation_when_the_features_are_noise():
    rng = np.random.default_rng(1)
    speakers = _speakers(6, 20)
    feats = rng.standard_normal((len(speakers), 200))
    y = rng.integers(0, 3, len(speakers))
    assert select_functionals_c(feats, y, speakers, 3, [1e-4, 1.0, 100.0]) == 1e-4


def test_c_choice_needs_two_speakers():
    with pytest.raises(ValueError, match="two speakers"):
        select_functionals_c(np.zeros((4, 2)), np.array([0, 1, 0, 1]), ["a"] * 4, 2, [0.1, 1.0])


# --------------------------------------------------------------------------- a model trained with the set
@pytest.fixture(scope="module")
def spectral_model(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("spectral")
    data = _ravdess(tmp / "ravdess")
    recipe = tiny_voice_recipe(tmp / "voice.toml", data,
                               model_lines='functionals = { feature_set = "spectral_v1", c = [0.01, 0.1, 1.0], weight = 0.5 }')
    cache = tmp / "cache"
    result = runner.invoke(app, ["train", str(recipe), "--out", str(tmp / "run"), "--fold", "1", "--cache-dir", str(cache)])
    assert result.exit_code == 0, result.output
    return {"model": tmp / "run" / "last", "data": data, "cache": cache, "recipe": recipe}


def test_training_picks_c_from_the_list_and_records_it(spectral_model):
    cfg = json.loads((spectral_model["model"] / "config.json").read_text())["voice"]["functionals"]
    assert cfg["feature_set"] == SPECTRAL_SET and cfg["dim"] == SPECTRAL_DIM
    assert cfg["c_grid"] == [0.01, 0.1, 1.0] and cfg["c"] in cfg["c_grid"]
    cache = np.load(spectral_model["cache"] / f"voice-functionals-{SPECTRAL_SET}.npz")
    assert cache["feats"].shape == (12, SPECTRAL_DIM)  # the two training actors' clips only


def test_the_head_separates_the_held_out_actors_pitch_coded_emotions(spectral_model):
    model = load_model(spectral_model["model"])
    wavs = [read_audio(p) for p in sorted((spectral_model["data"] / "Actor_01").glob("*.wav"))]
    truth = np.array([model.labels.index(lab) for lab in ("neutral", "neutral", "happy", "happy", "angry", "angry")])
    head = model.voice_functionals.probs(acoustic_functionals(wavs, SPECTRAL_SET))
    assert (head.argmax(axis=1) == truth).mean() >= 5 / 6
    cnn = model.voice_probs(log_mel(np.stack(wavs), model.config.mel))
    np.testing.assert_allclose(model.clip_voice_probs(wavs), combine_voice(cnn, head, 0.5), atol=1e-6)


def test_analysis_with_the_set_gives_the_clip_level_answer(spectral_model, tmp_path):
    assert_analysis_gives_the_clip_level_voice(spectral_model["model"], tmp_path)


@pytest.mark.parametrize("body, message", [
    ('{ feature_set = "spectral_v1", c = [] }', "c must be > 0"),
    ('{ feature_set = "spectral_v1", c = [0.1, -1.0] }', "c must be > 0"),
    ('{ feature_set = "spectral_v1", c = ["a"] }', "c must be a number or a list of numbers"),
])
def test_bad_c_lists_are_one_line_errors(spectral_model, tmp_path, body, message):
    recipe = tiny_voice_recipe(tmp_path / "bad.toml", spectral_model["data"], model_lines=f"functionals = {body}")
    result = runner.invoke(app, ["train", str(recipe), "--out", str(tmp_path / "bad"), "--fold", "1"])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


def test_the_bundled_model_uses_the_spectral_set():
    model = load_model("default", load_text_encoder=False)
    assert model.voice_functionals_config["feature_set"] == SPECTRAL_SET
    assert model.voice_functionals.dim == SPECTRAL_DIM
