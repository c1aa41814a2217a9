"""Face tracker settings against a full-frame detection in every frame, on real faces in motion.

    python benchmarks/bench_tracker.py [--clips 60] [--seed 0] [--candidate "track_face_px=56,track_min=0.6,track_max=1.6"]
                                       [--data ../shared/data] [--out benchmarks/results]

The analysis samples frames at 2 per second and follows the face between full-frame detections
(`emofusion.media.faces.FaceTracker`): a tracked frame costs a detection in a small region instead of a
whole-frame pass. A cheaper region search changes which boxes are found; this measures by how
much, with faces the face net was not trained on: each clip is 20 sampled frames (10 s at 2 fps)
of 640x360 grayscale, the size the pipeline samples a 720p video at, showing one FER-2013 `val`
face (48x48, upscaled to 50-180 px) that drifts with momentum and changes size over a smooth
textured background (seeded). For each setting, in one run:
  - faces found in the 20 x clips frames, and the box's IoU with the every-frame detection's box
    where both found one (median, 10th percentile);
  - the face net's answer per frame and per clip (mean of the frames' probabilities), as the
    share equal to the every-frame detection's answer, and the clip answer's accuracy against the
    face's FER label;
  - detection CPU time (this thread, one OpenCV thread) per clip, and per tracked-frame search.
Writes tracker.json and tracker.md under --out. Needs FER-2013 under --data (skipped without).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np
import torch

from emofusion.data import default_data_root, get_dataset
from emofusion.media.faces import FaceTracker
from emofusion.features import crop_face, normalize_faces
from emofusion.analysis import Analyzer

FRAMES_PER_CLIP = 20
HEIGHT, WIDTH = 360, 640
# name -> FaceTracker keyword arguments; "every frame" is the reference
SETTINGS: dict[str, dict[str, Any]] = {
    "every frame (reference)": {"redetect_every": 1},
    "default": {},
    "face at 56 px, sizes 0.6-1.6": {"track_face_px": 56, "track_min": 0.6, "track_max": 1.6},
    "face at 40 px": {"track_face_px": 40},
    "margin 0.35": {"track_margin": 0.35},
}


def parse_candidate(text: str) -> dict[str, Any]:
    """"track_face_px=56,track_min=0.6" -> keyword arguments of FaceTracker."""
    out: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep or key not in {"track_margin", "track_face_px", "track_min", "track_max", "redetect_every"}:
            raise SystemExit(f"bad --candidate part {part!r}: use track_margin|track_face_px|track_min|track_max|"
                             "redetect_every=NUMBER, comma-separated")
        out[key] = int(value) if key == "redetect_every" else float(value)
    return out


def make_clips(faces: list, n: int, seed: int) -> list[tuple[str, list[np.ndarray]]]:
    """(label, 20 gray frames) per clip: one face moving over a smooth textured background."""
    rng = np.random.default_rng(seed)
    clips = []
    for _ in range(n):
        item = faces[int(rng.integers(len(faces)))]
        face = cv2.imread(str(item.path), cv2.IMREAD_GRAYSCALE)
        side = float(rng.uniform(60, 160))
        cx, cy = rng.uniform(0.3, 0.7) * WIDTH, rng.uniform(0.35, 0.65) * HEIGHT
        speed = rng.uniform(0.0, 0.25)  # step noise, in face sides per sampled frame
        vx = vy = 0.0
        coarse = rng.integers(40, 200, size=(9, 16)).astype(np.float32)
        background = cv2.resize(coarse, (WIDTH, HEIGHT), interpolation=cv2.INTER_CUBIC)
        background = np.clip(background + rng.normal(0, 6, size=(HEIGHT, WIDTH)), 0, 255).astype(np.uint8)
        frames = []
        for _ in range(FRAMES_PER_CLIP):
            vx = 0.7 * vx + rng.normal(0, speed * side)
            vy = 0.7 * vy + rng.normal(0, speed * side * 0.5)
            cx = float(np.clip(cx + vx, side, WIDTH - side))
            cy = float(np.clip(cy + vy, side * 0.7, HEIGHT - side * 0.7))
            side = float(np.clip(side * math.exp(rng.normal(0, 0.05)), 50, 180))
            s = int(side)
            frame = background.copy()
            x0, y0 = int(cx - s / 2), int(cy - s / 2)
            frame[y0 : y0 + s, x0 : x0 + s] = cv2.resize(face, (s, s), interpolation=cv2.INTER_CUBIC)
            frames.append(frame)
        clips.append((item.label, frames))
    return clips


def track(clips, make: Callable[[], FaceTracker]) -> dict[str, Any]:
    """Boxes per clip and frame, detection CPU time per clip, tracked searches and their time."""
    boxes, full, tracked, searches = [], 0.0, 0.0, 0
    for _, frames in clips:
        tracker = make()
        found = []
        for frame in frames:
            start = time.thread_time()
            box, _ = tracker.find(frame)
            spent = time.thread_time() - start
            if tracker.last_searched:
                tracked += spent
                searches += 1
            else:  # a full-frame pass (maybe after a failed search)
                full += spent
            found.append(box)
        boxes.append(found)
    return {"boxes": boxes, "full_s": full, "tracked_s": tracked, "searches": searches}


def iou(a, b) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    inter = max(0, min(ax + aw, bx + bw) - max(ax, bx)) * max(0, min(ay + ah, by + bh) - max(ay, by))
    return inter / (aw * ah + bw * bh - inter)


def answers(analyzer: Analyzer, clips, boxes) -> tuple[list[list[int | None]], list[int | None]]:
    """The face net's top label per frame (None: no box) and per clip (None: no face in it)."""
    cfg = analyzer.model.config.face_preprocess
    per_frame, per_clip = [], []
    for (_, frames), clip_boxes in zip(clips, boxes):
        crops = [crop_face(f, b, cfg) for f, b in zip(frames, clip_boxes) if b is not None]
        if not crops:
            per_frame.append([None] * len(frames))
            per_clip.append(None)
            continue
        probs = analyzer.model.face_probs(normalize_faces(np.stack(crops), cfg))
        tops = iter(probs.argmax(1).tolist())
        per_frame.append([next(tops) if b is not None else None for b in clip_boxes])
        per_clip.append(int(probs.mean(0).argmax()))
    return per_frame, per_clip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--candidate", action="append", default=[], help="FaceTracker settings to add (repeatable)")
    ap.add_argument("--data", default=str(default_data_root()))
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = ap.parse_args()
    if args.clips < 1:
        raise SystemExit("--clips must be >= 1")
    settings = dict(SETTINGS)
    for text in args.candidate:
        settings[text] = parse_candidate(text)
    fer = Path(args.data) / "fer2013"
    if not (fer / "val").is_dir():
        print(f"skipped: no FER-2013 val under {fer}", file=sys.stderr)
        return
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    analyzer = Analyzer("default", modalities=["face"])
    face_path = analyzer.runner.face
    assert face_path is not None
    labels = list(analyzer.model.labels)
    faces = get_dataset("fer2013").scan(fer, "val").items
    clips = make_clips(faces, args.clips, args.seed)
    truth = [labels.index(label) for label, _ in clips]
    runs = {}
    for name, kwargs in settings.items():
        try:
            make = (lambda kw=kwargs: FaceTracker(face_path.detector, detect_max_side=face_path.detect_side, **kw))
            make()
        except (TypeError, ValueError) as exc:
            raise SystemExit(f"setting {name!r}: {exc}") from None
        runs[name] = track(clips, make)
        print(f"{name}: tracked", flush=True)
    ref_name = next(iter(settings))
    ref_frames, ref_clips = answers(analyzer, clips, runs[ref_name]["boxes"])
    frames_total = len(clips) * FRAMES_PER_CLIP
    rows = []
    for name, run in runs.items():
        per_frame, per_clip = answers(analyzer, clips, run["boxes"])
        pairs = [(b, r) for bb, rr in zip(run["boxes"], runs[ref_name]["boxes"]) for b, r in zip(bb, rr)
                 if b is not None and r is not None]
        ious = [iou(b, r) for b, r in pairs]
        frame_pairs = [(a, r) for aa, rr in zip(per_frame, ref_frames) for a, r in zip(aa, rr)
                       if a is not None and r is not None]
        rows.append({
            "setting": name,
            "tracker": settings[name],
            "faces_found": sum(b is not None for bb in run["boxes"] for b in bb),
            "frames": frames_total,
            "iou_median": statistics.median(ious) if ious else None,
            "iou_p10": float(np.percentile(ious, 10)) if ious else None,
            "frame_answers_as_reference": (sum(a == r for a, r in frame_pairs) / len(frame_pairs)) if frame_pairs else None,
            "clip_answers_as_reference": sum(a == r for a, r in zip(per_clip, ref_clips)) / len(clips),
            "clip_accuracy": sum(a == t for a, t in zip(per_clip, truth)) / len(clips),
            "detect_ms_per_clip": 1000 * (run["full_s"] + run["tracked_s"]) / len(clips),
            "tracked_searches": run["searches"],
            "ms_per_tracked_search": (1000 * run["tracked_s"] / run["searches"]) if run["searches"] else None,
        })
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    meta = {
        "machine": f"{platform.machine()}, {platform.python_version()}, torch {torch.__version__}, OpenCV {cv2.__version__}",
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "clips": len(clips), "seed": args.seed, "model": f"{analyzer.model.config.name} {analyzer.model.config.version}",
    }
    (out / "tracker.json").write_text(json.dumps({**meta, "rows": rows}, indent=2) + "\n")

    def f(v, fmt):
        return "-" if v is None else format(v, fmt)

    lines = [
        "# Face tracker settings against a full-frame detection in every frame",
        "",
        f"Machine: {meta['machine']}, {meta['date']}. {len(clips)} clips x {FRAMES_PER_CLIP} sampled frames "
        f"(640x360 gray), one FER-2013 `val` face each, moving; seed {args.seed}; model {meta['model']}. "
        "See benchmarks/bench_tracker.py. Detection CPU time: one thread, this run.",
        "",
        "| setting | faces found | box IoU with reference: median / 10th pct | frame answers = reference "
        "| clip answers = reference | clip accuracy (FER label) | detection ms per clip | tracked searches | ms per search |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['setting']} | {r['faces_found']} / {r['frames']} | {f(r['iou_median'], '.3f')} / {f(r['iou_p10'], '.3f')} "
            f"| {f(r['frame_answers_as_reference'], '.3f')} | {r['clip_answers_as_reference']:.3f} | {r['clip_accuracy']:.3f} "
            f"| {r['detect_ms_per_clip']:.1f} | {r['tracked_searches']} | {f(r['ms_per_tracked_search'], '.2f')} |"
        )
    lines.append("")
    (out / "tracker.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
