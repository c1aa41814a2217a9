"""End-to-end analysis speed at 480p / 720p / 1080p, against decoding every frame and against a
seed-style reference pipeline, all measured in one run.

    python benchmarks/bench_analyze.py [--repeats 3] [--reference-repeats N] [--only 480p-3s,720p-10s]
                                       [--no-reference] [--no-cold] [--out benchmarks/results]

Clips (generated once into benchmarks/.cache/, ignored by git): 3 s and 10 s at 854x480,
1280x720 and 1920x1080, 30 fps, H.264 (x264 ultrafast, encoder-default keyframe interval)
+ AAC 16 kHz mono, a synthetic face (side = half the frame height) and a speech-like tone;
the 10 s 720p clip once more as x264's default preset (`medium`: B-frames, CABAC,
deblocking; what `ffmpeg -i in out.mp4` writes), which costs more to decode than ultrafast;
and once with three faces (each a third of the frame height) side by side.
Every analysis gets a one-line transcript, so the face, voice and text nets all run.

For each clip, interleaved over `--repeats` rounds (medians reported):
  - decode_all: PyAV decoding every video frame (no conversion) with FFmpeg's frame + slice
    threads, decode_all_1t: the same in one thread -- the faster of the two is the floor any
    pipeline that touches every frame pays before a model runs, and the ratio's denominator;
    decode_all_rgb: threaded decoding + RGB conversion of each frame;
  - analyze: `Analyzer().analyze(path, text=...)` warm, in-process, bundled model;
  - breakdown: a second `analyze` run with the Analyzer's internal calls wrapped in timers
    (monkeypatched here only): the frame iterator (decode + sampling), the face tracker /
    detector (+ crop), the face net (+ normalisation), the audio reader, VAD, log-mel and
    voice net, the text net, the fusion. The frame decoding and face detection run in two
    worker threads beside the nets, so the parts overlap and need not add up to the wall time;
  - reference: `seed_reference.SeedReference` (see that module: OpenCV decodes every frame,
    audio through temporary WAVs, R3D-18 + BERT-base + mel CNN per window, batch size 1,
    random weights) on the same clip with the same torch threads.
Then the CLI's cold start (`emofusion --help`, a whole `emofusion analyze` in a new process) on
the 10 s 720p clip (or the first clip chosen).
Writes analyze.json and analyze.md under --out.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable

import av
import numpy as np

from emofusion.media.synth import make_clip, make_face_image

HERE = Path(__file__).parent
CACHE = HERE / ".cache"
RESOLUTIONS = {"480p": (854, 480), "720p": (1280, 720), "1080p": (1920, 1080)}
DURATIONS = (3, 10)
FPS = 30
# name: resolution-duration[-x264 preset]; without a preset, ultrafast
CLIP_NAMES = [f"{r}-{d}s" for d in DURATIONS for r in RESOLUTIONS] + ["720p-10s-medium", "720p-10s-3faces"]
TRANSCRIPT = "I honestly cannot believe you did that, this is the best news I have heard all year"

# breakdown rows: key -> label
PARTS = {
    "decode_sample": "decode + frame sampling (`iter_frames`, decode thread)",
    "face_detect": "face detection (`FaceDetector.detect`; detection thread)",
    "face_align": "face crops, aligned on the eyes (`align_face`; detection thread)",
    "face_track": "tracking (`FaceTracks.update`; detection thread)",
    "face_mouth": "mouth watching (`eye_framed` + `mouth_motion`; detection thread)",
    "face_net": "face net (`normalize_faces` + `model.face_probs`)",
    "voice": "voice total (audio read + VAD + log-mel + voice net + functionals)",
    "voice_read": "  audio read (`AudioWindowReader.read`)",
    "voice_vad": "  VAD (`speech_fraction`)",
    "voice_mel": "  log-mel (`log_mel`)",
    "voice_net": "  voice net (`model.voice_probs`)",
    "voice_functionals": "  acoustic functionals + their classifier (`model.with_voice_functionals`)",
    "text": "text (`model.text_probs`, sentence encoder + heads)",
    "fusion": "fusion (`fuse`)",
}


# ----------------------------------------------------------------------------- clips
def clip_spec(name: str) -> tuple[str, str, str | None]:
    """(resolution, duration, x264 preset or None for ultrafast) of a clip name ("-3faces": three
    faces side by side, ultrafast)."""
    res, dur, *preset = name.split("-")
    return res, dur, (preset[0] if preset else None)


def clip_faces(name: str, height: int) -> np.ndarray:
    """The face image pasted in the middle of every frame: one face of half the frame's height,
    or three of a third of it side by side."""
    if not name.endswith("-3faces"):
        return make_face_image(height // 2)
    side = height // 3
    gap = np.full((side, side // 2), 60, np.uint8)
    return np.hstack([make_face_image(side), gap, make_face_image(side), gap, make_face_image(side)])


def clip_path(name: str) -> Path:
    res, dur, preset = clip_spec(name)
    return CACHE / f"clip_{dur}_{res}{'_' + preset if preset else ''}.mp4"


def ensure_clip(name: str) -> Path:
    path = clip_path(name)
    if path.exists():
        return path
    res, dur, preset = clip_spec(name)
    width, height = RESOLUTIONS[res]
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".part.mp4")
    print(f"generating {path.name} ...", flush=True)
    encoding = {"preset": preset, "bframes": None} if preset and preset != "3faces" else {}
    make_clip(tmp, duration=float(dur.rstrip("s")), width=width, height=height, fps=FPS,
              face=clip_faces(name, height), modulate=True, **encoding)
    os.replace(tmp, path)
    return path


# ----------------------------------------------------------------------------- measures
def decode_all(path: Path, convert: bool, threads: int | None = None) -> int:
    """Decode every frame; threads None: FFmpeg's frame + slice threads (one per core), else that many."""
    n = 0
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        if threads is None:
            stream.thread_type = "AUTO"
        else:
            stream.thread_type = "SLICE"
            stream.codec_context.thread_count = threads
        for frame in container.decode(stream):
            if convert:
                frame.to_ndarray(format="rgb24")
            n += 1
    return n


def timed(fn: Callable, *args, **kwargs) -> float:
    t0 = time.perf_counter()
    fn(*args, **kwargs)
    return time.perf_counter() - t0


class Timers:
    """Seconds and calls per part, summed across threads."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {k: 0.0 for k in PARTS}
        self.calls: dict[str, int] = {k: 0 for k in PARTS}
        self._lock = threading.Lock()

    def add(self, key: str, dt: float) -> None:
        with self._lock:
            self.seconds[key] += dt
            self.calls[key] += 1

    def wrap(self, key: str, fn: Callable) -> Callable:
        def wrapper(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.add(key, time.perf_counter() - t0)

        return wrapper

    def wrap_iter(self, key: str, fn: Callable) -> Callable:
        """Time a generator function: only the time spent inside its next() calls."""

        def wrapper(*args, **kwargs):
            it = fn(*args, **kwargs)
            try:
                while True:
                    t0 = time.perf_counter()
                    try:
                        item = next(it)
                    except StopIteration:  # the time to find the end counts, not as a call
                        with self._lock:
                            self.seconds[key] += time.perf_counter() - t0
                        return
                    self.add(key, time.perf_counter() - t0)
                    yield item
            finally:
                it.close()

        return wrapper


@contextmanager
def instrumented(analyzer):
    """Wrap the Analyzer's internal calls with timers for the duration of the block."""
    import emofusion.analysis.face as face_path
    import emofusion.analysis.voice as voice_path
    import emofusion.models.emotion_model as bundle
    from emofusion.analysis.tracks import FaceTracks
    from emofusion.media.faces import FaceDetector
    from emofusion.media import AudioWindowReader

    timers = Timers()
    model = analyzer.model
    saved: list[tuple[Any, str, bool, Any]] = []

    def patch(obj: Any, name: str, new: Any) -> None:
        own = name in vars(obj)
        saved.append((obj, name, own, vars(obj).get(name)))
        setattr(obj, name, new)

    patch(face_path, "iter_frames", timers.wrap_iter("decode_sample", face_path.iter_frames))
    patch(FaceDetector, "detect", timers.wrap("face_detect", FaceDetector.detect))
    patch(face_path, "align_face", timers.wrap("face_align", face_path.align_face))
    patch(FaceTracks, "update", timers.wrap("face_track", FaceTracks.update))
    patch(face_path, "eye_framed", timers.wrap("face_mouth", face_path.eye_framed))
    patch(face_path, "mouth_motion", timers.wrap("face_mouth", face_path.mouth_motion))
    patch(face_path, "normalize_faces", timers.wrap("face_net", face_path.normalize_faces))
    patch(model, "face_probs", timers.wrap("face_net", model.face_probs))
    patch(AudioWindowReader, "read", timers.wrap("voice_read", AudioWindowReader.read))
    patch(voice_path, "speech_fraction", timers.wrap("voice_vad", voice_path.speech_fraction))
    patch(voice_path, "log_mel", timers.wrap("voice_mel", voice_path.log_mel))
    patch(model, "voice_probs", timers.wrap("voice_net", model.voice_probs))
    patch(model, "with_voice_functionals", timers.wrap("voice_functionals", model.with_voice_functionals))
    patch(model, "text_probs", timers.wrap("text", model.text_probs))
    patch(bundle, "fuse", timers.wrap("fusion", bundle.fuse))
    try:
        yield timers
    finally:
        for obj, name, own, old in reversed(saved):
            if own:
                setattr(obj, name, old)
            else:
                delattr(obj, name)
        timers.seconds["voice"] = sum(timers.seconds[k] for k in ("voice_read", "voice_vad", "voice_mel", "voice_net", "voice_functionals"))
        timers.calls["voice"] = timers.calls["voice_read"]  # windows read


# ----------------------------------------------------------------------------- machine
def machine_info() -> dict[str, Any]:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def machine_line(m: dict[str, Any]) -> str:
    return (f"{m['cpu']}, {m['cores']} cores ({m['usable_cores']} usable), torch {m['torch']} "
            f"({m['torch_threads']} threads), Python {m['python']}, {m['date']}")


# ----------------------------------------------------------------------------- report
def fmt(x: float | None, digits: int = 3) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def write_markdown(out: Path, result: dict[str, Any]) -> str:
    clips = result["clips"]
    names = list(clips)
    lines = [
        "# Analysis speed: ours vs decoding every frame vs a seed-style reference",
        "",
        f"Machine: {machine_line(result['machine'])}.",
        "",
        f"Clips: {result['clip_format']}. Every analysis gets a one-line transcript (face + voice + text; "
        f"windows {result['window']} s, hop {result['hop']} s). Medians of {result['repeats']} interleaved runs "
        f"(reference: {result['reference_repeats']}). Times in seconds.",
        "",
        "| clip | frames | windows | decode-all, FFmpeg threads | decode-all, one thread | decode-all + RGB "
        "| ours (`analyze`) | ours / decode-all (the faster) | seed-style reference | speed-up (reference / ours) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in names:
        c = clips[name]
        med = c["median_seconds"]
        lines.append(
            f"| {name} | {c['frames']} | {c['windows']} | {fmt(med['decode_all'])} | {fmt(med['decode_all_1t'])} "
            f"| {fmt(med['decode_all_rgb'])} "
            f"| {fmt(med['analyze'])} | {fmt(c['ratio_analyze_to_decode_all'], 2)} | {fmt(med.get('reference'), 2)} "
            f"| {fmt(c.get('ratio_reference_to_analyze'), 1)}{'x' if c.get('ratio_reference_to_analyze') else ''} |"
        )
    lines += [
        "",
        "## Where our time goes",
        "",
        "Seconds inside each of the Analyzer's internal calls during one instrumented `analyze` run "
        "(median over runs). Frame decoding and face detection run in worker threads *beside* the "
        "face, voice and text nets, so the parts overlap and need not add up to the wall time.",
        "",
        "| part | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for key, label in PARTS.items():
        lines.append(f"| {label} | " + " | ".join(
            f"{fmt(clips[n]['breakdown_seconds'][key])} ({clips[n]['breakdown_calls'][key]})" for n in names) + " |")
    lines.append("| wall time of the instrumented run | " + " | ".join(
        fmt(clips[n]["instrumented_wall_seconds"]) for n in names) + " |")
    lines += ["", "(calls in brackets)", ""]
    ref = result.get("reference")
    if ref:
        p = ref["params"]
        lines += [
            "## The seed-style reference",
            "",
            ref["summary"],
            f"Parameters: R3D-18 {p['r3d18']:,}, BERT-base {p['bert_base']:,}, mel CNN {p['mel_cnn']:,}, "
            f"heads {p['text_head'] + p['fusion']:,}. Same torch threads as ours.",
            "",
            "| part | " + " | ".join(names) + " |",
            "|---|" + "---|" * len(names),
        ]
        keys = next((list(clips[n]["reference_breakdown_seconds"]) for n in names
                     if clips[n].get("reference_breakdown_seconds")), [])
        for key in keys:
            lines.append(f"| {key} | " + " | ".join(
                fmt((clips[n].get("reference_breakdown_seconds") or {}).get(key), 2) for n in names) + " |")
        lines.append("")
    if result.get("cli_cold_analyze_seconds") is not None:
        lines += [
            f"## CLI cold start ({result['cli_cold_clip']})",
            "",
            "| measure | seconds |",
            "|---|---|",
            f"| `emofusion --help` | {result['cli_cold_help_seconds']:.2f} |",
            f"| `emofusion analyze` (whole run, new process, no transcript) | {result['cli_cold_analyze_seconds']:.2f} |",
            "",
        ]
    text = "\n".join(lines)
    (out / "analyze.md").write_text(text)
    return text


# ----------------------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--reference-repeats", type=int, default=None,
                    help="rounds that also run the reference (default: --repeats)")
    ap.add_argument("--only", default="", help=f"comma-separated clips among {', '.join(CLIP_NAMES)}")
    ap.add_argument("--no-reference", action="store_true", help="skip the seed-style reference")
    ap.add_argument("--no-cold", action="store_true", help="skip the CLI cold-start measurements")
    ap.add_argument("--out", default=str(HERE / "results"))
    ap.add_argument("--model", default="default")
    args = ap.parse_args()
    names = [n.strip() for n in args.only.split(",") if n.strip()] or CLIP_NAMES
    bad = [n for n in names if n not in CLIP_NAMES]
    if bad:
        ap.error(f"unknown clip {bad[0]!r}; choose from {', '.join(CLIP_NAMES)}")
    repeats = max(1, args.repeats)
    ref_repeats = 0 if args.no_reference else min(repeats, args.reference_repeats or repeats)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    import torch

    from emofusion import Analyzer

    clips = {n: ensure_clip(n) for n in names}
    analyzer = Analyzer(args.model)
    info: dict[str, dict[str, Any]] = {}
    for name, path in clips.items():  # warm-up: lazy imports, text encoder, allocator, detector
        first = analyzer.analyze(str(path), text=TRANSCRIPT)
        info[name] = {
            "windows": len(first.segments),
            "faces_found_in_windows": first.summary.windows.get("face"),
            "voice_windows": first.summary.windows.get("voice"),
            "text_windows": first.summary.windows.get("text"),
            "model": first.model,
        }
    reference = None
    if ref_repeats:
        import seed_reference

        reference = seed_reference.SeedReference(window=analyzer.window, hop=analyzer.hop,
                                                 threads=torch.get_num_threads())
        reference.analyze(str(clips[names[0]]), TRANSCRIPT)  # warm-up (the nets' shapes are the same for every clip)

    runs = {n: {"decode_all": [], "decode_all_1t": [], "decode_all_rgb": [], "analyze": [], "reference": []} for n in names}
    parts: dict[str, list[Timers]] = {n: [] for n in names}
    instrumented_wall: dict[str, list[float]] = {n: [] for n in names}
    ref_parts: dict[str, list[dict[str, float]]] = {n: [] for n in names}
    frames: dict[str, int] = {}
    for r in range(repeats):
        for name, path in clips.items():
            t0 = time.perf_counter()
            frames[name] = decode_all(path, convert=False)
            runs[name]["decode_all"].append(time.perf_counter() - t0)
            runs[name]["decode_all_1t"].append(timed(decode_all, path, False, 1))
            runs[name]["decode_all_rgb"].append(timed(decode_all, path, True))
            runs[name]["analyze"].append(timed(analyzer.analyze, str(path), text=TRANSCRIPT))
            with instrumented(analyzer) as timers:
                instrumented_wall[name].append(timed(analyzer.analyze, str(path), text=TRANSCRIPT))
            parts[name].append(timers)
            if reference is not None and r < ref_repeats:
                res = reference.analyze(str(path), TRANSCRIPT)
                runs[name]["reference"].append(res["seconds"]["total"])
                ref_parts[name].append(res["seconds"])
            print(f"round {r + 1}/{repeats} {name}: decode-all {runs[name]['decode_all'][-1]:.3f} s, "
                  f"ours {runs[name]['analyze'][-1]:.3f} s"
                  + (f", reference {runs[name]['reference'][-1]:.2f} s" if runs[name]["reference"][r:] else ""),
                  flush=True)

    results: dict[str, Any] = {}
    for name in names:
        med = {k: (statistics.median(v) if v else None) for k, v in runs[name].items()}
        # the floor: decoding every frame the faster way (FFmpeg's threads or one thread)
        floor = min(med["decode_all"], med["decode_all_1t"])
        res, dur, preset = clip_spec(name)
        width, height = RESOLUTIONS[res]
        entry: dict[str, Any] = {
            "width": width, "height": height, "duration": float(dur.rstrip("s")), "fps": FPS,
            "x264_preset": preset or "ultrafast",
            "frames": frames[name], **info[name],
            "median_seconds": med,
            "all_seconds": runs[name],
            "decode_floor": floor,
            "ratio_analyze_to_decode_all": med["analyze"] / floor,
            "ratio_analyze_to_decode_all_threaded": med["analyze"] / med["decode_all"],
            "ratio_analyze_to_decode_all_rgb": med["analyze"] / med["decode_all_rgb"],
            "ratio_reference_to_analyze": (med["reference"] / med["analyze"]) if med["reference"] else None,
            "breakdown_seconds": {k: statistics.median(t.seconds[k] for t in parts[name]) for k in PARTS},
            "breakdown_calls": {k: parts[name][-1].calls[k] for k in PARTS},
            "instrumented_wall_seconds": statistics.median(instrumented_wall[name]),
        }
        if ref_parts[name]:
            entry["reference_breakdown_seconds"] = {
                k: statistics.median(p[k] for p in ref_parts[name]) for k in ref_parts[name][0]}
        results[name] = entry

    result: dict[str, Any] = {
        "clip_format": (f"{FPS} fps H.264 (x264 ultrafast, or the preset named after the clip, encoder-default "
                        "keyframe interval) + AAC 16 kHz mono, generated: synthetic face (side = frame height / 2), "
                        "speech-like tone"),
        "transcript": TRANSCRIPT,
        "window": analyzer.window,
        "hop": analyzer.hop,
        "repeats": repeats,
        "reference_repeats": ref_repeats,
        "model": info[names[0]]["model"],
        "clips": results,
        "breakdown_note": "seconds inside each internal call during one instrumented analyze run; decoding and face "
                          "detection run in worker threads beside the nets, so parts overlap and need not add up",
        "machine": machine_info(),
    }
    if reference is not None:
        import seed_reference

        result["reference"] = {
            "summary": ("OpenCV decodes every frame (BGR->RGB), the audio goes to a temporary 16 kHz WAV; then the "
                        "whole clip and each window (frames decoded again from a seek, audio decoded again through a "
                        "temporary WAV) go through R3D-18 (16 frames at 112x112), a mel CNN and BERT-base (128 "
                        "tokens), batch size 1, late-fusion head; random weights. See benchmarks/seed_reference.py."),
            "params": reference.param_counts(),
            "module": seed_reference.__name__,
        }
    result["machine_line"] = machine_line(result["machine"])

    if not args.no_cold:
        cold = "720p-10s" if "720p-10s" in clips else names[0]
        exe = [sys.executable, "-m", "emofusion.cli"]
        result["cli_cold_clip"] = cold
        result["cli_cold_help_seconds"] = timed(subprocess.run, exe + ["--help"], stdout=subprocess.DEVNULL, check=True)
        result["cli_cold_analyze_seconds"] = timed(
            subprocess.run, exe + ["analyze", str(clips[cold]), "--model", args.model, "--json", os.devnull, "-q"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)

    (out / "analyze.json").write_text(json.dumps(result, indent=2) + "\n")
    print(write_markdown(out, result))


if __name__ == "__main__":
    main()
