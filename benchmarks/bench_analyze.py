"""End-to-end analysis speed against decoding every frame of the same clip, measured in one run.

    python benchmarks/bench_analyze.py [--repeats 3] [--out benchmarks/results]

Generates a 10 s 1280x720 30 fps H.264 + AAC clip (synthetic face, speech-like audio), then
times, interleaved over several repeats (the median is reported):
  - decode_all: PyAV decoding every video frame (no conversion), the floor a seed-style
    pipeline pays before any model runs;
  - decode_all_rgb: decoding every frame and converting each to RGB, what such pipelines do;
  - analyze: `Analyzer().analyze(path)` warm, in-process, with the bundled model
    (face + voice; no transcript), including its own decoding, face detection and models;
and the CLI's cold start (`emofusion --help` and a full `emofusion analyze` in a new process).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import av

from emofusion.media.synth import make_clip, make_face_image


def decode_all(path: Path, convert: bool) -> int:
    n = 0
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            if convert:
                frame.to_ndarray(format="rgb24")
            n += 1
    return n


def timed(fn, *args) -> float:
    t0 = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t0


def machine() -> str:
    import torch

    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads), Python {platform.python_version()}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    ap.add_argument("--model", default="default")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    clip = Path(__file__).parent / ".cache" / "clip_10s_720p.mp4"
    if not clip.exists():
        clip.parent.mkdir(parents=True, exist_ok=True)
        make_clip(clip, duration=10.0, width=1280, height=720, fps=30, face=make_face_image(360), modulate=True)

    from emofusion import Analyzer

    analyzer = Analyzer(args.model)
    first = analyzer.analyze(str(clip))  # warm-up: lazy imports, allocator, detector
    runs: dict[str, list[float]] = {"decode_all": [], "decode_all_rgb": [], "analyze": []}
    frames = 0
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        frames = decode_all(clip, convert=False)
        runs["decode_all"].append(time.perf_counter() - t0)
        runs["decode_all_rgb"].append(timed(decode_all, clip, True))
        runs["analyze"].append(timed(analyzer.analyze, str(clip)))
    med = {k: statistics.median(v) for k, v in runs.items()}

    exe = [sys.executable, "-m", "emofusion.cli"]
    t0 = time.perf_counter()
    subprocess.run(exe + ["--help"], stdout=subprocess.DEVNULL, check=True)
    cold_help = time.perf_counter() - t0
    t0 = time.perf_counter()
    subprocess.run(exe + ["analyze", str(clip), "--model", args.model, "--json", os.devnull, "-q"],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    cold_analyze = time.perf_counter() - t0

    result = {
        "clip": "10 s, 1280x720, 30 fps, H.264 + AAC (generated)",
        "frames": frames,
        "model": first.model,
        "windows": len(first.segments),
        "faces_found_in_windows": first.summary.windows.get("face"),
        "median_seconds": med,
        "all_seconds": runs,
        "ratio_analyze_to_decode_all": med["analyze"] / med["decode_all"],
        "ratio_analyze_to_decode_all_rgb": med["analyze"] / med["decode_all_rgb"],
        "cli_cold_help_seconds": cold_help,
        "cli_cold_analyze_seconds": cold_analyze,
        "machine": machine(),
    }
    (out / "analyze.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        "# Analysis speed vs decoding every frame",
        "",
        f"Machine: {result['machine']}. Clip: {result['clip']}, {frames} frames. Median of {args.repeats} interleaved runs.",
        "",
        "| measure | seconds |",
        "|---|---|",
        f"| PyAV decode every frame | {med['decode_all']:.3f} |",
        f"| PyAV decode + RGB-convert every frame | {med['decode_all_rgb']:.3f} |",
        f"| `Analyzer().analyze()` warm (face + voice, {len(first.segments)} windows) | {med['analyze']:.3f} |",
        f"| ratio analyze / decode-all | {result['ratio_analyze_to_decode_all']:.2f} |",
        f"| ratio analyze / decode+convert-all | {result['ratio_analyze_to_decode_all_rgb']:.2f} |",
        f"| CLI cold start: `emofusion --help` | {cold_help:.2f} |",
        f"| CLI cold start: `emofusion analyze` (whole run) | {cold_analyze:.2f} |",
        "",
    ]
    (out / "analyze.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
