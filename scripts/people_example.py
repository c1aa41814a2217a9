"""The README's multi-person example: a generated clip of three drawn faces, the middle one
speaking, analysed; prints the CLI table and a JSON excerpt and writes the plot.

    PYTHONPATH=src python scripts/people_example.py [--out docs/screenshots/people-timeline.png]

The faces are `make_face_image` drawings (no dataset images in the repository); their mouths
open with speech-like audio through `emofusion.media.scenes.make_people_clip`.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from emofusion.analysis import Analyzer
from emofusion.cli.analyze import print_table
from emofusion.media.scenes import make_people_clip
from emofusion.media.synth import make_face_image
from emofusion.plot import save_timeline


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("docs/screenshots/people-timeline.png"))
    args = ap.parse_args()
    faces = [make_face_image(160, background=b) for b in (60, 110, 160)]
    with tempfile.TemporaryDirectory() as tmp:
        clip = make_people_clip(Path(tmp) / "three.mp4", faces, speaker=1, duration=8.0, face_size=150)
        result = Analyzer("default", transcribe="off").analyze(clip).to_dict()
        save_timeline(result, args.out, source=str(clip))
    print_table(result)
    person = next(p for p in result["people"] if p["summary"]["speaking_windows"])
    excerpt = {"speaker": result["segments"][0]["speaker"], "person": {**person, "thumbnail": person["thumbnail"][:40] + "...",
                                                                      "windows": person["windows"][:1]},
               "media.people": result["media"]["people"]}
    print(json.dumps(excerpt, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
