"""Who is speaking, on generated clips of real faces: the mouth motion of talking and silent faces.

    PYTHONPATH=src python scripts/experiments/speaker_attribution.py [--clips 8] [--moving] [--seed 0] [--data ../shared/data]

Each clip is 8 s of 640x360 video at 15 fps with three FER-2013 `val` faces side by side (chosen
among those YuNet finds at 100 px); one of them opens its mouth with the loudness of speech-like
audio (`emofusion.media.scenes.make_people_clip`), the others keep theirs shut; a second clip per
triplet has nobody speaking on screen. With `--moving` every face sways sideways (25 px) and
bobs (15 px), each at its own phase, as people's heads do. Prints the mouth motion per window
(`analysis.face.mouth_motion` between sampled frames, averaged over the window) of talking and
silent faces, and how often the windows' speaker (or off-screen) was told right, wrong, or not
told (a visible head moved: `analysis.face.MAX_HEAD_SHIFT`) at several thresholds, the shipped
`analysis.people.SPEAKING_MOTION` marked.
"""

from __future__ import annotations

import argparse
import math
import tempfile
from pathlib import Path

import numpy as np

from emofusion.analysis import Analyzer
from emofusion.analysis.people import OFF_SCREEN, SPEAKING_MOTION, speaker_among
from emofusion.data import default_data_root
from emofusion.media.scenes import detectable_faces, make_people_clip

THRESHOLDS = (0.01, 0.02, 0.03, 0.05, 0.08, 0.10)


def told(windows: list[tuple[str, dict[str, float | None]]], threshold: float) -> tuple[int, int]:
    """(right, not told) over (expected speaker, {person: motion or None}) windows, with the
    analysis's rule (`analysis.people.speaker_among`) at `threshold`."""
    guesses = [(expected, speaker_among(motions, threshold)) for expected, motions in windows]
    return sum(guess == expected for expected, guess in guesses), sum(guess is None for _, guess in guesses)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=8, help="face triplets")
    ap.add_argument("--moving", action="store_true", help="heads sway and bob")
    ap.add_argument("--seed", type=int, default=0, help="which triplets (an offset into the faces) and audio")
    ap.add_argument("--data", type=Path, default=None)
    args = ap.parse_args()
    data = args.data or default_data_root()
    pool = detectable_faces(sorted((data / "fer2013" / "val").glob("*/*.jpg")), 3 * args.clips * (args.seed + 1) + 3)
    faces = pool[3 * args.clips * args.seed :][: 3 * args.clips]
    analyzer = Analyzer("default", transcribe="off", calibrate="off")
    talking, silent, windows = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for c in range(args.clips):
            triplet = faces[3 * c : 3 * c + 3]
            positions = None
            if args.moving:
                positions = [(lambda t, k=k: ((k + 0.5) * 640 / 3 + 25 * math.sin(1.3 * t + k),
                                              180 + 15 * math.sin(2.1 * t + 2 * k))) for k in range(3)]
            for speaker in (c % 3, None):
                clip = make_people_clip(Path(tmp) / f"c{c}.mp4", triplet, speaker=speaker, seed=args.seed * 100 + c,
                                        positions=positions)
                d = analyzer.analyze(clip).to_dict()
                # people are told apart by where they stand: the speaker's face is at x ~ (speaker + 0.5) * 640 / 3
                by_column = {p["id"]: int((p["box"][0] + p["box"][2] / 2) // (640 / 3)) for p in d["people"]}
                expected = next((pid for pid, col in by_column.items() if col == speaker), OFF_SCREEN)
                per_window: dict[float, dict[str, float | None]] = {}
                for p in d["people"]:
                    for w in p["windows"]:
                        per_window.setdefault(w["start"], {})[p["id"]] = w["mouth_motion"]
                        if w["mouth_motion"] is not None:
                            (talking if by_column[p["id"]] == speaker else silent).append(w["mouth_motion"])
                windows += [(expected, per_window.get(s["start"], {})) for s in d["segments"] if s["voice"] is not None]
    t, s = np.array(talking), np.array(silent)
    print(f"{'moving' if args.moving else 'still'} heads, {args.clips} triplets, seed {args.seed}")
    for name, values in (("talking", t), ("silent", s)):
        if len(values):
            print(f"{name} faces: {len(values)} windows measured, mouth motion median {np.median(values):.4f}, "
                  f"10th / 90th percentile {np.percentile(values, 10):.4f} / {np.percentile(values, 90):.4f}")
        else:
            print(f"{name} faces: no window measured")
    for threshold in sorted({*THRESHOLDS, SPEAKING_MOTION}):
        right, unknown = told(windows, threshold)
        mark = "  <- SPEAKING_MOTION" if threshold == SPEAKING_MOTION else ""
        print(f"threshold {threshold:.3f}: of {len(windows)} voiced windows, {right} right ({right / max(1, len(windows)):.3f}), "
              f"{len(windows) - right - unknown} wrong, {unknown} not told{mark}")


if __name__ == "__main__":
    main()
