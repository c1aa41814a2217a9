"""The local engine: spawned worker processes, one per core, each loading the model once."""

from __future__ import annotations

import os
from collections import deque
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Optional

from ..cores import usable_cores
from ..errors import BatchError
from .manifest import BatchItem
from .output import error_line
from .task import analyze_task, limit_threads, make_analyzer

IN_FLIGHT_PER_WORKER = 2  # one running, one waiting: at most 2*N inputs in flight


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


def _worker_main(conn, model: str, options: dict[str, Any], core: Optional[int], backend: str = "auto",
                 precision: Optional[str] = None) -> None:
    """A spawned worker on one core: load the model once, then analyse the tasks sent on `conn` in order."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    try:
        _pin_to_core(core)
        limit_threads()
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
    """SIGINT ignored while the block runs (in the main thread only; elsewhere nothing changes)."""
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
    """One spawned worker process, its pipe, and the tasks sent to it not answered yet."""

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


def run_pool(todo: list[BatchItem], emit: Callable[[str, bool, str], None], *, workers: int,
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
