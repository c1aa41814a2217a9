"""Train the four fusion types and the single-modality models on the generated aligned dataset.

    python scripts/aligned_fusion.py [--out runs/aligned] [--per-class 100] [--epochs 20]

Generates the dataset (emofusion.data.aligned) under OUT/data once, then runs
`emofusion train recipes/aligned/xattn.toml --set ...` for fusion late, concat, gated and xattn
(video + audio) and for video alone and audio alone, and writes OUT/results.md and
OUT/results.json: the best validation accuracy of each (held-out speakers) and, for the fused
models, their accuracy with one modality missing at inference.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "aligned" / "xattn.toml"

RUNS = {
    "late": ["model.fusion.type=late"],
    "concat": ["model.fusion.type=concat"],
    "gated": ["model.fusion.type=gated"],
    "xattn": ["model.fusion.type=xattn"],
    "video only": ["model.fusion.type=concat", 'model.modalities=["video"]'],
    "audio only": ["model.fusion.type=concat", 'model.modalities=["audio"]'],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "aligned")
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=20)
    args = parser.parse_args()
    from emofusion.data.aligned import make_aligned_dataset

    data = args.out / "data"
    if not (data / "manifest.csv").exists():
        make_aligned_dataset(data, per_class=args.per_class)
    env = {**os.environ, "EMOFUSION_ALIGNED_DATA": str(data)}
    results = {}
    for name, settings in RUNS.items():
        out = args.out / name.replace(" ", "-")
        cmd = [str(Path(sys.executable).parent / "emofusion"), "train", str(RECIPE), "--out", str(out), "--epochs", str(args.epochs),
               "--cache-dir", str(args.out / "cache")]
        for s in settings:
            cmd += ["--set", s]
        t0 = time.time()
        subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        metrics = json.loads((out / "metrics.json").read_text())
        results[name] = {"best_epoch": metrics["best_epoch"], "best_accuracy": metrics["best_accuracy"],
                         "last_accuracy": metrics["history"][-1]["accuracy"],
                         "by_modality": metrics.get("best_val_by_modality"), "seconds": round(time.time() - t0, 1),
                         "command": " ".join(["emofusion", "train", "recipes/aligned/xattn.toml"]
                                             + [f"--set '{s}'" for s in settings] + ["--epochs", str(args.epochs)])}
        print(name, results[name]["best_accuracy"], flush=True)
    val_n = next(iter(results.values()))["by_modality"]["all"]["n"]
    lines = [
        "# Fusion types on the generated aligned audio-visual dataset",
        "",
        f"{args.per_class} clips per class x 4 classes (emofusion.data.aligned, seed 0); speakers spk06 and spk07 held out "
        f"({val_n} validation clips); {args.epochs} epochs. The best epoch is picked on the validation clips (optimistic); "
        "the last epoch's accuracy is not selected on them. "
        f"Machine: {platform.machine()}, {os.cpu_count()} cores. Each cue is flipped in 10 % of clips, so the best "
        "possible accuracy with both is about 0.81 and with one modality about 0.45.",
        "",
        "| model | last-epoch val accuracy | best val accuracy | best: with video only | best: with audio only "
        "| best epoch | seconds |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        by = r["by_modality"] or {}
        lines.append(f"| {name} | {r['last_accuracy']:.3f} | {r['best_accuracy']:.3f} | {by.get('video', {}).get('accuracy', float('nan')):.3f} | "
                     f"{by.get('audio', {}).get('accuracy', float('nan')):.3f} | {r['best_epoch']} | {r['seconds']} |")
    (args.out / "results.md").write_text("\n".join(lines) + "\n")
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
