"""Server throughput: requests per minute and latency for 10 s clips with concurrent clients.

    python benchmarks/bench_serve.py [--clients 8] [--seconds 60] [--route invocations|v1] [--out benchmarks/results]

Starts `emofusion serve` (bundled model, SQLite, local storage, a fresh temporary home) on a
free port, generates a 10 s 1280x720 30 fps H.264 + AAC clip (synthetic face, speech-like
audio), and runs N client threads that each send the clip again and again for the given time:
  - route `invocations`: POST /invocations (synchronous; the answer holds the analysis);
  - route `v1`: POST /v1/analyses, then poll GET /v1/analyses/{id} every 0.5 s until it ends
    (latency = submit to result).
Reports completed requests per minute, p50 / p95 / max latency and errors.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from emofusion.media.synth import make_clip, make_face_image

EMOFUSION = str(Path(sys.executable).with_name("emofusion"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def machine() -> str:
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def one_invocation(client: httpx.Client, url: str, clip: bytes, key: str) -> None:
    r = client.post(url + "/invocations", content=clip, headers={"Content-Type": "video/mp4"}, timeout=300)
    r.raise_for_status()
    if not r.json()["emotions"]:
        raise RuntimeError("empty answer")


def one_job(client: httpx.Client, url: str, clip: bytes, key: str) -> None:
    h = {"X-API-Key": key}
    r = client.post(url + "/v1/analyses", files={"file": ("clip.mp4", clip, "video/mp4")}, headers=h, timeout=300)
    r.raise_for_status()
    job = r.json()["id"]
    while True:
        body = client.get(f"{url}/v1/analyses/{job}", headers=h, timeout=60).json()
        if body["status"] == "succeeded":
            return
        if body["status"] == "failed":
            raise RuntimeError(body["error"]["message"])
        time.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--route", choices=("invocations", "v1"), default="invocations")
    parser.add_argument("--workers", type=int, default=2, help="EMOFUSION_JOB_WORKERS / EMOFUSION_SYNC_CONCURRENCY")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="emofusion-bench-"))
    clip = make_clip(home / "clip.mp4", duration=10.0, width=1280, height=720, fps=30, face=make_face_image(200),
                     modulate=True).read_bytes()
    port = free_port()
    env = {**os.environ, "EMOFUSION_HOME": str(home / "home"), "EMOFUSION_REQUESTS_PER_DAY": "unlimited",
           "EMOFUSION_MEDIA_MINUTES_PER_MONTH": "unlimited", "EMOFUSION_KEY_REQUESTS_PER_MINUTE": "unlimited",
           "EMOFUSION_JOB_WORKERS": str(args.workers), "EMOFUSION_SYNC_CONCURRENCY": str(args.workers)}
    key = subprocess.run([EMOFUSION, "keys", "create", "--name", "bench"], env=env, capture_output=True, text=True,
                         check=True).stdout.strip()
    server = subprocess.Popen([EMOFUSION, "serve", "--port", str(port), "--log-level", "warning"], env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(url + "/ping", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        request = one_invocation if args.route == "invocations" else one_job
        with httpx.Client() as warm:
            request(warm, url, clip, key)  # model and code paths warm
        latencies: list[float] = []
        errors: list[str] = []
        lock = threading.Lock()
        stop_at = time.perf_counter() + args.seconds

        def client_loop() -> None:
            with httpx.Client() as client:
                while time.perf_counter() < stop_at:
                    started = time.perf_counter()
                    try:
                        request(client, url, clip, key)
                        with lock:
                            latencies.append(time.perf_counter() - started)
                    except Exception as exc:
                        with lock:
                            errors.append(f"{type(exc).__name__}: {exc}")

        began = time.perf_counter()
        threads = [threading.Thread(target=client_loop) for _ in range(args.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - began
    finally:
        server.terminate()
        server.wait(timeout=120)

    result = {
        "route": args.route, "clients": args.clients, "server_workers": args.workers,
        "clip": "10 s, 1280x720, 30 fps, H.264 + AAC", "wall_seconds": round(wall, 1),
        "completed": len(latencies), "errors": len(errors), "first_errors": errors[:3],
        "requests_per_minute": round(60 * len(latencies) / wall, 1),
        "latency_p50_s": round(statistics.median(latencies), 2) if latencies else None,
        "latency_p95_s": round(percentile(latencies, 0.95), 2) if latencies else None,
        "latency_max_s": round(max(latencies), 2) if latencies else None,
        "machine": machine(),
    }
    print(json.dumps(result, indent=2))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"serve-{args.route}.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / f"serve-{args.route}.md").write_text(
        f"# Server throughput ({args.route})\n\nMachine: {result['machine']}. {args.clients} concurrent clients, "
        f"{result['clip']} clip, {result['wall_seconds']} s of load, server with {args.workers} analysis workers.\n\n"
        "| completed | errors | requests/min | p50 (s) | p95 (s) | max (s) |\n|---|---|---|---|---|---|\n"
        f"| {result['completed']} | {result['errors']} | {result['requests_per_minute']} | {result['latency_p50_s']} "
        f"| {result['latency_p95_s']} | {result['latency_max_s']} |\n")


if __name__ == "__main__":
    main()
