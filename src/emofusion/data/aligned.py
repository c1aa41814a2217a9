"""A generated audio-visual dataset whose classes need both modalities.

Each class is a pair of cues: the picture says which half of the label table the class is
in (a bright square in the top or the bottom half of the frame) and the sound says which
member of that half (a low or a high tone). Each cue is flipped for a share of the clips
and drowned in noise, so neither modality alone can name more than about half the classes,
while the two together can: fusion has something to learn that neither modality has.

    python -m emofusion.data.aligned OUT_DIR [--per-class 40] [--speakers 8] [--seed 0]

writes OUT_DIR/clip_XXXX.mp4 (H.264 + AAC) and OUT_DIR/manifest.csv (path, label, speaker),
which the `manifest` dataset reader reads; hold speakers out for validation.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

ALIGNED_LABELS = ("neutral", "happy", "sad", "angry")
TONES_HZ = (330.0, 660.0)


def aligned_cues(label_index: int) -> tuple[int, int]:
    """(visual cue, audio cue) of a class: the half of the label table and the member in it."""
    return label_index // 2, label_index % 2


def _frames(cue: int, rng: np.random.Generator, n: int, size: int, noise: float) -> np.ndarray:
    frames = rng.normal(110.0, noise, size=(n, size, size, 3))
    side = size // 3
    x = int(rng.integers(0, size - side + 1))
    top = 0 if cue == 0 else size - side
    y = top + int(rng.integers(-2, 3))
    y = min(max(y, 0), size - side)
    frames[:, y : y + side, x : x + side, :] += 70.0
    return np.clip(frames, 0, 255).astype(np.uint8)


def _sound(cue: int, rng: np.random.Generator, seconds: float, rate: int, noise: float) -> np.ndarray:
    t = np.arange(int(round(seconds * rate))) / rate
    f = TONES_HZ[cue] * float(rng.uniform(0.95, 1.05))
    x = 0.25 * np.sin(2 * np.pi * f * t + float(rng.uniform(0, 2 * np.pi)))
    x = x + rng.normal(0.0, noise, size=t.shape)
    return np.clip(x, -1, 1).astype(np.float32)


def make_aligned_dataset(
    out_dir: str | Path,
    *,
    per_class: int = 40,
    speakers: int = 8,
    seed: int = 0,
    seconds: float = 1.0,
    fps: int = 8,
    size: int = 32,
    flip: float = 0.1,
    video_noise: float = 40.0,
    audio_noise: float = 0.3,
) -> Path:
    """Write the clips and their manifest under `out_dir`; return the manifest's path.

    `flip`: the share of clips whose visual cue (and, independently, audio cue) points to
    the wrong half / member. Speakers are assigned round-robin within each class, so every
    speaker has every class.
    """
    from ..media.synth import make_clip

    if per_class < 1 or speakers < 1:
        raise ValueError("per_class and speakers must be >= 1")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    n_frames = int(round(seconds * fps))
    k = 0
    for c, label in enumerate(ALIGNED_LABELS):
        visual, audio = aligned_cues(c)
        for i in range(per_class):
            v = 1 - visual if rng.random() < flip else visual
            a = 1 - audio if rng.random() < flip else audio
            path = out / f"clip_{k:04d}.mp4"
            make_clip(path, duration=seconds, width=size, height=size, fps=fps, sample_rate=16000,
                      frames=_frames(v, rng, n_frames, size, video_noise),
                      audio=_sound(a, rng, seconds, 16000, audio_noise))
            rows.append({"path": path.name, "label": label, "speaker": f"spk{i % speakers:02d}"})
            k += 1
    manifest = out / "manifest.csv"
    with manifest.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["path", "label", "speaker"])
        writer.writeheader()
        writer.writerows(rows)
    return manifest


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir")
    parser.add_argument("--per-class", type=int, default=40)
    parser.add_argument("--speakers", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(make_aligned_dataset(args.out_dir, per_class=args.per_class, speakers=args.speakers, seed=args.seed))


if __name__ == "__main__":
    main()
