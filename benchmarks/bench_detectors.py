"""YuNet against the Haar cascade on frames built from real faces: recall, false positives, speed.

    python benchmarks/bench_detectors.py [--frames 40] [--seed 0] [--data ../shared/data] [--out benchmarks/results]

Every frame is 640x360 grayscale (the size the analysis samples a 720p video at) over one of four
backdrops (flat, gradient, blurred-noise texture, clutter of boxes, ellipses and lines), with
FER-2013 `val` faces (48x48 crops of real people; the face net never trained on them) blended in
under a soft oval mask by `emofusion.media.synth.place_face`. One condition changes at a time
from the reference (one 96 px upright face, normal light):

- size: 24, 32, 48, 64, 96, 160 px faces;
- pose: turned 20 and 35 degrees either way, mirrored, partly outside the frame (a third cut off);
- light: dark (gamma 2.2), bright (gain 1.6), low contrast (gain 0.5 around mid-grey);
- several faces: 3 and 6 faces of 64-120 px per frame;
- no face at all: the backdrops alone (only false positives are possible).

Both detectors see the same frames, downscaled to each of --sides (the analysis detects at 480). A true face is found when a detection's centre lies within its square's middle 60% and
the detection's height is 0.5-1.6 times the square's side; every other detection is a false
positive. Each detector's time is the median per frame, one OpenCV thread, measured in the same
run. Writes detectors.json and detectors.md under --out. Needs FER-2013 (skipped without).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from bench_analyze import machine_info, machine_line
from emofusion.data import default_data_root
from emofusion.media.faces import FaceDetector
from emofusion.media.scenes import BACKGROUNDS, background, place_face

W, H = 640, 360
REFERENCE = {"size": 96, "angle": 0.0, "flip": False, "gain": 1.0, "gamma": 1.0, "edge": False, "count": 1}
CONDITIONS: dict[str, dict[str, Any]] = {
    **{f"size {s} px": {"size": s} for s in (24, 32, 48, 64, 96, 160)},
    "turned +20": {"angle": 20.0}, "turned -20": {"angle": -20.0},
    "turned +35": {"angle": 35.0}, "turned -35": {"angle": -35.0},
    "mirrored": {"flip": True}, "a third outside the frame": {"edge": True},
    "dark (gamma 2.2)": {"gamma": 2.2}, "bright (gain 1.6)": {"gain": 1.6}, "low contrast": {"gain": 0.5},
    "3 faces": {"count": 3}, "6 faces": {"count": 6},
    "no face": {"count": 0},
}


def fer_faces(data: Path, count: int, rng: np.random.Generator) -> list[np.ndarray]:
    paths = sorted((data / "fer2013" / "val").glob("*/*.jpg"))
    chosen = rng.choice(len(paths), size=min(count, len(paths)), replace=False)
    return [cv2.imread(str(paths[i]), cv2.IMREAD_GRAYSCALE) for i in chosen]


def make_frame(setting: dict[str, Any], faces: list[np.ndarray], rng: np.random.Generator) -> tuple[np.ndarray, list]:
    """A frame and its true face squares."""
    frame = background(BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))], H, W, rng)
    truth = []
    count = setting["count"]
    if count == 1:
        size = setting["size"]
        if setting["edge"]:
            cx = size / 2 - size / 3 if rng.random() < 0.5 else W - size / 2 + size / 3
        else:
            cx = rng.uniform(size * 0.7, W - size * 0.7)
        cy = rng.uniform(size * 0.7, H - size * 0.7)
        low = setting["gain"] < 1
        truth.append(place_face(frame, faces[0], (cx, cy), size, angle=setting["angle"], flip=setting["flip"],
                                gain=setting["gain"], gamma=setting["gamma"]))
        if low:  # low contrast: squeeze the whole frame around mid-grey, not only darken the face
            frame[:] = np.clip(128 + (frame.astype(np.float32) - 128) * 0.5, 0, 255).astype(np.uint8)
    elif count > 1:
        # faces side by side in a row (or two), not overlapping
        cols = min(count, 3)
        for k in range(count):
            size = int(rng.integers(64, 121))
            cx = (k % cols + 0.5) * W / cols + rng.uniform(-20, 20)
            cy = (k // cols + 0.5) * H / ((count + cols - 1) // cols) + rng.uniform(-10, 10)
            truth.append(place_face(frame, faces[k % len(faces)], (cx, cy), min(size, int(H / 2 - 10) if count > 3 else size)))
    return frame, truth


def score(found: list, truth: list) -> tuple[int, int]:
    """(true faces found, false positives)."""
    used: set[int] = set()
    hits = 0
    for tx, ty, ts, _ in truth:
        for k, f in enumerate(found):
            if k in used:
                continue
            x, y, w, h = f.box
            cx, cy = x + w / 2, y + h / 2
            if abs(cx - (tx + ts / 2)) <= 0.3 * ts and abs(cy - (ty + ts / 2)) <= 0.3 * ts and 0.5 * ts <= h <= 1.6 * ts:
                used.add(k)
                hits += 1
                break
    return hits, len(found) - len(used)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=40, help="frames per condition")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", type=Path, default=None)
    ap.add_argument("--sides", default="320,480,640", help="detection sides, comma-separated")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args()
    data = args.data or default_data_root()
    if not (data / "fer2013" / "val").is_dir():
        print(f"FER-2013 not found under {data}: skipped")
        return
    cv2.setNumThreads(1)
    rng = np.random.default_rng(args.seed)
    pool = fer_faces(data, 2000, rng)
    detectors = {"yunet": FaceDetector("yunet"), "haar": FaceDetector("haar")}
    sides = sorted({int(v) for v in args.sides.split(",")})
    rows: list[dict[str, Any]] = []
    for name, change in CONDITIONS.items():
        setting = {**REFERENCE, **change}
        frames = []
        for _ in range(args.frames):
            faces = [pool[int(i)] for i in rng.choice(len(pool), size=max(1, setting["count"]), replace=False)]
            frames.append(make_frame(setting, faces, rng))
        row: dict[str, Any] = {"condition": name, "frames": len(frames), "faces": sum(len(t) for _, t in frames)}
        for det_name, det in detectors.items():
            for side in sides:
                hits = fps = 0
                times = []
                for frame, truth in frames:
                    start = time.thread_time()
                    found = det.detect(frame, max_side=side)
                    times.append(time.thread_time() - start)
                    h, f = score(found, truth)
                    hits, fps = hits + h, fps + f
                row[f"{det_name}@{side}"] = {"recall": hits / row["faces"] if row["faces"] else None,
                                             "false_positives": fps, "ms": 1000 * statistics.median(times)}
        rows.append(row)
        print(name, {k: v for k, v in row.items() if "@" in k}, flush=True)
    result = {"when": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "machine": machine_info(),
              "frames_per_condition": args.frames, "seed": args.seed, "sides": sides, "rows": rows,
              "command": " ".join(["python", "benchmarks/bench_detectors.py", *sys.argv[1:]])}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "detectors.json").write_text(json.dumps(result, indent=2))
    keys = [f"{d}@{s}" for s in sides for d in detectors]
    lines = [f"# Face detectors on frames of real faces ({result['when']})", "",
             f"Machine: {machine_line(result['machine'])}.", "",
             f"`{result['command']}`: {args.frames} frames of 640x360 per condition, FER-2013 `val` faces, seed {args.seed}.",
             "Recall (true faces found) / false positives / median ms per frame (one OpenCV thread), detection on a copy "
             "downscaled to the side given.", "",
             "| condition | faces | " + " | ".join(keys) + " |", "|---|---|" + "---|" * len(keys)]
    for row in rows:
        cells = []
        for k in keys:
            r = row[k]
            recall = "-" if r["recall"] is None else f"{r['recall']:.2f}"
            cells.append(f"{recall} / {r['false_positives']} / {r['ms']:.1f}")
        lines.append(f"| {row['condition']} | {row['faces']} | " + " | ".join(cells) + " |")
    totals = {k: (sum(r[k]["recall"] * r["faces"] for r in rows if r["faces"]) / sum(r["faces"] for r in rows),
                  sum(r[k]["false_positives"] for r in rows)) for k in keys}
    lines += ["", "All conditions together: " + "; ".join(f"{k} recall {v[0]:.3f}, {v[1]} false positives" for k, v in totals.items()) + "."]
    (args.out / "detectors.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
