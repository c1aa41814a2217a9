"""One chart of the benchmark results: benchmarks/results/summary.png.

    python benchmarks/plot_results.py [--results benchmarks/results] [--out RESULTS/summary.png]

Reads every `*.json` in the results folder and draws a panel for each kind it finds (a kind
whose JSON is missing is skipped):
  - analyze.json (bench_analyze.py): per clip, seconds for decode-all, ours and the seed-style
    reference (log scale);
  - batch*.json (bench_batch.py): throughput by number of workers -- its "workers" object
    ({"1": {...}, "2": {...}}), or any object with an integer "workers"; the numeric fields
    whose key contains "per_minute", "per_hour", "per_second", "per_s", "throughput" or
    "clips_per" are drawn;
  - serve-*.json (bench_serve.py): latency p50 / p95 per route;
  - long.json (bench_long.py): real-time factor against its target (20x since issue 19), with the peak RSS.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HERE = Path(__file__).parent
THROUGHPUT_KEYS = ("per_minute", "per_hour", "per_second", "per_s", "throughput", "clips_per")


def load(folder: Path) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for path in sorted(folder.glob("*.json")):
        try:
            data[path.stem] = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            print(f"skipping {path.name}: {exc}")
    return data


# ----------------------------------------------------------------------------- panels
def panel_analyze(ax, data: dict[str, Any]) -> None:
    clips = data["clips"]
    names = list(clips)
    series = [("decode-all (PyAV)", "decode_all", "#9e9e9e"), ("ours (Analyzer)", "analyze", "#1f77b4"),
              ("seed-style reference", "reference", "#d62728")]
    width = 0.8 / len(series)
    for k, (label, key, color) in enumerate(series):
        xs, ys = [], []
        for i, n in enumerate(names):
            v = clips[n]["median_seconds"].get(key)
            if v:
                xs.append(i + (k - (len(series) - 1) / 2) * width)
                ys.append(v)
        if ys:
            bars = ax.bar(xs, ys, width, label=label, color=color)
            ax.bar_label(bars, labels=[f"{y:.2g}" for y in ys], fontsize=7, padding=1)
    ax.set_yscale("log")
    ax.set_xticks(range(len(names)), names, fontsize=8)
    ax.set_xlim(-0.6, len(names) - 0.4)
    ax.set_ylabel("seconds (log)")
    ax.set_title("End-to-end time per clip (median)")
    ax.legend(fontsize=8)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _metrics(obj: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in obj.items() if _is_number(v) and any(t in k for t in THROUGHPUT_KEYS)}


def _collect(obj: Any, found: dict[int, dict[str, float]]) -> None:
    if isinstance(obj, dict):
        workers = obj.get("workers")
        if isinstance(workers, dict):  # {"workers": {"1": {...}, "2": {...}}} (bench_batch.py)
            for w, per in workers.items():
                if str(w).isdigit() and isinstance(per, dict) and _metrics(per):
                    found.setdefault(int(w), _metrics(per))
        elif isinstance(workers, int) and not isinstance(workers, bool) and _metrics(obj):
            found.setdefault(workers, _metrics(obj))  # [{"workers": 1, "clips_per_minute": ...}, ...]
        for value in obj.values():
            if value is not workers:
                _collect(value, found)
    elif isinstance(obj, list):
        for value in obj:
            _collect(value, found)


def batch_points(data: dict[str, Any]) -> dict[int, dict[str, float]]:
    """{workers: {throughput metric: value}} from the batch*.json files (the first found per count)."""
    found: dict[int, dict[str, float]] = {}
    for name, obj in data.items():
        if name.startswith("batch"):
            _collect(obj, found)
    return {w: found[w] for w in sorted(found)}


def panel_batch(ax, points: dict[int, dict[str, float]]) -> None:
    workers = list(points)
    metrics = [m for m in points[workers[0]] if all(m in points[w] for w in workers)]
    width = 0.8 / len(metrics)
    colors = ["#2ca02c", "#98df8a", "#17becf", "#bcbd22"]
    for k, m in enumerate(metrics):
        xs = [i + (k - (len(metrics) - 1) / 2) * width for i in range(len(workers))]
        ys = [points[w][m] for w in workers]
        bars = ax.bar(xs, ys, width, label=m.replace("_", " "), color=colors[k % len(colors)])
        ax.bar_label(bars, labels=[f"{y:.3g}" for y in ys], fontsize=8)
    ax.set_xticks(range(len(workers)), [str(w) for w in workers])
    ax.set_xlabel("workers")
    ax.set_ylabel("throughput")
    ax.set_title("Batch throughput by workers")
    ax.legend(fontsize=8)


def panel_serve(ax, data: dict[str, Any]) -> None:
    runs = [(name.removeprefix("serve-"), d) for name, d in data.items() if name.startswith("serve-")]
    labels = [f"{r}\n{d.get('clients', '?')} clients" for r, d in runs]
    p50 = [d.get("latency_p50_s") or 0 for _, d in runs]
    p95 = [d.get("latency_p95_s") or 0 for _, d in runs]
    xs = range(len(runs))
    b1 = ax.bar([x - 0.2 for x in xs], p50, 0.4, label="p50", color="#1f77b4")
    b2 = ax.bar([x + 0.2 for x in xs], p95, 0.4, label="p95", color="#ff7f0e")
    ax.bar_label(b1, labels=[f"{v:.2g}" for v in p50], fontsize=8)
    ax.bar_label(b2, labels=[f"{v:.2g}" for v in p95], fontsize=8)
    ax.set_xticks(list(xs), labels, fontsize=8)
    ax.set_ylabel("seconds per request")
    rpm = ", ".join(f"{r}: {d.get('requests_per_minute')}/min" for r, d in runs)
    ax.set_title(f"Server latency ({rpm})", fontsize=10)
    ax.legend(fontsize=8)


def panel_long(ax, data: dict[str, Any]) -> None:
    rtf = data["realtime_factor"]
    minutes = data.get("input", {}).get("duration_seconds", 0) / 60
    bars = ax.bar(["ours"], [rtf], color="#9467bd", width=0.4)
    ax.set_xlim(-1, 1)
    ax.bar_label(bars, labels=[f"{rtf:.1f}x"], fontsize=9)
    speed = [v for k, v in data.get("targets", {}).items() if k.startswith("faster_than_")]
    target = speed[0].get("target", 20) if speed else 20
    ax.axhline(target, color="#d62728", linestyle="--", label=f"target {target:g}x")
    ax.set_ylabel("real-time factor (duration / wall)")
    ax.set_title(f"{minutes:.0f} min 720p input: peak RSS {data.get('peak_rss_mb', 0):.0f} MiB, "
                 f"{data.get('cores_used', '?')} cores", fontsize=10)
    ax.legend(fontsize=8)


# ----------------------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", default=str(HERE / "results"), help="folder with the benchmarks' JSON files")
    ap.add_argument("--out", default=None, help="PNG to write (default: RESULTS/summary.png)")
    args = ap.parse_args()
    folder = Path(args.results)
    data = load(folder)

    panels = []
    if "analyze" in data and data["analyze"].get("clips"):
        panels.append(("analyze", lambda ax: panel_analyze(ax, data["analyze"])))
    points = batch_points(data)
    if points:
        panels.append(("batch", lambda ax: panel_batch(ax, points)))
    if any(n.startswith("serve-") for n in data):
        panels.append(("serve", lambda ax: panel_serve(ax, data)))
    if "long" in data and "realtime_factor" in data["long"]:
        panels.append(("long", lambda ax: panel_long(ax, data["long"])))
    if not panels:
        print(f"nothing to plot in {folder}")
        return

    big = panels[0][0] == "analyze"
    rest = panels[1:] if big else panels
    rows = (1 if big else 0) + (len(rest) + 1) // 2
    fig = plt.figure(figsize=(12, 4.2 * rows))
    grid = fig.add_gridspec(rows, 2)
    row = 0
    if big:
        panels[0][1](fig.add_subplot(grid[0, :]))
        row = 1
    for k, (_, draw) in enumerate(rest):
        r, c = row + k // 2, k % 2
        span = grid[r, :] if (k == len(rest) - 1 and len(rest) % 2 == 1) else grid[r, c]
        draw(fig.add_subplot(span))
    machine = next((d.get("machine_line") for d in data.values() if isinstance(d, dict) and d.get("machine_line")), None)
    if machine:
        fig.suptitle(machine, fontsize=8, y=0.995)
    fig.tight_layout()
    out = Path(args.out) if args.out else folder / "summary.png"
    fig.savefig(out, dpi=110)
    print(f"wrote {out} ({', '.join(name for name, _ in panels)})")


if __name__ == "__main__":
    main()
