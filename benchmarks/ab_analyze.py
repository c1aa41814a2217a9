"""Before/after: the 10 s 720p analysis of `bench_analyze.py` at another revision and at this
working tree, interleaved in one run on one machine (timings drift over the day; compare the ratio).

    python benchmarks/ab_analyze.py REV [--rounds 3] [--repeats 3]

REV is checked out into a temporary git worktree and timed with its own bench_analyze.py and
library; the rounds alternate which side runs first. Writes benchmarks/results/ab-analyze.{json,md}.
Not part of `make bench` (it needs a revision to compare with).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CLIP = "720p-10s"


def analyze_seconds(tree: Path, repeats: int, out: Path) -> float:
    """The median `analyze` seconds of one bench_analyze.py run of `tree` on the 10 s 720p clip."""
    env = {**os.environ, "PYTHONPATH": str(tree / "src")}
    subprocess.run([sys.executable, str(tree / "benchmarks" / "bench_analyze.py"), "--only", CLIP, "--no-reference",
                    "--no-cold", "--repeats", str(repeats), "--out", str(out)], cwd=tree, env=env, check=True,
                   stdout=subprocess.DEVNULL)
    return float(json.loads((out / "analyze.json").read_text())["clips"][CLIP]["median_seconds"]["analyze"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("rev")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    with tempfile.TemporaryDirectory() as tmp:
        before_tree = Path(tmp) / "before"
        subprocess.run(["git", "worktree", "add", "-q", "--detach", str(before_tree), args.rev], cwd=ROOT, check=True)
        try:
            (before_tree / "benchmarks" / ".cache").mkdir(parents=True, exist_ok=True)
            before, after = [], []
            for k in range(args.rounds):  # the order alternates, so neither side always runs second
                sides = [(before, before_tree, "b"), (after, ROOT, "a")]
                for times, tree, tag in (sides if k % 2 == 0 else sides[::-1]):
                    times.append(analyze_seconds(tree, args.repeats, Path(tmp) / f"{tag}{k}"))
                print(f"round {k + 1}: {args.rev} {before[-1]:.3f} s, this tree {after[-1]:.3f} s", flush=True)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(before_tree)], cwd=ROOT, check=False)
    ratio = statistics.median(after) / statistics.median(before)
    result = {"clip": CLIP, "before": {"rev": args.rev, "seconds": before}, "after": {"rev": f"{head} (working tree)",
              "seconds": after}, "ratio_after_to_before": ratio, "rounds": args.rounds, "repeats": args.repeats}
    out = HERE / "results"
    (out / "ab-analyze.json").write_text(json.dumps(result, indent=2) + "\n")
    rows = "\n".join(f"| {k + 1} | {b:.3f} | {a:.3f} |" for k, (b, a) in enumerate(zip(before, after)))
    (out / "ab-analyze.md").write_text(
        f"# 10 s 720p analysis, before ({args.rev}) and after ({head}), interleaved\n\n"
        f"Median `analyze` seconds of {args.repeats} warm runs per round (benchmarks/bench_analyze.py), "
        f"the order alternating between rounds.\n\n| round | before (s) | after (s) |\n|---|---|---|\n{rows}\n\n"
        f"Median after / median before: **{ratio:.3f}**\n")
    print(f"after / before: {ratio:.3f}")


if __name__ == "__main__":
    main()
