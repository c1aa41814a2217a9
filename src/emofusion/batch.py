"""`emofusion batch`: analyse many inputs into one JSON-lines file, resumably, on local
worker processes or on Ray Data.

    run_batch(["a.mp4", "b.mp4"], "results.jsonl", workers=2)          -> BatchSummary
    run_batch(read_manifest("clips.csv"), "results.jsonl", engine="ray") -> BatchSummary

Each input becomes one line of the output: the analysis contract (`Analysis.to_dict()`) with
`"input"` (the input string as given) added, or `{"input": ..., "error": {"code", "message"}}`
when that input cannot be analysed. Lines are appended and flushed as inputs finish, in the
order they finish, so a run that is stopped keeps what it did; running it again skips the
inputs the output already has (the last line per input wins; inputs whose last line is an
error are analysed again only with `retry_failed`).

Engines:
  - local, N workers (default: one per usable CPU core): N spawned processes, each loading the
    model once and working on one core (pinned to it where the OS allows, torch and OpenCV
    limited to one thread), at most 2 inputs queued per worker; a worker that dies takes
    only its current input with it (an error line `worker_crashed`) and is replaced. One
    input analysed with all cores is `emofusion analyze`; a batch gains more from one input
    per core (no thread hand-offs inside an analysis);
  - ray: Ray Data, `from_items` -> `map_batches(<decode actors>)` -> `map_batches(<model
    actors>)`, two fixed pools of N actors. A decode actor decodes each input's sampled frames
    and finds and crops the faces (`Analyzer.observe_faces`, CPU only); a model actor runs the
    nets, the voice and text paths and the fusion on them (`Analyzer.analyze(...,
    face_observations=...)`), with a share of the GPUs when the cluster has them. A decode
    actor and a model actor ask for half a CPU each, so one worker is one CPU, the two stages
    overlapping on consecutive inputs. Rows are written as they stream back. Paths must be
    readable where the actors run.

Memory stays bounded: results are written as they arrive and never kept; what is kept per
input is its key (and, while it is in flight, its task).
"""

from __future__ import annotations

import csv
import json
import logging
import os
import socket
import subprocess
import sys
import time
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional

from .cores import usable_cores
from .errors import BatchError, EmofusionError, ExternalAudioError, InvalidOptions, ManifestError, RayConnectError
from .models.loading import load_model
from .options import AnalysisOptions

logger = logging.getLogger("emofusion.batch")

ENGINES = ("local", "ray")
MANIFEST_COLUMNS = ("path", "audio", "transcript", "text")
IN_FLIGHT_PER_WORKER = 2  # one running, one waiting: at most 2*N inputs in flight
RAY_CONNECT_TIMEOUT = 25.0  # seconds to decide that a --ray-address does not answer
RAY_INSTALL_HINT = "ray is not installed (pip install 'emofusion[ray]')"

ProgressCallback = Callable[[int, int, int], None]  # (finished, failed, total to do)


# --------------------------------------------------------------------------------------
# Errors and results


class BatchInterrupted(KeyboardInterrupt):
    """The run was interrupted (Ctrl-C); `summary` counts what was written before."""

    def __init__(self, summary: "BatchSummary"):
        super().__init__()
        self.summary = summary


@dataclass(frozen=True)
class BatchItem:
    """One input: `input` is the key written to the output (the string as given); `path`
    (and the optional `audio`, `transcript`) are what is read. `error` marks a row that
    cannot be analysed at all, e.g. a bad manifest line: (code, message)."""

    input: str
    path: Optional[str] = None
    audio: Optional[str] = None
    transcript: Optional[str] = None
    text: Optional[str] = None
    error: Optional[tuple[str, str]] = None

    def task(self) -> dict[str, Any]:
        return {"input": self.input, "path": self.path, "audio": self.audio,
                "transcript": self.transcript, "text": self.text}

    def absolute(self) -> "BatchItem":
        """The same item with its files as absolute paths (for processes with another cwd)."""
        def absolute(p: Optional[str]) -> Optional[str]:
            return os.path.abspath(os.path.expanduser(p)) if p else p

        return BatchItem(self.input, absolute(self.path), absolute(self.audio), absolute(self.transcript),
                         self.text, self.error)


@dataclass
class BatchSummary:
    """What one run did. `failed` counts the error lines this run wrote; `failed_before`
    the inputs skipped because the output already had an error line for them."""

    out: str
    total: int = 0  # distinct inputs
    analysed: int = 0
    failed: int = 0
    skipped: int = 0
    failed_before: int = 0
    duplicates: int = 0
    seconds: float = 0.0
    engine: str = "local"
    workers: int = 1
    interrupted: bool = False

    @property
    def exit_code(self) -> int:
        """0 when every input has a result, 1 when some have an error line."""
        return 1 if (self.failed or self.failed_before) else 0

    def line(self) -> str:
        text = (f"done: {self.analysed} analysed, {self.failed} failed, {self.skipped} skipped "
                f"(already in the output) in {self.seconds:.1f} s")
        if self.failed_before:
            text += f"; {self.failed_before} of the skipped have error lines (--retry-failed analyses them again)"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("out", "total", "analysed", "failed", "skipped", "failed_before",
                                               "duplicates", "seconds", "engine", "workers", "interrupted")}


# --------------------------------------------------------------------------------------
# Inputs: the command line and manifests


def _resolve(base: Path, value: Optional[str]) -> Optional[str]:
    if not value:
        return None
    p = Path(os.path.expanduser(value))
    return str(p if p.is_absolute() else base / p)


def read_manifest(manifest: str | os.PathLike) -> list[BatchItem]:
    """The inputs listed in a CSV (header with `path`; optional `audio`, `transcript`, `text`)
    or JSON-lines manifest (objects with those keys). Relative paths are resolved against the
    manifest's folder; `input` stays as written. A row that cannot be used becomes an item
    with an error, keyed `<manifest>:<line>`. Raises ManifestError when the file as a whole
    cannot be read."""
    name = str(manifest)
    path = Path(os.path.expanduser(name))
    if not path.exists():
        raise ManifestError("--manifest", f"{name}: no such file")
    if path.is_dir():
        raise ManifestError("--manifest", f"{name}: is a folder, not a CSV or JSON-lines file")
    try:
        content = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise ManifestError("--manifest", f"{name}: not a UTF-8 text file (CSV or JSON lines)") from None
    except OSError as exc:
        raise ManifestError("--manifest", f"{name}: cannot read it: {exc.strerror or exc}") from None
    if not content.strip():
        raise ManifestError("--manifest", f"{name}: empty manifest")
    base = path.parent
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        kind = "jsonl"
    elif suffix in (".csv", ".tsv"):
        kind = "csv"
    else:
        kind = "jsonl" if content.lstrip().startswith("{") else "csv"
    if kind == "jsonl":
        return _read_jsonl_manifest(name, content, base)
    return _read_csv_manifest(name, content, base, delimiter="\t" if suffix == ".tsv" else ",")


def _bad_row(name: str, line: int, reason: str) -> BatchItem:
    return BatchItem(f"{name}:{line}", error=("invalid_manifest_row", reason))


def _item_from_row(name: str, line: int, row: dict[str, Any], base: Path) -> BatchItem:
    values: dict[str, Optional[str]] = {}
    for key in MANIFEST_COLUMNS:
        value = row.get(key)
        if value is None:
            values[key] = None
            continue
        if not isinstance(value, str):
            return _bad_row(name, line, f"{key!r} must be a string, not {type(value).__name__}")
        value = value.strip()
        values[key] = value or None
    if not values["path"]:
        return _bad_row(name, line, "no 'path' in this row")
    return BatchItem(values["path"], _resolve(base, values["path"]), _resolve(base, values["audio"]),
                     _resolve(base, values["transcript"]), values["text"])


def _read_csv_manifest(name: str, content: str, base: Path, delimiter: str = ",") -> list[BatchItem]:
    import io

    reader = csv.DictReader(io.StringIO(content, newline=""), delimiter=delimiter)
    try:
        header = [str(h).strip().lower() for h in (reader.fieldnames or [])]
    except csv.Error as exc:
        raise ManifestError("--manifest", f"{name}: unreadable CSV header: {exc}") from None
    if "path" not in header:
        found = ", ".join(repr(h) for h in header if h) or "nothing"
        raise ManifestError("--manifest", f"{name}: the header has no 'path' column (found: {found}); "
                                          "expected a CSV with path[,audio,transcript,text] or JSON lines")
    reader.fieldnames = header
    items: list[BatchItem] = []
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            items.append(_bad_row(name, reader.line_num, f"unreadable CSV row: {exc}"))
            continue
        if None in row:  # more fields than the header has
            items.append(_bad_row(name, reader.line_num, "more fields than the header has"))
            continue
        items.append(_item_from_row(name, reader.line_num, row, base))
    return items


def _read_jsonl_manifest(name: str, content: str, base: Path) -> list[BatchItem]:
    items: list[BatchItem] = []
    for number, line in enumerate(content.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            items.append(_bad_row(name, number, f"not valid JSON: {exc.msg} (column {exc.colno})"))
            continue
        if not isinstance(row, dict):
            items.append(_bad_row(name, number, f"not a JSON object (a {type(row).__name__})"))
            continue
        items.append(_item_from_row(name, number, row, base))
    return items


def as_items(inputs: Iterable[str | os.PathLike | BatchItem]) -> list[BatchItem]:
    items = []
    for x in inputs:
        items.append(x if isinstance(x, BatchItem) else BatchItem(str(x), str(x)))
    return items


def _dedupe(items: list[BatchItem]) -> tuple[list[BatchItem], int]:
    seen: set[str] = set()
    out, dupes = [], 0
    for item in items:
        if item.input in seen:
            dupes += 1
            logger.warning("duplicate input %s (analysed once)", item.input)
            continue
        seen.add(item.input)
        out.append(item)
    return out, dupes


# --------------------------------------------------------------------------------------
# The output file


def read_done(out: str | os.PathLike) -> dict[str, bool]:
    """{input: True if its last line in the output is a result, False if an error}.
    Lines that are not JSON objects with an `input` (e.g. one cut short by a kill) are ignored."""
    done: dict[str, bool] = {}
    path = Path(out)
    if not path.exists():
        return done
    with open(path, "rb") as f:
        for raw in f:
            try:
                row = json.loads(raw)
            except (ValueError, UnicodeDecodeError):
                continue
            if isinstance(row, dict) and isinstance(row.get("input"), str):
                done[row["input"]] = "error" not in row
    return done


class _Output:
    """Appends one line per finished input, flushed at once. The file is locked while the run
    lasts (where the OS has flock): two runs on one output would analyse inputs twice."""

    def __init__(self, path: Path):
        self.path = path
        try:
            self.file = open(path, "a", encoding="utf-8")
        except OSError as exc:
            raise BatchError("--out", f"cannot write {path}: {exc.strerror or exc}") from None
        try:
            import fcntl
        except ImportError:  # not POSIX: no lock
            fcntl = None
        if fcntl is not None:
            try:
                fcntl.flock(self.file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                self.file.close()
                raise BatchError("--out", f"another batch run is writing to {path}; one run per output file") from None
        # a line cut short by a kill must not swallow the next one
        if self.file.tell() > 0:
            with open(path, "rb") as f:
                f.seek(-1, os.SEEK_END)
                last = f.read(1)
            if last != b"\n":
                self.file.write("\n")
                self.file.flush()

    def write(self, line: str) -> None:
        self.file.write(line + "\n")
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def error_line(key: str, code: str, message: str) -> str:
    return json.dumps({"input": key, "error": {"code": code, "message": " ".join(str(message).split())}})


# --------------------------------------------------------------------------------------
# One input (the same code in this process, in a worker process, in a Ray actor)


def make_analyzer(model: Any, options: dict[str, Any], backend: str = "auto", precision: Optional[str] = None,
                  threads: Optional[int] = None):
    """An Analyzer for `model` (a name, folder or loaded model) with options (`AnalysisOptions.to_dict()`)."""
    from .analysis import Analyzer

    return Analyzer(load_model(model, backend, precision=precision, threads=threads, load_text_encoder=False),
                    options=AnalysisOptions.from_mapping(options))


def observe_task(analyzer, task: dict[str, Any]) -> Optional[list]:
    """The decode stage of one task (`Analyzer.observe_faces`), or None when it cannot be done
    here: the model stage then analyses the input whole and reports its error as usual."""
    path = task.get("path")
    try:
        if not path or not os.path.exists(path):
            return None
        return analyzer.observe_faces(path, audio=task.get("audio") or None)
    except Exception:  # the same failure comes back, with its error line, from analyze_task
        return None


def analyze_task(analyzer, task: dict[str, Any], face_observations: Optional[list] = None) -> tuple[bool, str]:
    """Analyse one task (BatchItem.task()) -> (ok, the JSON line). Never raises for a bad input."""
    key = task["input"]
    path, audio, transcript = task.get("path"), task.get("audio"), task.get("transcript")
    try:
        if not path or not os.path.exists(path):
            return False, error_line(key, "not_found", "no such file")
        if audio and not os.path.exists(audio):
            return False, error_line(key, "not_found", f"audio file {audio}: no such file")
        if transcript and not os.path.exists(transcript):
            return False, error_line(key, "not_found", f"transcript {transcript}: no such file")
        analysis = analyzer.analyze(path, audio=audio or None, transcript=transcript or None,
                                    text=task.get("text") or None, face_observations=face_observations)
    except ExternalAudioError as exc:
        return False, error_line(key, exc.code, f"audio file {audio}: {exc}")
    except EmofusionError as exc:
        return False, error_line(key, exc.code, str(exc))
    except Exception as exc:  # one input must never stop the run
        return False, error_line(key, "internal_error", f"{type(exc).__name__}: {exc}")
    return True, json.dumps({"input": key, **analysis.to_dict()})


def default_workers() -> int:
    """Local workers when none are asked for: one per usable core."""
    return len(usable_cores())


def least_used_core(cores: list[int], taken: list[Optional[int]]) -> int:
    """The core with the fewest workers on it (the first such one); a replaced worker's core is free again."""
    return min(cores, key=lambda c: (taken.count(c), cores.index(c)))


def _pin_to_core(core: Optional[int]) -> None:
    """Run this process (and the threads it starts) on `core` only, where the OS supports it."""
    if core is not None and hasattr(os, "sched_setaffinity"):
        try:
            os.sched_setaffinity(0, {core})
        except OSError:  # the core went away (CPU hot-plug, a changed cgroup): stay unpinned
            pass


def _limit_threads() -> None:
    import torch

    torch.set_num_threads(1)
    try:
        import cv2

        cv2.setNumThreads(1)
    except Exception:  # OpenCV without threading support
        pass


# --------------------------------------------------------------------------------------
# Local engine: worker processes


def _worker_main(conn, model: str, options: dict[str, Any], core: Optional[int], backend: str = "auto",
                 precision: Optional[str] = None) -> None:
    """A spawned worker on one core: load the model once, then analyse the tasks sent on `conn` in order."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    try:
        _pin_to_core(core)
        _limit_threads()
        analyzer = make_analyzer(model, options, backend, precision, 1)
    except Exception as exc:  # reported to the parent, which stops the run
        try:
            conn.send(("init_error", f"{type(exc).__name__}: {exc}"))
        except OSError:
            pass
        return
    conn.send(("ready", None))
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):  # the parent is gone
            return
        if task is None:
            return
        ok, line = analyze_task(analyzer, task)
        try:
            conn.send(("result", (task["input"], ok, line)))
        except (BrokenPipeError, OSError):
            return


@contextmanager
def _sigint_ignored() -> Iterator[None]:
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


class _Worker:
    def __init__(self, ctx, model: str, options: dict[str, Any], core: Optional[int], backend: str = "auto",
                 precision: Optional[str] = None):
        parent, child = ctx.Pipe(duplex=True)
        self.conn = parent
        self.core = core
        self.proc = ctx.Process(target=_worker_main, args=(child, model, options, core, backend, precision),
                                name="emofusion-batch-worker", daemon=True)
        with _sigint_ignored():  # inherited: Ctrl-C is the parent's to handle, even while a worker starts
            self.proc.start()
        child.close()
        self.assigned: deque[dict[str, Any]] = deque()  # sent, not answered yet, in order
        self.ready = False
        self.broken = False

    def send(self, task: dict[str, Any]) -> bool:
        try:
            self.conn.send(task)
        except OSError:  # the process is gone; noticed below
            self.broken = True
            return False
        self.assigned.append(task)
        return True

    def messages(self) -> Iterator[tuple[str, Any]]:
        """What the worker has sent so far (results sent just before a death included)."""
        while True:
            try:
                if not self.conn.poll():
                    return
                yield self.conn.recv()
            except (EOFError, OSError):
                self.broken = True
                return

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the worker to finish (timeout > 0), terminate it if it does not."""
        if self.proc.is_alive() and timeout > 0:
            try:
                self.conn.send(None)
            except OSError:
                pass
            self.proc.join(timeout)
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(5.0)
        self.conn.close()


def _run_pool(todo: list[BatchItem], emit: Callable[[str, bool, str], None], *, workers: int,
              model: str, options: dict[str, Any], backend: str = "auto", precision: Optional[str] = None) -> None:
    """Analyse `todo` on `workers` spawned processes; emit(key, ok, line) as each finishes.

    Each worker has at most IN_FLIGHT_PER_WORKER tasks sent to it and answers them in order,
    so when one dies the first unanswered task is the one it was analysing: that input gets
    a `worker_crashed` line, the others go back to the queue and a new worker takes over."""
    import multiprocessing
    from multiprocessing.connection import wait

    ctx = multiprocessing.get_context("spawn")
    cores = usable_cores()
    pending: deque[dict[str, Any]] = deque(item.task() for item in todo)
    pool: list[_Worker] = []
    startup_deaths = 0
    finished = False
    try:
        while pending or any(w.assigned for w in pool):
            in_flight = sum(len(w.assigned) for w in pool)
            while len(pool) < min(workers, len(pending) + in_flight):
                core = least_used_core(cores, [w.core for w in pool])
                pool.append(_Worker(ctx, model, options, core, backend, precision))
            for w in pool:
                while pending and not w.broken and len(w.assigned) < IN_FLIGHT_PER_WORKER:
                    task = pending.popleft()
                    if not w.send(task):
                        pending.appendleft(task)
            ready = wait([w.conn for w in pool] + [w.proc.sentinel for w in pool], timeout=1.0)
            for w in list(pool):
                for kind, payload in w.messages():
                    if kind == "ready":
                        w.ready = True
                    elif kind == "init_error":
                        raise BatchError("--model", f"a worker process could not load the model: {payload}")
                    elif kind == "result":
                        w.assigned.popleft()
                        emit(*payload)
                if not (w.broken or w.proc.sentinel in ready or not w.proc.is_alive()):
                    continue
                pool.remove(w)
                w.stop(timeout=1.0)
                code = w.proc.exitcode
                if not w.ready:  # died before taking any input (e.g. killed while loading)
                    startup_deaths += 1
                    if startup_deaths > 2 * workers:
                        raise BatchError("--workers", f"worker processes keep exiting while starting (exit code {code})")
                elif w.assigned:
                    task = w.assigned.popleft()
                    emit(task["input"], False, error_line(
                        task["input"], "worker_crashed",
                        f"the worker process died while analysing this input (exit code {code})"))
                pending.extendleft(reversed(w.assigned))
                w.assigned.clear()
        finished = True
    finally:
        for w in pool:  # on an error or Ctrl-C, at once
            w.stop(timeout=5.0 if finished else 0)


# --------------------------------------------------------------------------------------
# Ray engine


def _net_on_device(net, device):
    """`net` moved to `device`, called with and returning CPU tensors (its callers are unchanged)."""
    import torch

    class NetOnDevice(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net.to(device)

        def forward(self, x):
            return self.net(x.to(device)).float().cpu()

    return NetOnDevice().eval()


def _encoder_on_device(encoder_model, device):
    import torch

    class EncoderOnDevice(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = encoder_model.to(device)
            self.config = encoder_model.config

        def forward(self, **batch):
            from types import SimpleNamespace

            out = self.inner(**{k: v.to(device) for k, v in batch.items()})
            return SimpleNamespace(last_hidden_state=out.last_hidden_state.float().cpu())

    return EncoderOnDevice().eval()


def use_device(model, device: str) -> None:
    """Run the face and voice nets and the sentence encoder of a prepared EmotionModel on
    `device` (e.g. "cuda"); inputs and outputs stay CPU tensors, so the Analyzer is unchanged."""
    fast = model.__dict__.get("_fast") or {}
    for name in list(fast):
        fast[name] = _net_on_device(fast[name], device)
    if model.text is not None:
        encoder = model.encoder
        encoder.model = _encoder_on_device(encoder.model, device)


class RayFaceStage:
    """Ray Data callable class, the decode stage: each batch of tasks (a column of JSON strings)
    -> the same column and `faces`, each input's pickled face observations (b"" when this stage
    could not observe it; the model stage then analyses it whole). No net runs here."""

    def __init__(self, model: str, options: dict[str, Any], backend: str = "auto", precision: Optional[str] = None):
        _limit_threads()
        self.analyzer = make_analyzer(model, options, backend, precision, threads=1)  # its detector and crop settings

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        import pickle

        import numpy as np

        faces = []
        for raw in batch["task"]:
            observed = observe_task(self.analyzer, json.loads(str(raw)))
            faces.append(b"" if observed is None else pickle.dumps(observed, protocol=pickle.HIGHEST_PROTOCOL))
        return {"task": batch["task"], "faces": np.array(faces, dtype=object)}


class RayAnalyzer:
    """Ray Data callable class, the model stage: loads the model once per actor; each batch of
    tasks (a column of JSON strings, with the decode stage's `faces` when it ran) -> columns
    input / ok / line."""

    def __init__(self, model: str, options: dict[str, Any], use_gpu: bool = False, backend: str = "auto",
                 precision: Optional[str] = None):
        _limit_threads()
        self.analyzer = make_analyzer(model, options, backend, precision, threads=1)
        if use_gpu and getattr(self.analyzer.model, "backend", "torch") != "onnx":
            import torch

            if torch.cuda.is_available():
                use_device(self.analyzer.model, "cuda")

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        import numpy as np

        import pickle

        keys, oks, lines = [], [], []
        faces = batch.get("faces")
        for k, raw in enumerate(batch["task"]):
            task = json.loads(str(raw))
            observed = faces[k] if faces is not None else b""
            ok, line = analyze_task(self.analyzer, task, pickle.loads(observed) if observed else None)
            keys.append(task["input"])
            oks.append(ok)
            lines.append(line)
        return {"input": np.array(keys, dtype=object), "ok": np.array(oks, dtype=bool),
                "line": np.array(lines, dtype=object)}


def _import_ray():
    try:
        import ray  # noqa: F401
        import ray.data  # noqa: F401
    except ImportError:
        raise BatchError("--engine", RAY_INSTALL_HINT) from None
    return ray


def _split_address(address: str) -> tuple[str, int]:
    rest = address.split("://", 1)[1] if "://" in address else address
    rest = rest.strip().rstrip("/")
    default = 10001 if address.startswith("ray://") else 6379
    host, _, port = rest.rpartition(":") if ":" in rest else (rest, "", "")
    host = host.strip("[]")
    if not host:
        raise RayConnectError("--ray-address", f"cannot connect to the Ray cluster at {address}: not a host:port address")
    try:
        return host, int(port) if port else default
    except ValueError:
        raise RayConnectError("--ray-address", f"cannot connect to the Ray cluster at {address}: bad port {port!r}") from None


_PROBE = """
import logging, sys
import ray
ray.init(address=sys.argv[1], log_to_driver=False, logging_level=logging.ERROR)
print("ok", flush=True)
ray.shutdown()
"""


def check_ray_address(address: str, timeout: Optional[float] = None) -> None:
    """Raise RayConnectError unless a Ray cluster answers at `address` within `timeout`.

    ray.init() retries a dead address for minutes; here a TCP connect says at once whether
    anything listens there, then a driver connects in a child process that is killed when
    the time is up, so the answer comes in bounded time."""
    timeout = RAY_CONNECT_TIMEOUT if timeout is None else timeout
    if address == "auto":
        return
    failure = f"cannot connect to the Ray cluster at {address}"
    host, port = _split_address(address)
    try:
        with socket.create_connection((host, port), timeout=min(5.0, timeout)):
            pass
    except socket.gaierror as exc:
        raise RayConnectError("--ray-address", f"{failure}: unknown host {host!r} ({exc.strerror})") from None
    except socket.timeout:
        raise RayConnectError("--ray-address", f"{failure}: no answer from {host}:{port} (timed out)") from None
    except OSError as exc:
        raise RayConnectError("--ray-address", f"{failure}: {exc.strerror or exc}") from None
    try:
        probe = subprocess.run([sys.executable, "-c", _PROBE, address], capture_output=True, text=True,
                               timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise RayConnectError("--ray-address", f"{failure}: something listens on {host}:{port} but no Ray "
                                               f"cluster answered within {timeout:.0f} s") from None
    if probe.returncode != 0 or "ok" not in probe.stdout:
        errors = [ln for ln in probe.stderr.splitlines() if ln.strip() and not ln.startswith((" ", "Traceback"))]
        raise RayConnectError("--ray-address", f"{failure}: {errors[-1] if errors else 'ray.init failed'}")


@contextmanager
def _ray_session(ray, address: Optional[str], workers: int) -> Iterator[None]:
    """Use the Ray connection this process already has, else connect to `address` (checked
    first by run_batch), else start a local instance with `workers` CPUs; what this opened is
    closed at the end."""
    if ray.is_initialized():
        yield
        return
    logging.getLogger("ray").setLevel(logging.ERROR)
    if address:
        try:
            ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR)
        except Exception as exc:
            raise RayConnectError("--ray-address", f"cannot connect to the Ray cluster at {address}: {exc}") from None
    else:
        ray.init(address="local", num_cpus=workers, include_dashboard=False, log_to_driver=False,
                 logging_level=logging.ERROR, object_store_memory=256 * 1024 * 1024)
    try:
        yield
    finally:
        ray.shutdown()


def _map_batches(ds, fn, **kwargs):
    """ds.map_batches(fn, **kwargs) with actors that are not restarted: an actor that dies
    fails the run (running again resumes it) instead of retrying a poisonous input for ever,
    as Ray Data's default (restart and retry without end) would. Ray >= 2.60 deprecates
    passing such remote args; where a later Ray refuses them, its defaults apply."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            return ds.map_batches(fn, max_restarts=0, **kwargs)
        except TypeError:
            return ds.map_batches(fn, **kwargs)


def _run_ray(todo: list[BatchItem], emit: Callable[[str, bool, str], None], *, workers: int,
             model: str, options: dict[str, Any], ray_address: Optional[str], backend: str = "auto",
             precision: Optional[str] = None) -> None:
    ray = _import_ray()
    with _ray_session(ray, ray_address, workers):
        import ray.data

        logging.getLogger("ray.data").setLevel(logging.ERROR)
        ctx = ray.data.DataContext.get_current()
        saved = (ctx.enable_progress_bars, getattr(ctx, "print_on_execution_start", None))
        ctx.enable_progress_bars = False
        if saved[1] is not None:
            ctx.print_on_execution_start = False
        try:
            gpus = float(ray.cluster_resources().get("GPU", 0) or 0)
            gpu_share = min(1.0, gpus / workers) if gpus > 0 else 0.0
            ds = ray.data.from_items([{"task": json.dumps(item.absolute().task())} for item in todo])
            ds = _map_batches(
                ds,
                RayFaceStage,
                fn_constructor_kwargs={"model": model, "options": options, "backend": backend, "precision": precision},
                compute=ray.data.ActorPoolStrategy(size=workers),
                batch_size=1,
                num_cpus=0.5,
            )
            ds = _map_batches(
                ds,
                RayAnalyzer,
                fn_constructor_kwargs={"model": model, "options": options, "use_gpu": gpu_share > 0,
                                       "backend": backend, "precision": precision},
                compute=ray.data.ActorPoolStrategy(size=workers),
                batch_size=1,
                num_cpus=0.5,
                num_gpus=gpu_share or None,
            )
            try:
                for row in ds.iter_rows():
                    emit(str(row["input"]), bool(row["ok"]), str(row["line"]))
            except BatchError:
                raise
            except KeyboardInterrupt:
                raise
            except Exception as exc:
                reason = " ".join(str(exc).split())[:300]
                raise BatchError("--engine ray", code="batch_failed", reason=f"the Ray job failed: {type(exc).__name__}: {reason} "
                                                 "(what was done is in the output; run again to resume)") from None
        finally:
            ctx.enable_progress_bars = saved[0]
            if saved[1] is not None:
                ctx.print_on_execution_start = saved[1]


# --------------------------------------------------------------------------------------
# The run


def check_run_options(workers: Optional[int], engine: str, ray_address: Optional[str], out: Path) -> None:
    if engine not in ENGINES:
        raise BatchError("--engine", f"unknown engine {engine!r} (choose {' or '.join(ENGINES)})")
    if workers is not None and workers < 1:
        raise BatchError("--workers", f"must be at least 1 (got {workers})")
    if ray_address and engine != "ray":
        raise BatchError("--ray-address", "only with --engine ray")
    if out.is_dir():
        raise BatchError("--out", f"{out} is a folder; give the path of a .jsonl file")
    if not out.parent.exists():
        raise BatchError("--out", f"folder {out.parent} does not exist")


def _stat(path: Path) -> Optional[tuple[int, int]]:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def _plan(items: list[BatchItem], done: dict[str, bool], retry_failed: bool, summary: BatchSummary) -> list[BatchItem]:
    """The items to analyse now; counts the skipped ones into `summary`."""
    summary.skipped = summary.failed_before = 0
    todo = []
    for item in items:
        state = done.get(item.input)
        if state is True or (state is False and not retry_failed):
            summary.skipped += 1
            summary.failed_before += state is False
        else:
            todo.append(item)
    return todo


def _load_checked(model: str, options: dict[str, Any], backend: str = "auto", precision: Optional[str] = None):
    """Load the model and build an Analyzer here, so that a bad model or option is one usage
    error before any worker starts."""
    try:
        return make_analyzer(model, options, backend, precision)
    except EmofusionError as exc:
        raise BatchError(str(model), str(exc), code=exc.code) from None


def run_batch(
    inputs: Iterable[str | os.PathLike | BatchItem],
    out: str | os.PathLike,
    *,
    workers: Optional[int] = None,
    engine: str = "local",
    ray_address: Optional[str] = None,
    model: str | os.PathLike = "default",
    backend: str = "auto",
    precision: Optional[str] = None,
    analyzer_options: Optional[dict[str, Any] | AnalysisOptions] = None,
    retry_failed: bool = False,
    progress: Optional[ProgressCallback] = None,
    on_start: Optional[Callable[[Any], None]] = None,
) -> BatchSummary:
    """Analyse every input into the JSON-lines file `out` (appended) and return the counts.

    Inputs are paths or BatchItems (see read_manifest); duplicates are analysed once (a
    warning is logged). Inputs whose last line in `out` is a result are skipped, and those
    whose last line is an error too unless `retry_failed`. `analyzer_options` are an
    AnalysisOptions or its fields as a dict (window, hop, modalities, frames_per_second); `backend` / `precision` choose how the
    model runs (auto: ONNX Runtime for an `emofusion export` folder, PyTorch otherwise). `progress(finished, failed, total)`
    is called after each input. `on_start(analyzer)` is called once the model is checked
    (before any input). Raises BatchError (bad options, model, Ray address) before anything is
    written, BatchInterrupted on Ctrl-C."""
    t0 = time.monotonic()
    out_path = Path(os.path.expanduser(str(out)))
    if workers is None:
        workers = default_workers() if engine == "local" else 1
    check_run_options(workers, engine, ray_address, out_path)
    try:
        chosen = (analyzer_options if isinstance(analyzer_options, AnalysisOptions)
                  else AnalysisOptions.from_mapping(analyzer_options or {}))
    except InvalidOptions as exc:
        raise BatchError("analyzer_options", str(exc), code=exc.code) from None
    options = chosen.to_dict()  # plain data: it travels to worker processes and Ray actors
    if engine == "ray":
        ray = _import_ray()
        if ray_address and not ray.is_initialized():
            check_ray_address(ray_address)  # before the model loads: a dead address fails fast
    model_name = str(model)
    model_path = Path(os.path.expanduser(model_name))
    if model_path.exists():  # a folder: absolute, for processes with another cwd
        model_name = str(model_path.resolve())

    items, dupes = _dedupe(as_items(inputs))
    summary = BatchSummary(out=str(out_path), total=len(items), duplicates=dupes, engine=engine, workers=workers)
    seen = _stat(out_path)
    todo = _plan(items, read_done(out_path), retry_failed, summary)
    runnable = [item for item in todo if item.error is None]
    analyzer = _load_checked(model_name, options, backend, precision) if runnable else None
    if on_start is not None:
        on_start(analyzer)
    output = _Output(out_path)  # locked: one run per output file
    if _stat(out_path) != seen:  # written to since it was read (by a run that just ended)
        todo = _plan(items, read_done(out_path), retry_failed, summary)
        runnable = [item for item in todo if item.error is None]
        if runnable and analyzer is None:
            try:
                analyzer = _load_checked(model_name, options, backend, precision)
            except BaseException:
                output.close()
                raise

    total = len(todo)
    finished = 0

    def emit(key: str, ok: bool, line: str) -> None:
        nonlocal finished
        output.write(line)
        finished += 1
        if ok:
            summary.analysed += 1
        else:
            summary.failed += 1
        if progress is not None:
            progress(finished, summary.failed, total)

    try:
        if progress is not None:
            progress(0, 0, total)
        for item in todo:
            if item.error is not None:
                emit(item.input, False, error_line(item.input, *item.error))
        if runnable:
            if engine == "ray":
                _run_ray(runnable, emit, workers=workers, model=model_name, options=options, ray_address=ray_address,
                         backend=backend, precision=precision)
            else:
                del analyzer  # the workers load their own
                _run_pool(runnable, emit, workers=workers, model=model_name, options=options, backend=backend,
                          precision=precision)
    except KeyboardInterrupt:
        summary.interrupted = True
        summary.seconds = time.monotonic() - t0
        raise BatchInterrupted(summary) from None
    finally:
        output.close()
    summary.seconds = time.monotonic() - t0
    return summary
