"""Builders and checks shared by several test modules: tiny RAVDESS and MELD layouts, the CLI
runner and its one-error-line check, a free local port.

Each test module keeps its own data (which actors, which rows, which signal); what is shared
here is how such data is laid out on disk, so that a change of layout is made once.
"""

from __future__ import annotations

import itertools
import socket
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
from typer.testing import CliRunner, Result

# --------------------------------------------------------------------------------- RAVDESS

RAVDESS_SR = 16000


def ravdess_path(root: Path, actor: int, emotion: str, *, modality: str = "03", rep: int = 1,
                 suffix: str | None = None) -> Path:
    """`root/Actor_AA/MM-01-EE-01-01-RR-AA.<suffix>`: a RAVDESS speech file (channel 01, normal
    intensity, statement 01) of `actor`, `emotion` (a two-digit code) and repetition `rep`;
    `modality` 01 audio-visual, 02 video-only, 03 audio-only; the suffix defaults to wav for
    audio-only, else mp4."""
    suffix = suffix or ("wav" if modality == "03" else "mp4")
    name = f"{modality}-01-{emotion}-01-01-{rep:02d}-{actor:02d}.{suffix}"
    return Path(root) / f"Actor_{actor:02d}" / name


def ravdess_grid(actors: Iterable[int] = (1, 2, 3, 4), emotions: Iterable[str] = ("01", "03", "05"),
                 reps: Iterable[int] = (1, 2)) -> list[tuple[int, str, int]]:
    """(actor, emotion, rep) for every combination, actor first, then emotion, then repetition."""
    return list(itertools.product(actors, emotions, reps))


def write_ravdess_wavs(root: Path, grid: Iterable[tuple[int, str, int]],
                       audio: Callable[[int, str, int], np.ndarray]) -> Path:
    """An audio-only RAVDESS layout under `root`: one 16 kHz wav per (actor, emotion, rep) of
    `grid`, in that order, holding `audio(actor, emotion, rep)`. Returns `root`."""
    import soundfile as sf

    for actor, emotion, rep in grid:
        path = ravdess_path(root, actor, emotion, rep=rep)
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, audio(actor, emotion, rep), RAVDESS_SR)
    return Path(root)


def noise(seconds: float, rng: np.random.Generator) -> np.ndarray:
    """`seconds` of 16 kHz white noise at 0.1 standard deviation (float32), drawn from `rng`."""
    return (0.1 * rng.standard_normal(int(seconds * RAVDESS_SR))).astype(np.float32)


# ------------------------------------------------------------------------------------ MELD

MELD_HEADER = "Sr No.,Utterance,Speaker,Emotion,Sentiment,Dialogue_ID,Utterance_ID,Season,Episode,StartTime,EndTime\n"
MeldRow = tuple[str, str, str, str, int, int]  # utterance, speaker, emotion, sentiment, dialogue, utterance id


def write_meld_csv(path: Path, rows: Iterable[MeldRow], *, season: int = 1, episode: int = 1) -> Path:
    """A MELD `<split>_sent_emo.csv` at `path` with one line per row (numbered from 1), every
    utterance from 00:00:01,000 to 00:00:02,000 of `season` / `episode`. Returns `path`."""
    lines = [MELD_HEADER]
    for n, (text, speaker, emotion, sentiment, dia, utt) in enumerate(rows, start=1):
        lines.append(f'{n},"{text}",{speaker},{emotion},{sentiment},{dia},{utt},{season},{episode},'
                     '"00:00:01,000","00:00:02,000"\n')
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text("".join(lines))
    return Path(path)


# ------------------------------------------------------------------------------------- CLI


def cli_runner() -> CliRunner:
    """A CliRunner that keeps stderr apart from stdout, on every click version."""
    try:
        return CliRunner(mix_stderr=False)  # click < 8.2
    except TypeError:
        return CliRunner()  # click >= 8.2 keeps stderr apart by itself


def invoke_cli(*args: object) -> Result:
    """`emofusion ARGS...` in this process (arguments turned to str); the click Result."""
    from emofusion.cli import app

    return cli_runner().invoke(app, [str(a) for a in args])


def assert_no_crash(result: Result) -> None:
    """The command ended by exiting (any code), not by an uncaught exception, and printed no traceback."""
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output


def assert_one_error_line(result: Result, subject: object) -> str:
    """Exit code 2, nothing on stdout, and one stderr line `error: SUBJECT: <reason>`; returns the line."""
    assert_no_crash(result)
    assert result.exit_code == 2, (result.exit_code, result.output)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    line = lines[0]
    assert line.startswith(f"error: {subject}: "), line
    assert len(line) > len(f"error: {subject}: ") + 3, line  # a reason follows
    assert result.stdout == ""
    return line


# ---------------------------------------------------------------------------------- network


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listened on a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_goemotions(root: Path, rows: dict[str, list[tuple[str, str, str]]]) -> Path:
    """A GoEmotions layout (ekman + group folders); rows per split: (text, ekman ids, group ids)."""
    ekman = ["anger", "disgust", "fear", "joy", "neutral", "sadness", "surprise"]
    group = ["ambiguous", "negative", "neutral", "positive"]
    for folder, names, column in (("ekman", ekman, 1), ("group", group, 2)):
        (root / folder).mkdir(parents=True)
        (root / folder / "labels.txt").write_text("\n".join(names))
        for split, split_rows in rows.items():
            lines = [f"{row[0]}\t{row[column]}\tc{split}{i}" for i, row in enumerate(split_rows)]
            (root / folder / f"{split}.tsv").write_text("\n".join(lines) + "\n")
    return root
