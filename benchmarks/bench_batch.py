"""`emofusion batch` throughput with 1 and 2 local workers, measured in one run.

    python benchmarks/bench_batch.py [--clips 8] [--workers 1,2] [--repeats 3] [--text] [--out benchmarks/results]

Clips (generated once into benchmarks/.cache/batch/, ignored by git): `--clips` 10 s 1280x720
30 fps H.264 (x264 ultrafast) + AAC 16 kHz mono, a synthetic face (360 px) and a speech-like
tone (a different pitch per clip). Each run is `run_batch(clips, <fresh output>, workers=N)`
with the bundled model, the same code path as `emofusion batch --workers N` (N spawned worker
processes, each pinned to its own core with one torch thread). `--text` gives every input
a one-line transcript so the text net runs too (default: face + voice, as for plain videos).

For context, the same clips are also analysed one after another in this process by one
Analyzer with all cores (torch's default threads and the pipeline's decode and face threads:
what `emofusion analyze` does per file), timed the same way (`all_cores_one_process`).

Reported per worker count (median over `--repeats`, runs interleaved):
  - wall_seconds: the whole run, model loading and worker start-up included;
  - throughput: clips / wall_seconds;
  - first_result_seconds: until the first line is written (start-up + one analysis);
  - steady_throughput: (clips - N) / (last result - N-th result), start-up excluded (with N
    workers the first N results come about together, one per worker);
and the ratios N workers / 1 worker, of the medians and of each repeat's pair of runs. Every
run's lines are checked identical per input across worker counts. The load average (1 min) is
recorded before and after each run: other work on the machine competes for the same cores.
Writes batch.json and batch.md under --out.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from emofusion.batch import BatchItem, run_batch
from emofusion.media.synth import make_clip, make_face_image

HERE = Path(__file__).parent
ALL_CORES = "all_cores_one_process"
CACHE = HERE / ".cache" / "batch"
WIDTH, HEIGHT, FPS, DURATION = 1280, 720, 30, 10.0
TRANSCRIPT = "I honestly cannot believe you did that, this is the best news I have heard all year"


def make_clips(n: int) -> list[Path]:
    CACHE.mkdir(parents=True, exist_ok=True)
    face = make_face_image(HEIGHT // 2)
    clips = []
    for k in range(n):
        path = CACHE / f"clip{k:02d}_10s_720p.mp4"
        if not path.exists():
            tmp = path.with_name(path.stem + ".tmp.mp4")
            make_clip(tmp, duration=DURATION, width=WIDTH, height=HEIGHT, fps=FPS, face=face, modulate=True,
                      tone_hz=160.0 + 20.0 * k)
            tmp.replace(path)
        clips.append(path)
    return clips


def load1() -> float:
    return round(os.getloadavg()[0], 2)


def one_run(items: list[BatchItem], workers: int, model: str, workdir: Path) -> dict[str, Any]:
    out = workdir / f"results_w{workers}.jsonl"
    out.unlink(missing_ok=True)
    stamps: list[float] = []
    before = load1()
    t0 = time.perf_counter()
    summary = run_batch(items, out, workers=workers, model=model,
                        progress=lambda done, failed, total: stamps.append(time.perf_counter()) if done else None)
    wall = time.perf_counter() - t0
    if summary.failed or summary.analysed != len(items):
        raise SystemExit(f"benchmark run failed: {summary}")
    lines = {row["input"]: row for row in map(json.loads, out.read_text().splitlines())}
    times = [t - t0 for t in stamps]
    # each worker's first result ends its start-up: the rate is measured after the N-th result
    k = min(workers, len(times)) - 1
    steady = (len(times) - 1 - k) / (times[-1] - times[k]) if len(times) - 1 > k and times[-1] > times[k] else None
    return {
        "wall_seconds": wall,
        "throughput": len(items) / wall,
        "first_result_seconds": times[0],
        "steady_throughput": steady,
        "result_seconds": [round(t, 3) for t in times],
        "load_before": before,
        "load_after": load1(),
        "lines": lines,
    }


def all_cores_run(items: list[BatchItem], model: str) -> dict[str, Any]:
    """One Analyzer in this process with every core, the clips one after another (model load included)."""
    from emofusion.batch import analyze_task, make_analyzer

    before = load1()
    t0 = time.perf_counter()
    analyzer = make_analyzer(model, {})
    stamps = []
    lines = {}
    for item in items:
        ok, line = analyze_task(analyzer, item.task())
        if not ok:
            raise SystemExit(f"benchmark run failed: {line}")
        stamps.append(time.perf_counter() - t0)
        row = json.loads(line)
        lines[row["input"]] = row
    wall = time.perf_counter() - t0
    steady = (len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 1 else None
    return {"wall_seconds": wall, "throughput": len(items) / wall, "first_result_seconds": stamps[0],
            "steady_throughput": steady, "result_seconds": [round(t, 3) for t in stamps],
            "load_before": before, "load_after": load1(), "lines": lines}


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
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "date": _dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=24)
    ap.add_argument("--workers", default="1,2", help="comma-separated worker counts; the first is the baseline")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--model", default="default")
    ap.add_argument("--text", action="store_true", help="give each input a one-line transcript (text net runs too)")
    ap.add_argument("--out", default=str(HERE / "results"))
    args = ap.parse_args()
    counts = [int(w) for w in args.workers.split(",") if w.strip()]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    clips = make_clips(args.clips)
    items = [BatchItem(str(c), str(c), text=TRANSCRIPT if args.text else None) for c in clips]
    runs: dict[Any, list[dict[str, Any]]] = {w: [] for w in counts}
    runs[ALL_CORES] = []
    with tempfile.TemporaryDirectory(prefix="bench_batch_") as tmp:
        for _ in range(args.repeats):
            for w in counts:
                runs[w].append(one_run(items, w, args.model, Path(tmp)))
                print(f"workers={w}: {runs[w][-1]['wall_seconds']:.2f} s", file=sys.stderr, flush=True)
            runs[ALL_CORES].append(all_cores_run(items, args.model))
            print(f"{ALL_CORES}: {runs[ALL_CORES][-1]['wall_seconds']:.2f} s", file=sys.stderr, flush=True)

    reference = runs[counts[0]][0]["lines"]
    identical = all(r["lines"] == reference for rs in runs.values() for r in rs)
    per: dict[str, Any] = {}
    for w, rs in runs.items():
        steady = [r["steady_throughput"] for r in rs if r["steady_throughput"] is not None]
        per[str(w)] = {
            "wall_seconds": statistics.median(r["wall_seconds"] for r in rs),
            "throughput_clips_per_s": statistics.median(r["throughput"] for r in rs),
            "first_result_seconds": statistics.median(r["first_result_seconds"] for r in rs),
            "steady_throughput_clips_per_s": statistics.median(steady) if steady else None,
            "load_1min_before_after": [(r["load_before"], r["load_after"]) for r in rs],
            "all_wall_seconds": [r["wall_seconds"] for r in rs],
            "result_seconds": [r["result_seconds"] for r in rs],
        }
    ratios = {}
    pairs = [(str(w), str(counts[0])) for w in counts[1:]] + [(str(counts[-1]), ALL_CORES)]
    for a, b in pairs:
        p, q = per[a], per[b]
        ratios[f"{a}_vs_{b}"] = {
            "throughput": p["throughput_clips_per_s"] / q["throughput_clips_per_s"],
            "steady_throughput": (p["steady_throughput_clips_per_s"] / q["steady_throughput_clips_per_s"]
                                  if p["steady_throughput_clips_per_s"] and q["steady_throughput_clips_per_s"] else None),
            # the runs of one repeat follow each other, so each pair saw about the same machine
            "throughput_per_repeat": [wall_b / wall_a for wall_a, wall_b in zip(p["all_wall_seconds"], q["all_wall_seconds"])],
        }
    first_lines = next(iter(reference.values()))
    result = {
        "clips": len(clips),
        "clip": f"{DURATION:.0f} s, {WIDTH}x{HEIGHT}, {FPS} fps, H.264 + AAC (generated)",
        "windows_with": first_lines["summary"]["windows"],  # per modality, first clip
        "with_transcript": bool(args.text),
        "model": first_lines["model"],
        "windows_per_clip": len(first_lines["segments"]),
        "repeats": args.repeats,
        "workers": per,
        "ratios": ratios,
        "identical_results_across_worker_counts": identical,
        "machine": machine_info(),
    }
    (out / "batch.json").write_text(json.dumps(result, indent=2) + "\n")
    m = result["machine"]

    def f(x: float | None, d: int = 2) -> str:
        return "–" if x is None else f"{x:.{d}f}"

    lines = [
        "# Batch throughput: `emofusion batch` with 1 and 2 local workers",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores ({m['usable_cores']} usable), torch {m['torch']}, "
        f"Python {m['python']}, {m['date']}. {len(clips)} clips of {result['clip']}, "
        f"{'face + voice + text' if args.text else 'face + voice'}, model {result['model']['name']} "
        f"{result['model']['version']}; median of {args.repeats} run(s) per worker count.",
        "",
        "| workers | wall s (start-up included) | clips/s | first result s | steady clips/s (start-up excluded) | load 1 min before / after |",
        "|---|---|---|---|---|---|",
    ]
    for w in counts + [ALL_CORES]:
        p = per[str(w)]
        loads = "; ".join(f"{a} / {b}" for a, b in p["load_1min_before_after"])
        label = "all cores, one process (context)" if w == ALL_CORES else w
        lines.append(f"| {label} | {f(p['wall_seconds'])} | {f(p['throughput_clips_per_s'], 3)} | "
                     f"{f(p['first_result_seconds'])} | {f(p['steady_throughput_clips_per_s'], 3)} | {loads} |")
    lines.append("")
    for key, r in ratios.items():
        a, b = key.split("_vs_")
        b = "all cores in one process" if b == ALL_CORES else f"{b} worker(s)"
        each = ", ".join(f"x{f(x, 3)}" for x in r["throughput_per_repeat"])
        lines.append(f"Ratio {a} workers / {b}: throughput x{f(r['throughput'], 3)} (medians; per repeat {each}), "
                     f"steady x{f(r['steady_throughput'], 3)}.")
    lines += [
        f"Results identical per input across worker counts: {'yes' if identical else 'NO'}.",
        "",
        "Each worker is a spawned process pinned to its own core with one torch thread, loading the model",
        "once (its start-up is in the wall time and the first-result time); `emofusion batch` starts one per",
        "usable core unless told otherwise. The context row analyses the same clips one after another in one",
        "process with every core (what `emofusion analyze` does per file): the gain of the default batch over",
        "looping `analyze` is its ratio to that row, not the ratio to one worker. The load average shows other",
        "work on the machine at the time.",
        "",
    ]
    (out / "batch.md").write_text("\n".join(lines))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
