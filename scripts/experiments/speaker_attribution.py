"""Who is speaking, on generated clips of real faces: the mouth motion of talking and still faces.

    PYTHONPATH=src python scripts/experiments/speaker_attribution.py [--clips 6] [--data ../shared/data]

Each clip is 8 s of 640x360 video at 15 fps with three FER-2013 `val` faces side by side (chosen
among those YuNet finds at 120 px); one of them opens its mouth with the loudness of speech-like
audio (`emofusion.media.synth.make_people_clip`), the others stay still; a last clip per triplet
has nobody speaking on screen. Prints the mouth motion (`analysis.face.mouth_motion`, per window)
of talking and still faces, and how often the windows' speaker was told right with
`analysis.people.SPEAKING_MOTION`.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from emofusion.analysis import Analyzer
from emofusion.analysis.people import OFF_SCREEN, SPEAKING_MOTION
from emofusion.data import default_data_root
from emofusion.media.scenes import detectable_faces, make_people_clip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=6, help="face triplets")
    ap.add_argument("--data", type=Path, default=None)
    args = ap.parse_args()
    data = args.data or default_data_root()
    faces = detectable_faces(sorted((data / "fer2013" / "val").glob("*/*.jpg")), 3 * args.clips * 3)[::3][: 3 * args.clips]
    analyzer = Analyzer("default", transcribe="off", calibrate="off")
    talking, still, right, windows = [], [], 0, 0
    with tempfile.TemporaryDirectory() as tmp:
        for c in range(args.clips):
            triplet = faces[3 * c : 3 * c + 3]
            for speaker in (c % 3, None):
                clip = make_people_clip(Path(tmp) / f"c{c}.mp4", triplet, speaker=speaker, seed=c)
                d = analyzer.analyze(clip).to_dict()
                # people are told apart by where they stand: the speaker's face is at x ~ (speaker + 0.5) * 640 / 3
                by_column = {p["id"]: int((p["box"][0] + p["box"][2] / 2) // (640 / 3)) for p in d["people"]}
                for p in d["people"]:
                    for w in p["windows"]:
                        if w["mouth_motion"] is not None:
                            (talking if by_column[p["id"]] == speaker else still).append(w["mouth_motion"])
                expected = next((pid for pid, col in by_column.items() if col == speaker), OFF_SCREEN)
                for s in d["segments"]:
                    if s["voice"] is not None:
                        windows += 1
                        right += s["speaker"] == expected
    t, s = np.array(talking), np.array(still)
    print(f"talking faces: {len(t)} windows, mouth motion median {np.median(t):.4f}, 5th percentile {np.percentile(t, 5):.4f}, "
          f"below {SPEAKING_MOTION}: {np.mean(t < SPEAKING_MOTION):.3f}")
    print(f"still faces:   {len(s)} windows, median {np.median(s):.4f}, 95th percentile {np.percentile(s, 95):.4f}, "
          f"max {s.max():.4f}, at or above {SPEAKING_MOTION}: {np.mean(s >= SPEAKING_MOTION):.3f}")
    print(f"speaker told right in {right} of {windows} voiced windows ({right / max(1, windows):.3f})")


if __name__ == "__main__":
    main()
