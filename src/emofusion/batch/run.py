"""One batch run: check the options, plan what is left to do, run an engine, count."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

from ..errors import BatchError, EmofusionError, InvalidOptions
from ..options import AnalysisOptions
from .local import default_workers, run_pool
from .manifest import BatchItem, as_items, dedupe
from .output import BatchInterrupted, BatchSummary, LockedOutput, error_line, read_done
from .ray_engine import check_ray_address, import_ray, run_ray
from .task import make_analyzer

ENGINES = ("local", "ray")

ProgressCallback = Callable[[int, int, int], None]  # (finished, failed, total to do)


def check_run_options(workers: Optional[int], engine: str, ray_address: Optional[str], out: Path) -> None:
    """Raise BatchError for an engine, worker count, Ray address or output path that cannot be used."""
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
    """(size, mtime) of `path`, None when it does not exist: tells whether it changed."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def _plan(items: list[BatchItem], done: dict[str, bool], retry_failed: bool, summary: BatchSummary) -> list[BatchItem]:
    """The items to analyse now; counts the skipped ones into `summary`."""
    summary.skipped = summary.failed_before = 0
    summary.failed_inputs = []
    todo = []
    for item in items:
        state = done.get(item.input)
        if state is True or (state is False and not retry_failed):
            summary.skipped += 1
            summary.failed_before += state is False
            if state is False:
                summary.failed_inputs.append(item.input)
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
    whose last line is an error too unless `retry_failed` (the lines of the inputs retried are
    then removed from `out` before they are analysed again: one line per input). `analyzer_options` are an
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
        ray = import_ray()
        if ray_address and not ray.is_initialized():
            check_ray_address(ray_address)  # before the model loads: a dead address fails fast
    model_name = str(model)
    model_path = Path(os.path.expanduser(model_name))
    if model_path.exists():  # a folder: absolute, for processes with another cwd
        model_name = str(model_path.resolve())

    items, dupes = dedupe(as_items(inputs))
    summary = BatchSummary(out=str(out_path), total=len(items), duplicates=dupes, engine=engine, workers=workers)
    seen = _stat(out_path)
    done = read_done(out_path)
    todo = _plan(items, done, retry_failed, summary)
    runnable = [item for item in todo if item.error is None]
    analyzer = _load_checked(model_name, options, backend, precision) if runnable else None
    if on_start is not None:
        on_start(analyzer)
    output = LockedOutput(out_path)  # locked: one run per output file
    if _stat(out_path) != seen:  # written to since it was read (by a run that just ended)
        done = read_done(out_path)
        todo = _plan(items, done, retry_failed, summary)
        runnable = [item for item in todo if item.error is None]
        if runnable and analyzer is None:
            try:
                analyzer = _load_checked(model_name, options, backend, precision)
            except BaseException:
                output.close()
                raise

    # retried inputs: their old error lines go, so that the output keeps one line per input
    retried = {item.input for item in todo if done.get(item.input) is False}
    try:
        output.drop(retried)
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
            summary.failed_inputs.append(key)
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
                run_ray(runnable, emit, workers=workers, model=model_name, options=options, ray_address=ray_address,
                         backend=backend, precision=precision)
            else:
                del analyzer  # the workers load their own
                run_pool(runnable, emit, workers=workers, model=model_name, options=options, backend=backend,
                          precision=precision)
    except KeyboardInterrupt:
        summary.interrupted = True
        summary.seconds = time.monotonic() - t0
        raise BatchInterrupted(summary) from None
    finally:
        output.close()
    summary.seconds = time.monotonic() - t0
    return summary
