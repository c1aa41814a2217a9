"""Hostile clients beside normal ones: what a mix of attacks costs the normal clients of one server.

    python benchmarks/bench_hostile.py [--clients 8] [--attackers 4] [--seconds 60] [--max-upload-mb 20]
                                       [--out benchmarks/results]

Starts one `emofusion serve` (bundled model, SQLite, local storage, a fresh temporary home that
also holds its TMPDIR, so multipart spool files count as disk, EMOFUSION_MAX_UPLOAD_MB from the
flag, unlimited request and media quotas) on a free port for the whole run, and runs two phases of
the given length, one after the other, against it:
  1. normal only: N client threads each POST a 10 s 1280x720 30 fps H.264 + AAC clip to
     /invocations again and again (as bench_serve.py's `invocations` route);
  2. normal + attackers: the same clients, and A attacker threads that each go round this mix
     (every response's status recorded by kind, against the status the hardened server owes):
       chunked_raw_invocations        400 MB chunked raw body to /invocations (413)
       chunked_multipart_invocations  400 MB chunked multipart upload to /invocations (413)
       chunked_multipart_v1_no_key    the same to /v1/analyses without a key (401)
       tiny_windows                   2 s clip, {"window": 0.001, "hop": 0.000001} (422)
       ten_hour_claim_mp4             a 2 s MP4 whose headers claim 10 hours, /invocations
                                      (200 with media.duration ~2 s, or 422)
       wrong_passwords                10 concurrent wrong log-ins for a real account
                                      (401, then 429 from the log-in throttle, or 503 busy)
       api_key_mints_key              POST /v1/keys with an API key (403)
       nested_options                 options nested 2000 deep (422)
       huge_offset                    GET /v1/analyses?offset=<30 digits> (422)
       infinite_hop                   {"hop": 1e999} (422)
The chunked bodies go over a raw socket, 1 MB of zeros a chunk, until the server answers or
closes; the bytes sent until then bound what the server read.

A sampler reads the server's RSS (its process and any children) and the bytes on disk under its
home and TMPDIR (files there, and spool files it holds open after deleting them) every 0.1 s. Reported per
phase: normal requests completed, requests/min, p50 / p95 / max latency, normal errors; the
attacks sent by kind with their statuses; 5xx responses; the server's peak RSS, CPU seconds and
write_bytes (/proc/<pid>/io); disk bytes at the start, peak and end; this client's own CPU
seconds. Writes hostile.json and hostile.md; the exit status is 1 when any response was a 5xx.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import httpx

from bench_serve import free_port, machine, percentile
from emofusion.media.synth import make_clip, make_face_image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from media_factory import make_long_claim_mp4  # noqa: E402  (the tests' lying-file factory)

EMOFUSION = str(Path(sys.executable).with_name("emofusion"))
MB = 1024 * 1024
ATTACK_BODY_BYTES = 400 * MB
CHUNK_FRAME = b"%x\r\n" % MB + bytes(MB) + b"\r\n"  # one 1 MB chunk of zeros, framed
RAW_TIMEOUT = 30.0  # every raw socket operation
ATTACK_TIMEOUT = 120.0  # an attack over httpx (the 10-hour claim waits for an analysis slot)
NORMAL_TIMEOUT = 300.0  # as bench_serve.py
SAMPLE_SECONDS = 0.1
LOGIN_BURST = 10
VICTIM = {"email": "victim@example.com", "password": "correct horse battery staple"}
TINY_WINDOWS = json.dumps({"window": 0.001, "hop": 0.000001})
NESTED_OPTIONS = '{"a":' * 2000 + "1" + "}" * 2000
INFINITE_HOP = '{"hop": 1e999}'
HUGE_OFFSET = "9" * 30
NO_ANSWER = "no answer"


# -- the server process, seen from /proc ----------------------------------------------------------------
def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants (those alive now)."""
    pids, todo = [], [pid]
    while todo:
        current = todo.pop()
        pids.append(current)
        try:
            tasks = os.listdir(f"/proc/{current}/task")
        except FileNotFoundError:
            continue
        for tid in tasks:
            try:
                todo.extend(int(c) for c in Path(f"/proc/{current}/task/{tid}/children").read_text().split())
            except FileNotFoundError:
                pass
    return pids


def tree_rss_bytes(pid: int) -> int:
    """Resident memory of `pid` and its descendants (VmRSS)."""
    total = 0
    for p in process_tree(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except FileNotFoundError:
            pass
    return total


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by `pid` and its live descendants."""
    ticks = 0
    for p in process_tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return ticks / os.sysconf("SC_CLK_TCK")


def io_counters(pid: int) -> dict[str, int]:
    """/proc/<pid>/io: write_bytes (bytes the process caused to be written to storage) and
    cancelled_write_bytes (of those, dropped because the file was truncated or deleted first)."""
    counters = dict(line.split(": ") for line in Path(f"/proc/{pid}/io").read_text().splitlines())
    return {k: int(counters[k]) for k in ("write_bytes", "cancelled_write_bytes")}


def disk_bytes(root: Path, pid: int) -> int:
    """Bytes in the files under `root`, plus the files under it that the server holds open after
    deleting them (anonymous temporary files, e.g. multipart spools)."""
    total = 0
    for folder, _, names in os.walk(root):
        for name in names:
            try:
                total += os.stat(os.path.join(folder, name)).st_size
            except FileNotFoundError:
                pass
    prefix = str(root)
    for p in process_tree(pid):
        try:
            fds = os.listdir(f"/proc/{p}/fd")
        except FileNotFoundError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{p}/fd/{fd}")
                if target.startswith(prefix) and target.endswith(" (deleted)"):
                    total += os.stat(f"/proc/{p}/fd/{fd}").st_size
            except FileNotFoundError:
                pass
    return total


class Sampler:
    """Every SAMPLE_SECONDS, the server's RSS and the disk bytes under its folder, kept with the
    time, so a phase can take its peaks from its own stretch."""

    def __init__(self, pid: int, root: Path):
        self.pid, self.root = pid, root
        self.samples: list[tuple[float, int, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.samples.append((time.perf_counter(), tree_rss_bytes(self.pid), disk_bytes(self.root, self.pid)))
            except (FileNotFoundError, ProcessLookupError):  # the server is gone; the phase reports it
                pass
            self._stop.wait(SAMPLE_SECONDS)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def peaks(self, began: float, ended: float) -> tuple[int, int]:
        """(peak RSS, peak disk bytes) among the samples taken between `began` and `ended`."""
        window = [(rss, disk) for t, rss, disk in list(self.samples) if began <= t <= ended]
        return max((r for r, _ in window), default=0), max((d for _, d in window), default=0)


# -- what the clients see ---------------------------------------------------------------------------------
@dataclass
class Target:
    """The server under test and what the attacks send it."""

    url: str
    port: int
    clip: bytes  # the normal clients' 10 s clip
    small_clip: bytes  # 2 s, for the attacks that upload a real file
    lying_clip: bytes  # 2 s whose headers claim 10 hours
    attacker_key: str


@dataclass
class Outcome:
    """One attack's answers: a status per request (None: no answer came), and what it measured."""

    statuses: list[int | None]
    bytes_before_answer: int | None = None
    media_seconds: float | None = None


@dataclass
class KindTally:
    """One kind's requests in a phase: how many, their statuses, seconds per attack, what it measured."""

    sent: int = 0
    statuses: Counter = field(default_factory=Counter)
    seconds: list[float] = field(default_factory=list)
    max_bytes_before_answer: int | None = None
    max_media_seconds: float | None = None
    first_errors: list[str] = field(default_factory=list)


class Tally:
    """Responses of one phase, by kind (`normal` and each attack), safe to add to from threads."""

    def __init__(self) -> None:
        self.kinds: dict[str, KindTally] = {}
        self.latencies: list[float] = []
        self._lock = threading.Lock()

    def _kind(self, kind: str) -> KindTally:
        return self.kinds.setdefault(kind, KindTally())

    def normal(self, status: int | None, latency: float, error: str | None) -> None:
        """One normal request: its status, and its latency when it completed (2xx with emotions)."""
        with self._lock:
            k = self._kind("normal")
            k.sent += 1
            k.statuses[status if status is not None else NO_ANSWER] += 1
            if error is None:
                self.latencies.append(latency)
            elif len(k.first_errors) < 3:
                k.first_errors.append(error)

    def attack(self, kind: str, outcome: Outcome, seconds: float) -> None:
        with self._lock:
            k = self._kind(kind)
            k.sent += len(outcome.statuses)
            k.statuses.update(s if s is not None else NO_ANSWER for s in outcome.statuses)
            k.seconds.append(seconds)
            if outcome.bytes_before_answer is not None:
                k.max_bytes_before_answer = max(k.max_bytes_before_answer or 0, outcome.bytes_before_answer)
            if outcome.media_seconds is not None:
                k.max_media_seconds = max(k.max_media_seconds or 0.0, outcome.media_seconds)

    def attack_failed(self, kind: str, error: str, seconds: float) -> None:
        """An attack that raised before it had an answer (counted as one request with no answer)."""
        with self._lock:
            k = self._kind(kind)
            k.sent += 1
            k.statuses[NO_ANSWER] += 1
            k.seconds.append(seconds)
            if len(k.first_errors) < 3:
                k.first_errors.append(error)

    def five_xx(self) -> int:
        return sum(n for k in self.kinds.values() for s, n in k.statuses.items() if isinstance(s, int) and s >= 500)


def normal_loop(target: Target, stop_at: float, tally: Tally) -> None:
    """POST the 10 s clip to /invocations until `stop_at` (the request in flight then finishes)."""
    with httpx.Client(timeout=NORMAL_TIMEOUT) as client:
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            try:
                r = client.post(target.url + "/invocations", content=target.clip, headers={"Content-Type": "video/mp4"})
            except httpx.HTTPError as exc:
                tally.normal(None, 0.0, f"{type(exc).__name__}: {exc}")
                continue
            latency = time.perf_counter() - started
            if not r.is_success:
                tally.normal(r.status_code, latency, f"{r.status_code}: {r.text[:200]}")
            else:
                try:
                    empty = not r.json()["emotions"]
                except (ValueError, KeyError):
                    tally.normal(r.status_code, latency, f"malformed answer: {r.text[:200]}")
                    continue
                tally.normal(r.status_code, latency, "empty answer" if empty else None)


# -- the attacks ------------------------------------------------------------------------------------------
def answer_status(sock: socket.socket) -> int | None:
    """The status code of the answer waiting on `sock`, or None when it closes or resets without one."""
    data = b""
    try:
        while b"\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    except OSError:
        pass
    parts = data.split(b" ", 2)
    return int(parts[1]) if len(parts) >= 2 and parts[0].startswith(b"HTTP/") and parts[1].isdigit() else None


def send_chunked(port: int, path: str, content_type: str, prefix: bytes = b"") -> Outcome:
    """POST `prefix` and then up to ATTACK_BODY_BYTES of zeros as a chunked body over a raw
    socket, stopping as soon as the server answers or closes; the outcome holds the bytes of
    zeros sent until then."""
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=RAW_TIMEOUT) as sock:
        try:
            sock.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n"
                         "Transfer-Encoding: chunked\r\n\r\n".encode())
            if prefix:
                sock.sendall(b"%x\r\n" % len(prefix) + prefix + b"\r\n")
            while sent < ATTACK_BODY_BYTES and not select.select([sock], [], [], 0)[0]:
                sock.sendall(CHUNK_FRAME)
                sent += MB
            if sent >= ATTACK_BODY_BYTES:
                sock.sendall(b"0\r\n\r\n")
        except OSError:  # reset or closed by the server while we were sending, or a timeout
            pass
        return Outcome([answer_status(sock)], bytes_before_answer=sent)


def file_part_head(name: str) -> bytes:
    return (f'--B0UND\r\nContent-Disposition: form-data; name="{name}"; filename="a.mp4"\r\n'
            "Content-Type: video/mp4\r\n\r\n").encode()


def chunked_raw_invocations(client: httpx.Client, target: Target) -> Outcome:
    return send_chunked(target.port, "/invocations", "video/mp4")


def chunked_multipart_invocations(client: httpx.Client, target: Target) -> Outcome:
    return send_chunked(target.port, "/invocations", "multipart/form-data; boundary=B0UND", file_part_head("video"))


def chunked_multipart_v1_no_key(client: httpx.Client, target: Target) -> Outcome:
    return send_chunked(target.port, "/v1/analyses", "multipart/form-data; boundary=B0UND", file_part_head("file"))


def submit_small(client: httpx.Client, target: Target, options: str) -> Outcome:
    """The 2 s clip to /v1/analyses with the attacker's key and these options."""
    r = client.post(target.url + "/v1/analyses", files={"file": ("clip.mp4", target.small_clip, "video/mp4")},
                    data={"options": options}, headers={"Authorization": f"Bearer {target.attacker_key}"})
    return Outcome([r.status_code])


def tiny_windows(client: httpx.Client, target: Target) -> Outcome:
    return submit_small(client, target, TINY_WINDOWS)


def ten_hour_claim_mp4(client: httpx.Client, target: Target) -> Outcome:
    r = client.post(target.url + "/invocations", content=target.lying_clip, headers={"Content-Type": "video/mp4"})
    return Outcome([r.status_code], media_seconds=r.json()["media"]["duration"] if r.status_code == 200 else None)


def wrong_passwords(client: httpx.Client, target: Target) -> Outcome:
    """LOGIN_BURST log-ins at once for the victim's account, each with a different wrong password."""

    def guess(k: int) -> int | None:
        try:
            wrong = {"email": VICTIM["email"], "password": f"wrong guess {k} {time.time_ns()}"}
            return client.post(target.url + "/auth/login", json=wrong).status_code
        except httpx.HTTPError:
            return None

    with ThreadPoolExecutor(LOGIN_BURST) as pool:
        return Outcome(list(pool.map(guess, range(LOGIN_BURST))))


def api_key_mints_key(client: httpx.Client, target: Target) -> Outcome:
    r = client.post(target.url + "/v1/keys", json={"name": "backdoor"},
                    headers={"Authorization": f"Bearer {target.attacker_key}"})
    return Outcome([r.status_code])


def nested_options(client: httpx.Client, target: Target) -> Outcome:
    return submit_small(client, target, NESTED_OPTIONS)


def huge_offset(client: httpx.Client, target: Target) -> Outcome:
    r = client.get(f"{target.url}/v1/analyses?offset={HUGE_OFFSET}",
                   headers={"Authorization": f"Bearer {target.attacker_key}"})
    return Outcome([r.status_code])


def infinite_hop(client: httpx.Client, target: Target) -> Outcome:
    return submit_small(client, target, INFINITE_HOP)


Attack = Callable[[httpx.Client, Target], Outcome]
# each attack and the statuses the hardened server owes it
ATTACKS: dict[str, tuple[Attack, frozenset[int]]] = {
    "chunked_raw_invocations": (chunked_raw_invocations, frozenset({413})),
    "chunked_multipart_invocations": (chunked_multipart_invocations, frozenset({413})),
    "chunked_multipart_v1_no_key": (chunked_multipart_v1_no_key, frozenset({401})),
    "tiny_windows": (tiny_windows, frozenset({422})),
    "ten_hour_claim_mp4": (ten_hour_claim_mp4, frozenset({200, 422})),
    "wrong_passwords": (wrong_passwords, frozenset({401, 429, 503})),
    "api_key_mints_key": (api_key_mints_key, frozenset({403})),
    "nested_options": (nested_options, frozenset({422})),
    "huge_offset": (huge_offset, frozenset({422})),
    "infinite_hop": (infinite_hop, frozenset({422})),
}


def attacker_loop(first: int, target: Target, stop_at: float, tally: Tally) -> None:
    """Go round ATTACKS, starting at the `first`-th, until `stop_at` (the attack in flight then finishes)."""
    kinds = list(ATTACKS)
    turn = first
    with httpx.Client(timeout=ATTACK_TIMEOUT) as client:
        while time.perf_counter() < stop_at:
            kind = kinds[turn % len(kinds)]
            turn += 1
            started = time.perf_counter()
            try:
                outcome = ATTACKS[kind][0](client, target)
            except (httpx.HTTPError, OSError, ValueError, KeyError) as exc:
                tally.attack_failed(kind, f"{type(exc).__name__}: {exc}", time.perf_counter() - started)
                continue
            tally.attack(kind, outcome, time.perf_counter() - started)


# -- a phase ------------------------------------------------------------------------------------------------
def run_phase(target: Target, pid: int, sampler: Sampler, clients: int, attackers: int,
              seconds: float) -> dict[str, Any]:
    """`clients` normal threads (and `attackers` attacker threads) for `seconds`; everything the
    phase measured."""
    tally = Tally()
    io_before, cpu_before, own_before = io_counters(pid), tree_cpu_seconds(pid), os.times()
    began = time.perf_counter()
    disk_start, rss_start = disk_bytes(sampler.root, pid), tree_rss_bytes(pid)
    stop_at = began + seconds
    threads = [threading.Thread(target=normal_loop, args=(target, stop_at, tally)) for _ in range(clients)]
    threads += [threading.Thread(target=attacker_loop, args=(i * len(ATTACKS) // attackers, target, stop_at, tally))
                for i in range(attackers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ended = time.perf_counter()
    wall = ended - began
    io_after, cpu_after, own_after = io_counters(pid), tree_cpu_seconds(pid), os.times()
    peak_rss, peak_disk = sampler.peaks(began, ended)
    lat = tally.latencies
    normal = tally.kinds.get("normal", KindTally())
    return {
        "wall_seconds": round(wall, 1),
        "normal": {
            "completed": len(lat), "requests_per_minute": round(60 * len(lat) / wall, 1),
            "latency_p50_s": round(statistics.median(lat), 2) if lat else None,
            "latency_p95_s": round(percentile(lat, 0.95), 2) if lat else None,
            "latency_max_s": round(max(lat), 2) if lat else None,
            "errors": normal.sent - len(lat), "statuses": {str(s): n for s, n in normal.statuses.items()},
            "first_errors": normal.first_errors,
        },
        "attacks": {kind: attack_summary(tally.kinds[kind], expected) for kind, (_, expected) in ATTACKS.items()
                    if kind in tally.kinds},
        "five_xx": tally.five_xx(),
        "server": {
            "rss_start_mb": round(rss_start / MB, 1), "peak_rss_mb": round(max(peak_rss, rss_start) / MB, 1),
            "cpu_seconds": round(cpu_after - cpu_before, 1),
            "write_bytes": io_after["write_bytes"] - io_before["write_bytes"],
            "cancelled_write_bytes": io_after["cancelled_write_bytes"] - io_before["cancelled_write_bytes"],
        },
        "disk": {"start_bytes": disk_start, "peak_bytes": max(peak_disk, disk_start),
                 "end_bytes": disk_bytes(sampler.root, pid)},
        "client_cpu_seconds": round((own_after.user + own_after.system) - (own_before.user + own_before.system), 1),
    }


def attack_summary(k: KindTally, expected: frozenset[int]) -> dict[str, Any]:
    """One attack kind's requests, statuses, unexpected answers and time per attack (client side)."""
    summary: dict[str, Any] = {
        "sent": k.sent, "statuses": {str(s): n for s, n in sorted(k.statuses.items(), key=str)},
        "expected": sorted(expected), "unexpected": sum(n for s, n in k.statuses.items() if s not in expected),
        "attacks": len(k.seconds), "mean_seconds": round(statistics.mean(k.seconds), 2) if k.seconds else None,
        "max_seconds": round(max(k.seconds), 2) if k.seconds else None,
    }
    if k.max_bytes_before_answer is not None:
        summary["max_mb_sent_before_answer"] = round(k.max_bytes_before_answer / MB, 1)
    if k.max_media_seconds is not None:
        summary["max_media_duration_s"] = round(k.max_media_seconds, 2)
    if k.first_errors:
        summary["first_errors"] = k.first_errors
    return summary


# -- the run -------------------------------------------------------------------------------------------------
def wait_ready(server: subprocess.Popen, url: str, log: Path) -> None:
    """Until the server answers /ping; RuntimeError with its log's tail if it exits or takes 120 s."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited with {server.returncode}:\n{log.read_text()[-2000:]}")
        try:
            if httpx.get(url + "/ping", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the server did not answer /ping in 120 s:\n{log.read_text()[-2000:]}")


def markdown(result: dict[str, Any]) -> str:
    """The report: both phases side by side, then the attacks of the second phase."""
    quiet, loud = result["phases"]["normal_only"], result["phases"]["normal_plus_attackers"]

    def row(label: str, get: Callable[[dict[str, Any]], Any]) -> str:
        return f"| {label} | {get(quiet)} | {get(loud)} |\n"

    def mb(n: int) -> str:
        return f"{n / MB:.1f}"

    md = (f"# Hostile clients beside normal ones\n\nMachine: {result['machine']}. One `emofusion serve` "
          f"(bundled model, SQLite, local storage, EMOFUSION_MAX_UPLOAD_MB={result['max_upload_mb']:g}) for the whole "
          f"run: {result['clients']} normal clients each POST a {result['clip']} clip to /invocations in a loop; "
          f"phase 1 normal only, then phase 2 with {result['attackers']} attacker threads beside them on the same "
          f"server, {result['seconds_per_phase']:g} s each.\n\n"
          f"**5xx responses, all requests of both phases: {result['five_xx_total']}**\n\n"
          "| | normal only | normal + attackers |\n|---|---|---|\n")
    md += row("normal completed", lambda p: p["normal"]["completed"])
    md += row("normal requests/min", lambda p: p["normal"]["requests_per_minute"])
    md += row("p50 / p95 / max latency (s)", lambda p: " / ".join(
        str(p["normal"][f"latency_{q}_s"]) for q in ("p50", "p95", "max")))
    md += row("normal errors", lambda p: p["normal"]["errors"])
    md += row("5xx responses", lambda p: p["five_xx"])
    md += row("server peak RSS (MB)", lambda p: p["server"]["peak_rss_mb"])
    md += row("server CPU (s)", lambda p: p["server"]["cpu_seconds"])
    md += row("disk, home + TMPDIR: start / peak / end (MB)", lambda p: " / ".join(
        mb(p["disk"][f"{when}_bytes"]) for when in ("start", "peak", "end")))
    md += row("server write_bytes (MB)", lambda p: mb(p["server"]["write_bytes"]))
    md += row("benchmark client CPU (s)", lambda p: p["client_cpu_seconds"])
    md += (f"\nNormal requests/min with attackers / without: **{result['normal_rpm_ratio']}**.\n\n"
           "## Attacks (phase 2)\n\n| attack | requests | statuses | expected | unexpected | mean / max s per attack "
           "| notes |\n|---|---|---|---|---|---|---|\n")
    for kind, a in loud["attacks"].items():
        notes = []
        if "max_mb_sent_before_answer" in a:
            notes.append(f"at most {a['max_mb_sent_before_answer']} MB sent before the answer")
        if "max_media_duration_s" in a:
            notes.append(f"answered duration at most {a['max_media_duration_s']} s")
        statuses = ", ".join(f"{s}: {n}" for s, n in a["statuses"].items())
        md += (f"| {kind} | {a['sent']} | {statuses} | {', '.join(map(str, a['expected']))} | {a['unexpected']} "
               f"| {a['mean_seconds']} / {a['max_seconds']} | {'; '.join(notes)} |\n")
    log = result["server_log"]
    md += (f"\nServer log: {log['error_lines']} ERROR lines, {log['tracebacks']} tracebacks. Disk counts every file "
           "under the server's home and TMPDIR, and the spool files it holds open after deleting them.\n")
    return md


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--attackers", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=60.0, help="length of each phase")
    parser.add_argument("--max-upload-mb", type=float, default=20.0, help="EMOFUSION_MAX_UPLOAD_MB")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="emofusion-hostile-"))
    clips, server_dir, log = root / "clips", root / "server", root / "server.log"
    clips.mkdir()
    (server_dir / "tmp").mkdir(parents=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "EMOFUSION_HOME": str(server_dir / "home"), "TMPDIR": str(server_dir / "tmp"),
           "EMOFUSION_MAX_UPLOAD_MB": f"{args.max_upload_mb:g}", "EMOFUSION_COOKIE_SECURE": "0",
           "EMOFUSION_REQUESTS_PER_DAY": "unlimited", "EMOFUSION_MEDIA_MINUTES_PER_MONTH": "unlimited",
           "EMOFUSION_KEY_REQUESTS_PER_MINUTE": "unlimited"}
    server: subprocess.Popen | None = None
    try:
        target = Target(
            url=url, port=port,
            clip=make_clip(clips / "clip.mp4", duration=10.0, width=1280, height=720, fps=30,
                           face=make_face_image(200), modulate=True).read_bytes(),
            small_clip=make_clip(clips / "small.mp4", duration=2.0, width=320, height=240, face=make_face_image(80),
                                 modulate=True).read_bytes(),
            lying_clip=make_long_claim_mp4(clips / "lying.mp4", real_seconds=2.0, claimed_seconds=36000.0,
                                           width=320, height=240).read_bytes(),
            attacker_key=subprocess.run([EMOFUSION, "keys", "create", "--name", "attacker", "--user",
                                         "attacker@example.com"], env=env, capture_output=True, text=True,
                                        check=True).stdout.strip())
        with log.open("wb") as log_file:
            server = subprocess.Popen([EMOFUSION, "serve", "--port", str(port), "--log-level", "warning"], env=env,
                                      stdout=subprocess.DEVNULL, stderr=log_file)
        wait_ready(server, url, log)
        r = httpx.post(url + "/auth/signup", json=VICTIM, timeout=60)
        if r.status_code != 202:
            raise RuntimeError(f"sign-up of the victim's account: {r.status_code} {r.text}")
        r = httpx.post(url + "/invocations", content=target.clip, headers={"Content-Type": "video/mp4"},
                       timeout=NORMAL_TIMEOUT)  # model and code paths warm
        r.raise_for_status()
        sampler = Sampler(server.pid, server_dir)
        sampler.start()
        try:
            print(f"phase 1: {args.clients} normal clients, {args.seconds:g} s", flush=True)
            quiet = run_phase(target, server.pid, sampler, args.clients, 0, args.seconds)
            print(f"phase 2: {args.clients} normal clients + {args.attackers} attackers, {args.seconds:g} s",
                  flush=True)
            loud = run_phase(target, server.pid, sampler, args.clients, args.attackers, args.seconds)
        finally:
            sampler.stop()
        if server.poll() is not None:
            raise RuntimeError(f"the server exited with {server.returncode} during the run:\n{log.read_text()[-2000:]}")
    finally:
        if server is not None:
            server.terminate()
            try:
                server.wait(timeout=120)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(timeout=30)
        server_log = log.read_text(errors="replace") if log.exists() else ""
        shutil.rmtree(root, ignore_errors=True)

    quiet_rpm = quiet["normal"]["requests_per_minute"]
    result = {
        "clients": args.clients, "attackers": args.attackers, "seconds_per_phase": args.seconds,
        "max_upload_mb": args.max_upload_mb, "clip": "10 s, 1280x720, 30 fps, H.264 + AAC",
        "order": "phase 1 normal only, then phase 2 normal + attackers, on the same server process",
        "five_xx_total": quiet["five_xx"] + loud["five_xx"],
        "normal_rpm_ratio": round(loud["normal"]["requests_per_minute"] / quiet_rpm, 2) if quiet_rpm else None,
        "phases": {"normal_only": quiet, "normal_plus_attackers": loud},
        "server_log": {"error_lines": sum("ERROR" in line for line in server_log.splitlines()),
                       "tracebacks": server_log.count("Traceback")},
        "machine": machine(),
    }
    print(json.dumps(result, indent=2))
    print(f"\n5xx responses, all requests of both phases: {result['five_xx_total']}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "hostile.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "hostile.md").write_text(markdown(result))
    if result["five_xx_total"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
