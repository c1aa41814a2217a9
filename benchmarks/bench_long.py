"""A long input: wall time, real-time factor and peak memory of `emofusion analyze` on a 1-hour
720p 30 fps clip.

    python benchmarks/bench_long.py [--minutes 60] [--segment-seconds 60] [--cores 2] [--speech] [--out benchmarks/results]

Encoding 108,000 frames of H.264 would take long, so the input is built by concatenation: one
`--segment-seconds` (default 60 s) 1280x720 30 fps H.264 + AAC clip is generated (synthetic
face, speech-like tone), then remuxed `minutes * 60 / segment` times into one MP4 with
continuous timestamps (PyAV: packets copied, pts/dts shifted by the segment's duration, no
re-encode; the AAC priming packet of every segment but the first is dropped so the audio
timestamps keep increasing). Both files are cached in benchmarks/.cache/.

Then `python -m emofusion.cli analyze FILE --json OUT -q` runs in a subprocess pinned to
`--cores` CPUs (default 2, the target's machine; 0 = no pinning) while its memory is sampled:
  - every 0.2 s the summed VmRSS (and the VmHWM) of the process and its children (/proc);
  - at exit the kernel's peak RSS of the process (`wait4` ru_maxrss).
The peak reported is the larger. Targets: peak RSS < 1 GiB, faster than 20x real time on 2
cores, for the face + voice path (`--transcribe off`; issue 19 raised them from 2 GiB and 10x). Writes long.json and long.md under --out.

`--speech`: the repeated clip's sound is speech throughout (espeak-ng sentences with 0.4 s
pauses, as benchmarks/bench_asr.py makes them) and the analysis runs with `--transcribe on`
(the offline default Whisper model). The same file is also analysed with `--transcribe off`, and
transcribed alone (the Transcriber over the file's audio, no analysis), each in its own pinned
process, to give the split. Target: faster than 4x real time, peak RSS < 2 GiB. Writes
long-speech.json and long-speech.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import sys
import time
from pathlib import Path
from typing import Any

import av

from emofusion.media.synth import make_clip, make_face_image

HERE = Path(__file__).parent
CACHE = HERE / ".cache"
WIDTH, HEIGHT, FPS = 1280, 720, 30
RSS_TARGET_MB = 1024.0
SPEECH_RSS_TARGET_MB = 2048.0
RTF_TARGET = 20.0
SPEECH_RTF_TARGET = 4.0


# ----------------------------------------------------------------------------- input
def speech_audio(seconds: int):
    """`seconds` of espeak-ng speech (16 kHz mono), sentences with 0.4 s pauses."""
    sys.path.insert(0, str(HERE))
    from bench_asr import SENTENCES, espeak, long_speech

    audio, _ = long_speech(seconds, [espeak(s) for s in SENTENCES], SENTENCES)
    return audio[: seconds * 16000]


def base_clip(seconds: int, speech: bool = False) -> Path:
    path = CACHE / f"long_base_720p_{seconds}s{'_speech' if speech else ''}.mp4"
    if not path.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.stem + ".part.mp4")
        print(f"generating {path.name} ({seconds} s of 720p) ...", flush=True)
        sound = {"audio": speech_audio(seconds), "sample_rate": 16000} if speech else {"modulate": True}
        make_clip(tmp, duration=float(seconds), width=WIDTH, height=HEIGHT, fps=FPS,
                  face=make_face_image(HEIGHT // 2), **sound)
        os.replace(tmp, path)
    return path


def concatenate(base: Path, repeats: int, seconds: int, path: Path) -> None:
    """Remux `base` `repeats` times into `path`, timestamps continuous, no re-encode."""
    tmp = path.with_name(path.stem + ".part.mp4")
    with av.open(str(tmp), mode="w", format="mp4") as out:
        with av.open(str(base)) as inp:
            streams = [s for s in inp.streams if s.type in ("video", "audio")]
            omap = {s.index: out.add_stream_from_template(s) for s in streams}
        last_dts: dict[int, int] = {}
        for k in range(repeats):
            with av.open(str(base)) as inp:
                streams = [s for s in inp.streams if s.type in ("video", "audio")]
                offsets = {s.index: round(k * seconds / s.time_base) for s in streams}
                for pkt in inp.demux(streams):
                    if pkt.dts is None or pkt.size == 0:
                        continue  # the demuxer's flush packets
                    i = pkt.stream.index
                    if k > 0 and pkt.pts is not None and pkt.pts < 0:
                        continue  # priming (AAC): would overlap the previous segment's end
                    dts = pkt.dts + offsets[i]
                    if i in last_dts and dts <= last_dts[i]:
                        continue
                    pkt.dts = dts
                    if pkt.pts is not None:
                        pkt.pts = pkt.pts + offsets[i]
                    last_dts[i] = dts
                    pkt.stream = omap[i]
                    out.mux(pkt)
    os.replace(tmp, path)


def long_clip(minutes: float, seconds: int, speech: bool = False) -> tuple[Path, int]:
    repeats = max(1, round(minutes * 60 / seconds))
    path = CACHE / f"long_720p_{repeats * seconds}s_from_{seconds}s{'_speech' if speech else ''}.mp4"
    if not path.exists():
        base = base_clip(seconds, speech)
        print(f"remuxing {repeats} x {seconds} s into {path.name} ...", flush=True)
        t0 = time.perf_counter()
        concatenate(base, repeats, seconds, path)
        print(f"  done in {time.perf_counter() - t0:.1f} s", flush=True)
    return path, repeats


# ----------------------------------------------------------------------------- memory
def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                text = Path(f"/proc/{pid}/task/{tid}/children").read_text().split()
            except OSError:
                continue
            out += [int(c) for c in text]
    except OSError:
        pass
    return out


def _status_kb(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def tree(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        todo += _children(p)
    return pids


def run_sampled(cmd: list[str], cores: int, interval: float = 0.2) -> dict[str, Any]:
    """Run cmd; sample the process tree's memory; return wall time, exit status and peaks (MiB)."""
    allowed = sorted(os.sched_getaffinity(0))
    pin = allowed[:cores] if cores and len(allowed) > cores else None

    def preexec() -> None:
        if pin:
            os.sched_setaffinity(0, pin)

    t0 = time.perf_counter()
    # the CLI prints its window table on stdout (3600 rows for an hour): into a file, never a pipe
    # nobody reads while it runs (a full pipe would stall the analysis)
    out_log = tempfile.TemporaryFile()
    err_log = tempfile.TemporaryFile()
    proc = subprocess.Popen(cmd, preexec_fn=preexec, stdout=out_log, stderr=err_log)
    peak_sum_kb = peak_hwm_kb = samples = 0
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        pids = tree(proc.pid)
        peak_sum_kb = max(peak_sum_kb, sum(_status_kb(p, "VmRSS") for p in pids))
        peak_hwm_kb = max(peak_hwm_kb, _status_kb(proc.pid, "VmHWM"))
        samples += 1
        time.sleep(interval)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    out_log.seek(0)
    err_log.seek(0)
    stdout, stderr = out_log.read(), err_log.read()
    maxrss_kb = usage.ru_maxrss  # kB on Linux
    return {
        "wall_seconds": wall,
        "returncode": proc.returncode,
        "stderr_tail": stderr.decode(errors="replace")[-2000:],
        "stdout_tail": stdout.decode(errors="replace")[-500:],
        "peak_rss_mb": max(peak_sum_kb, peak_hwm_kb, maxrss_kb) / 1024,
        "peak_rss_sources_mb": {
            "polled_tree_vmrss_sum": peak_sum_kb / 1024,
            "polled_vmhwm": peak_hwm_kb / 1024,
            "wait4_ru_maxrss": maxrss_kb / 1024,
        },
        "samples": samples,
        "pinned_cpus": pin or allowed,
    }


# ----------------------------------------------------------------------------- main
TRANSCRIBE_ONLY = (
    "import sys; from emofusion.transcription import Transcriber; "
    "n = sum(len(s.words) for s in Transcriber().transcribe_source(sys.argv[1])); print(n)"
)


def analyse(path: Path, model: str, transcribe: str, cores: int,
            more: tuple[str, ...] = ()) -> tuple[dict[str, Any], dict[str, Any]]:
    """`emofusion analyze` (with the flags `more`) in a pinned, memory-sampled process: the run and
    the analysis JSON."""
    analysis_json = CACHE / f"long-analysis-{os.getpid()}.tmp"
    cmd = [sys.executable, "-m", "emofusion.cli", "analyze", str(path), "--model", model,
           "--transcribe", transcribe, *more, "--json", str(analysis_json), "-q"]
    run = run_sampled(cmd, cores)
    if run["returncode"] != 0:
        print(run["stderr_tail"], file=sys.stderr)
        raise SystemExit(f"emofusion analyze failed with exit status {run['returncode']}")
    analysis = json.loads(analysis_json.read_text())
    analysis_json.unlink()
    return run, analysis


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=60.0, help="length of the input (default 60)")
    ap.add_argument("--segment-seconds", type=int, default=60, help="length of the generated clip that is repeated")
    ap.add_argument("--cores", type=int, default=2, help="pin the analysis to this many CPUs (0: no pinning)")
    ap.add_argument("--speech", action="store_true", help="speech throughout, analysed with --transcribe on")
    ap.add_argument("--model", default="default")
    ap.add_argument("--out", default=str(HERE / "results"))
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    sys.path.insert(0, str(HERE))
    from bench_analyze import machine_info, machine_line

    path, repeats = long_clip(args.minutes, args.segment_seconds, args.speech)
    with av.open(str(path)) as c:
        duration = float(c.duration / av.time_base)
        vs = c.streams.video[0]
        frames = vs.frames
    size_mb = path.stat().st_size / 2**20
    print(f"input {path.name}: {duration:.1f} s, {frames} frames, {size_mb:.0f} MiB", flush=True)

    run, analysis = analyse(path, args.model, "on" if args.speech else "off", args.cores)
    rtf = duration / run["wall_seconds"]
    cores_used = len(run["pinned_cpus"])
    target = SPEECH_RTF_TARGET if args.speech else RTF_TARGET
    rss_target = SPEECH_RSS_TARGET_MB if args.speech else RSS_TARGET_MB
    target_key = f"faster_than_{target:.0f}x_realtime_on_2_cores"
    sound = "speech throughout (espeak-ng)" if args.speech else "speech-like tone"
    result = {
        "input": {
            "path": str(path.relative_to(HERE.parent)) if path.is_relative_to(HERE.parent) else str(path),
            "duration_seconds": duration, "frames": frames, "width": WIDTH, "height": HEIGHT, "fps": FPS,
            "size_mb": round(size_mb, 1),
            "made_of": f"{repeats} x a {args.segment_seconds} s generated clip (H.264 + AAC, synthetic face, "
                       f"{sound}), remuxed with continuous timestamps",
        },
        "command": f"emofusion analyze FILE --transcribe {'on' if args.speech else 'off'} --json OUT -q",
        "wall_seconds": run["wall_seconds"],
        "realtime_factor": rtf,
        "peak_rss_mb": run["peak_rss_mb"],
        "peak_rss_sources_mb": run["peak_rss_sources_mb"],
        "memory_samples": run["samples"],
        "cores_used": cores_used,
        "windows": len(analysis.get("segments", [])),
        "windows_with": analysis.get("summary", {}).get("windows", {}),
        "transcript": analysis.get("media", {}).get("transcript"),
        "targets": {
            "peak_rss_below_target": {"target_mb": rss_target, "value_mb": run["peak_rss_mb"],
                                      "met": run["peak_rss_mb"] < rss_target},
            target_key: {"target": target, "value": rtf, "met": rtf > target, "on_2_cores": cores_used == 2},
        },
        "machine": machine_info(),
    }
    split_rows: list[str] = []
    if args.speech:
        off, _ = analyse(path, args.model, "off", args.cores)
        alone = run_sampled([sys.executable, "-c", TRANSCRIBE_ONLY, str(path)], args.cores)
        if alone["returncode"] != 0:
            print(alone["stderr_tail"], file=sys.stderr)
            raise SystemExit("transcription alone failed")
        words = int(alone["stdout_tail"].strip().splitlines()[-1])
        result["split"] = {
            "analysis_transcribe_off_seconds": off["wall_seconds"], "analysis_transcribe_off_peak_rss_mb": off["peak_rss_mb"],
            "transcription_alone_seconds": alone["wall_seconds"], "transcription_alone_peak_rss_mb": alone["peak_rss_mb"],
            "words_recognised": words,
        }
        sp = result["split"]
        split_rows = [
            f"| analysis, `--transcribe off` (face + voice) | {off['wall_seconds']:.1f} s | "
            f"{duration / off['wall_seconds']:.1f}x | {off['peak_rss_mb']:.0f} MiB |",
            f"| transcription alone (Transcriber over the file, {words} words) | {alone['wall_seconds']:.1f} s | "
            f"{duration / alone['wall_seconds']:.1f}x | {alone['peak_rss_mb']:.0f} MiB |",
            f"| sum of the two (run one after the other) | {sp['analysis_transcribe_off_seconds'] + sp['transcription_alone_seconds']:.1f} s | | |",
        ]
    result["machine_line"] = machine_line(result["machine"])
    name = "long-speech" if args.speech else "long"
    (out / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")

    met = lambda ok: "met" if ok else "**not met**"  # noqa: E731
    t = result["targets"]
    core_note = "" if cores_used == 2 else f" (measured on {cores_used} cores, not 2)"
    what = "face + voice + text, speech transcribed" if args.speech else "face + voice"
    lines = [
        "# A long input" + (" with speech throughout" if args.speech else ""),
        "",
        f"Machine: {result['machine_line']}. Analysis pinned to {cores_used} CPU(s).",
        "",
        f"Input: {duration / 60:.1f} min ({duration:.0f} s), {WIDTH}x{HEIGHT} {FPS} fps, {frames} frames, "
        f"{size_mb:.0f} MiB; {result['input']['made_of']}.",
        f"Command: `{result['command']}` (bundled model, {what}, {result['windows']} windows; "
        f"with a face: {result['windows_with'].get('face')}, with voice: {result['windows_with'].get('voice')}, "
        f"with text: {result['windows_with'].get('text')}).",
        "",
        "| measure | value | target | |",
        "|---|---|---|---|",
        f"| wall time | {run['wall_seconds']:.1f} s | | |",
        f"| real-time factor (duration / wall) | {rtf:.1f}x | > {target:.0f}x on 2 cores | "
        f"{met(t[target_key]['met'])}{core_note} |",
        f"| peak RSS (process and children) | {run['peak_rss_mb']:.0f} MiB | < {rss_target:.0f} MiB | "
        f"{met(t['peak_rss_below_target']['met'])} |",
        "",
        "Peak RSS is the largest of: the summed VmRSS of the process tree sampled every 0.2 s "
        f"({run['peak_rss_sources_mb']['polled_tree_vmrss_sum']:.0f} MiB), its VmHWM "
        f"({run['peak_rss_sources_mb']['polled_vmhwm']:.0f} MiB) and the kernel's ru_maxrss at exit "
        f"({run['peak_rss_sources_mb']['wait4_ru_maxrss']:.0f} MiB).",
        "",
    ]
    if split_rows:
        lines += [
            "The split (the same file, each in its own pinned process; transcription runs in a thread "
            "beside the face and voice paths, so the whole takes less than the sum):",
            "",
            "| run | wall | real-time factor | peak RSS |",
            "|---|---|---|---|",
            f"| analysis, `--transcribe on` | {run['wall_seconds']:.1f} s | {rtf:.1f}x | {run['peak_rss_mb']:.0f} MiB |",
            *split_rows,
            "",
        ]
    (out / f"{name}.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
