"""What transcription costs an analysis: a 10 s 720p clip with speech, transcription on and off,
against decoding all its frames, all measured in one run.

    python benchmarks/bench_transcribe.py [--repeats 5] [--out benchmarks/results]

Clips (generated once into benchmarks/.cache/): 10 s, 1280x720, 30 fps, H.264 + AAC 16 kHz,
the synthetic face, and 10 s of espeak-ng speech (benchmarks/bench_asr.py's sentences with
0.4 s pauses); once as x264 `ultrafast` and once as x264's default preset (`medium`).

Interleaved over `--repeats` rounds (medians reported), each warm (models loaded):
  - decode_all: PyAV decoding every video frame, the faster of FFmpeg's frame + slice threads
    and one thread (benchmarks/bench_analyze.py's floor);
  - analyze off / on: `Analyzer(transcribe=...).analyze(path)`, bundled model;
  - transcription alone: the Analyzer's Transcriber over the clip's audio, no analysis.
Plus the first `on` analysis in a fresh Analyzer (the Whisper model loaded in that call).
Target (issue 17): analyse with transcription on in <= 6x the decode-all time.
Writes transcribe.json and transcribe.md under --out.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent
CACHE = HERE / ".cache"
sys.path.insert(0, str(HERE))

from bench_analyze import decode_all, machine_info, machine_line  # noqa: E402
from bench_long import speech_audio  # noqa: E402

from emofusion.media.synth import make_clip, make_face_image  # noqa: E402

PRESETS = ("ultrafast", "medium")
TARGET = 6.0


def speech_clip(preset: str) -> Path:
    path = CACHE / f"speech_10s_720p_{preset}.mp4"
    if not path.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.stem + ".part.mp4")
        encoding = {"preset": preset, "bframes": None} if preset != "ultrafast" else {}
        make_clip(tmp, duration=10.0, width=1280, height=720, fps=30, face=make_face_image(360),
                  audio=speech_audio(10), sample_rate=16000, **encoding)
        os.replace(tmp, path)
    return path


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default=str(HERE / "results"))
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    from emofusion.analysis import Analyzer

    clips = {preset: speech_clip(preset) for preset in PRESETS}
    cold_analyzer = Analyzer(transcribe="on")
    first = cold_analyzer.analyze(str(clips["ultrafast"]))  # loads the bundled model's parts too
    del first
    from emofusion.transcription import transcriber as transcriber_module

    transcriber_module.unload_all()
    cold = Analyzer(transcribe="on")
    cold_seconds = timed(lambda: cold.analyze(str(clips["ultrafast"])))
    on, off = Analyzer(transcribe="on"), Analyzer(transcribe="off")
    words = on.analyze(str(clips["ultrafast"])).to_dict()
    asr = on.transcriber()

    samples: dict[str, dict[str, list[float]]] = {p: {k: [] for k in ("decode", "decode_1t", "off", "on", "asr")}
                                                   for p in PRESETS}
    for _ in range(args.repeats):
        for preset, path in clips.items():
            s = samples[preset]
            s["decode"].append(timed(lambda: decode_all(path, convert=False)))
            s["decode_1t"].append(timed(lambda: decode_all(path, convert=False, threads=1)))
            s["off"].append(timed(lambda: off.analyze(str(path))))
            s["on"].append(timed(lambda: on.analyze(str(path))))
            s["asr"].append(timed(lambda: list(asr.transcribe_source(str(path)))))

    rows, result = [], {"clips": {}, "asr_model": asr.name, "asr_threads": asr.cpu_threads,
                        "cold_on_seconds": cold_seconds, "repeats": args.repeats}
    for preset in PRESETS:
        med = {k: statistics.median(v) for k, v in samples[preset].items()}
        floor = min(med["decode"], med["decode_1t"])
        entry = {**{f"{k}_seconds": v for k, v in med.items()}, "floor_seconds": floor,
                 "on_over_floor": med["on"] / floor, "off_over_floor": med["off"] / floor,
                 "target_met": med["on"] / floor <= TARGET}
        result["clips"][preset] = entry
        rows.append(f"| {preset} | {floor:.3f} | {med['off']:.3f} ({med['off'] / floor:.1f}x) | {med['asr']:.3f} | "
                    f"{med['on']:.3f} ({med['on'] / floor:.1f}x) | {'met' if entry['target_met'] else '**not met**'} |")
    result["machine"] = machine_info()
    result["machine_line"] = machine_line(result["machine"])
    spoken = sum(1 for s in words["segments"] if s["text"])
    result["windows_with_text"] = spoken
    (out / "transcribe.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        "# Transcription in an analysis: 10 s 720p clip with speech",
        "",
        f"Machine: {result['machine_line']}. `python benchmarks/bench_transcribe.py --repeats {args.repeats}`; "
        f"medians of {args.repeats} interleaved rounds, warm. ASR model: {asr.name} (int8, greedy, VAD filter, word "
        f"timestamps, {asr.cpu_threads} CTranslate2 threads), run in a thread beside the face and voice paths.",
        "",
        "| x264 preset | decode all frames, s (floor) | analyze, transcribe off, s | transcription alone, s | "
        "analyze, transcribe on, s | target: on <= 6x floor |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
        f"First analysis with transcription in a fresh Analyzer (Whisper model loaded in the call): "
        f"{cold_seconds:.2f} s. Windows with text in the `on` analysis: {spoken} of {len(words['segments'])}.",
        "",
    ]
    (out / "transcribe.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
