"""`make bench`: every benchmark, results under benchmarks/results/ (never part of `make test`),
then the summary chart (benchmarks/results/summary.png).

    python benchmarks/run.py [bench_analyze.py bench_long.py ...]   # default: all of them

A script that is not there (yet) is skipped; a failing one is reported and the others still
run; the exit status is 1 if any failed.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
SCRIPTS = ("bench_analyze.py", "bench_serve.py", "bench_batch.py", "bench_export.py", "bench_long.py", "bench_detectors.py",
           "bench_hostile.py", "bench_calibration.py")

if __name__ == "__main__":
    chosen = sys.argv[1:] or list(SCRIPTS)
    failed = []
    for script in chosen:
        if not (HERE / script).exists():
            print(f"== {script}: not there, skipped", flush=True)
            continue
        print(f"== {script}", flush=True)
        if subprocess.run([sys.executable, str(HERE / script)]).returncode != 0:
            failed.append(script)
    print("== plot_results.py", flush=True)
    subprocess.run([sys.executable, str(HERE / "plot_results.py")], check=False)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        sys.exit(1)
