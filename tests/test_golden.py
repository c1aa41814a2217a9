"""Golden answers of the bundled model: a fixed generated clip, analysed with
``Analyzer("default")``, must give the per-window face / voice / text / fused probabilities,
top labels and summary stored in tests/golden/default.json.

A change of these numbers is a change of what the library answers, which a refactor must
not make. When a change is meant (new weights, a fixed preprocessing bug), regenerate the
file and commit it with the reason:

    PYTHONPATH=src python tests/test_golden.py --update

(or run pytest with EMOFUSION_UPDATE_GOLDEN=1: the test then writes the file and fails, so that
an update is never mistaken for a pass).

The clip is lossless (FFV1 video, FLAC audio in Matroska), so what the analysis decodes is
exactly what was generated: no lossy encoder version can move the answer. Its picture is the
synthetic face of emofusion.media.synth; its sound a deterministic voiced signal made here
(a glottal-like harmonic series through vowel formants, with syllable rhythm), since the
project sets up no speech synthesiser; its words come from ``text=``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from emofusion.media.synth import make_clip, make_face_image

HERE = Path(__file__).resolve().parent

GOLDEN = HERE / "golden" / "default.json"
UPDATE_ENV = "EMOFUSION_UPDATE_GOLDEN"

SR = 16000
DURATION = 6.0
TEXT = "I am so happy to see you again, this is wonderful news!"
# Tolerance on every probability. The inputs decode bit-exactly; what may still differ between
# runs and machines is float32 arithmetic order (BLAS / oneDNN kernels chosen by CPU and thread
# count), which moves softmax outputs by ~1e-6. 1e-3 is far above that noise and far below any
# change that means something (the bundled model's probabilities differ between labels and
# windows by whole hundredths and more).
ATOL = 1e-3
# (F1, F2, F3) in Hz of the vowels /a/, /i/, /u/, one per syllable in turn
VOWELS = ((730.0, 1090.0, 2440.0), (270.0, 2290.0, 3010.0), (300.0, 870.0, 2240.0))


def voiced(duration: float = DURATION, sample_rate: int = SR) -> np.ndarray:
    """A speech-like mono float32 signal: a harmonic series on a gliding pitch (110-190 Hz),
    shaped by the formants of one vowel per 0.5 s syllable, with a syllable-rate envelope."""
    n = int(round(duration * sample_rate))
    t = np.arange(n, dtype=np.float64) / sample_rate
    f0 = 150.0 + 40.0 * np.sin(2 * np.pi * 0.3 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    syllable = (t // 0.5).astype(int)
    formants = np.array(VOWELS)[syllable % len(VOWELS)]  # (n, 3)
    x = np.zeros(n)
    for k in range(1, 26):
        fk = k * f0
        gain = sum(np.exp(-0.5 * ((fk - formants[:, j]) / 90.0) ** 2) / (j + 1) for j in range(3))
        x += (gain + 0.02) / k * np.sin(k * phase)
    envelope = np.sin(np.pi * (t % 0.5) / 0.5) ** 0.6  # each syllable rises and falls
    x *= envelope
    return (0.5 * x / np.abs(x).max()).astype(np.float32)


def make_golden_clip(path: Path) -> Path:
    """The golden clip at `path` (.mkv): 6 s, 320x240 at 10 fps with the synthetic face,
    16 kHz mono :func:`voiced` audio; FFV1 + FLAC, so decoding it gives exactly these pixels
    and samples. The muxer runs bit-exact (no random segment UID, no date): the same bytes
    each time."""
    return make_clip(path, container="mkv", video_codec="ffv1", audio_codec="flac", duration=DURATION,
                     width=320, height=240, fps=10, face=make_face_image(120), sample_rate=SR,
                     audio=voiced(), options={"fflags": "+bitexact"})


def analyse(folder: Path) -> dict[str, Any]:
    """What the golden file holds, from the current code: per window its times, the face, voice,
    text and fused probabilities and the fused top label; the summary's probabilities and top."""
    from emofusion import Analyzer

    clip = make_golden_clip(folder / "golden.mkv")
    d = Analyzer("default").analyze(str(clip), text=TEXT).to_dict()
    segments = []
    for s in d["segments"]:
        segments.append({
            "start": s["start"], "end": s["end"],
            **{m: (s[m]["probs"] if s[m] is not None else None) for m in ("face", "voice", "text")},
            "fused": s["fused"]["probs"] if s["fused"] is not None else None,
            "top": s["fused"]["top"] if s["fused"] is not None else None,
        })
    return {"model": {"name": d["model"]["name"], "version": d["model"]["version"]}, "labels": d["labels"],
            "text": TEXT, "segments": segments,
            "summary": {"probs": d["summary"]["probs"], "top": d["summary"]["top"]}}


def write_golden(values: dict[str, Any]) -> None:
    """Store `values` as the golden file."""
    GOLDEN.parent.mkdir(parents=True, exist_ok=True)
    GOLDEN.write_text(json.dumps(values, indent=1) + "\n")


def assert_probs_close(got: dict[str, float] | None, want: dict[str, float] | None, where: str) -> None:
    """Both None, or the same labels in the same order with each probability within ATOL."""
    if want is None or got is None:
        assert got is None and want is None, (where, got, want)
        return
    assert list(got) == list(want), (where, list(got), list(want))
    far = {k: (got[k], want[k]) for k in want if abs(got[k] - want[k]) > ATOL}
    assert not far, f"{where}: label: (now, golden) beyond {ATOL}: {far}"


def test_the_generated_clip_is_deterministic(tmp_path: Path) -> None:
    """Two generations of the golden clip are the same bytes."""
    a = make_golden_clip(tmp_path / "a.mkv").read_bytes()
    b = make_golden_clip(tmp_path / "b.mkv").read_bytes()
    assert a == b


def test_bundled_model_gives_the_golden_answers(tmp_path: Path) -> None:
    """Per window: the same fused top label and probabilities (face, voice, text, fused) within
    ATOL; the same summary top label and probabilities."""
    got = analyse(tmp_path)
    if os.environ.get(UPDATE_ENV):
        write_golden(got)
        pytest.fail(f"{GOLDEN} rewritten ({UPDATE_ENV} is set): review and commit it, then run without it")
    want = json.loads(GOLDEN.read_text())
    assert got["model"] == want["model"] and got["labels"] == want["labels"] and want["text"] == TEXT
    # every modality is in play in every window, so each part of the model is pinned
    assert want["segments"] and all(s[m] is not None for s in want["segments"] for m in ("face", "voice", "text"))
    assert [(s["start"], s["end"]) for s in got["segments"]] == [(s["start"], s["end"]) for s in want["segments"]]
    for g, w in zip(got["segments"], want["segments"]):
        where = f"window {w['start']:g}-{w['end']:g} s"
        for part in ("face", "voice", "text", "fused"):
            assert_probs_close(g[part], w[part], f"{where} {part}")
        assert g["top"] == w["top"], (where, g["top"], w["top"])
    assert_probs_close(got["summary"]["probs"], want["summary"]["probs"], "summary")
    assert got["summary"]["top"] == want["summary"]["top"]


if __name__ == "__main__":
    import tempfile

    if sys.argv[1:] != ["--update"]:
        sys.exit("usage: PYTHONPATH=src python tests/test_golden.py --update")
    with tempfile.TemporaryDirectory() as tmp:
        write_golden(analyse(Path(tmp)))
    print(f"wrote {GOLDEN}")
