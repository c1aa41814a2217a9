"""What voice calibration costs: `emofusion analyze` of a long input with speech throughout, with
`--calibrate on` against `--calibrate off` (both `--transcribe off`, so the voice path's share shows),
each in its own process pinned to `--cores` CPUs, run alternately `--repeats` times.

    python benchmarks/bench_calibration.py [--minutes 10] [--repeats 2] [--cores 2] [--out benchmarks/results]

The input is bench_long.py's (`--speech`: a 60 s 720p 30 fps clip of espeak-ng speech and a synthetic
face, remuxed to the length asked for; cached in benchmarks/.cache/). Calibration reads the audio a
second time and takes the functionals of every voiced window before the windows are analysed (the
voice path then reuses them). Writes calibration.json and calibration.md under --out.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

from bench_long import analyse, long_clip  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--out", default=str(HERE / "results"))
    args = ap.parse_args()
    from bench_analyze import machine_info, machine_line

    path, _ = long_clip(args.minutes, 60, speech=True)
    runs: dict[str, list[dict]] = {"off": [], "on": []}
    info: dict = {}
    for _ in range(args.repeats):
        for mode in ("off", "on"):
            run, analysis = analyse(path, "default", "off", args.cores, ("--calibrate", mode))
            runs[mode].append(run)
            info[mode] = analysis["media"]["voice_calibration"]
            duration = analysis["media"]["duration"]
            print(f"calibrate {mode}: {run['wall_seconds']:.1f} s, peak {run['peak_rss_mb']:.0f} MiB", flush=True)
    wall = {m: statistics.median(r["wall_seconds"] for r in rs) for m, rs in runs.items()}
    rss = {m: max(r["peak_rss_mb"] for r in rs) for m, rs in runs.items()}
    result = {
        "input": {"path": str(path.relative_to(HERE.parent)), "duration_seconds": duration},
        "command": "emofusion analyze FILE --transcribe off --calibrate off|on --json OUT -q",
        "cores": args.cores, "repeats": args.repeats,
        "wall_seconds_median": wall, "peak_rss_mb": rss,
        "realtime_factor": {m: duration / w for m, w in wall.items()},
        "calibration_share_of_wall": (wall["on"] - wall["off"]) / wall["on"],
        "voice_calibration": info, "machine": machine_info(),
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "calibration.json").write_text(json.dumps(result, indent=2) + "\n")
    md = [
        "# Voice calibration: what it costs",
        "",
        f"`python benchmarks/bench_calibration.py --minutes {args.minutes:g} --repeats {args.repeats}`: {duration:.0f} s of "
        f"720p 30 fps video with speech throughout, `--transcribe off`, pinned to {args.cores} CPUs, median of "
        f"{args.repeats} alternating runs. {machine_line(result['machine'])}",
        "",
        "| `--calibrate` | wall | real time | peak RSS | voice_calibration |",
        "|---|---|---|---|---|",
    ]
    for m in ("off", "on"):
        md.append(f"| {m} | {wall[m]:.1f} s | {duration / wall[m]:.1f}x | {rss[m]:.0f} MiB | `{json.dumps(info[m])}` |")
    md += ["", f"Calibration's share of the calibrated run: {100 * result['calibration_share_of_wall']:.1f}% "
               f"({wall['on'] - wall['off']:.1f} s for {duration:.0f} s of input)."]
    (out / "calibration.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
