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

Modules: manifest (inputs), output (the locked JSON-lines file, counts), task (one input),
local (worker processes), ray_engine (Ray Data, GPU wrappers), run (run_batch).
"""

from ..cores import usable_cores
from ..errors import BatchError, ManifestError, RayConnectError
from .local import IN_FLIGHT_PER_WORKER, _pin_to_core, default_workers, least_used_core
from .manifest import MANIFEST_COLUMNS, BatchItem, as_items, dedupe, read_manifest
from .output import BatchInterrupted, BatchSummary, error_line, read_done
from .ray_engine import RAY_CONNECT_TIMEOUT, RAY_INSTALL_HINT, RayAnalyzer, RayFaceStage, check_ray_address, use_device
from .run import ENGINES, ProgressCallback, check_run_options, run_batch
from .task import analyze_task, make_analyzer, observe_task

__all__ = [
    "ENGINES", "IN_FLIGHT_PER_WORKER", "MANIFEST_COLUMNS", "RAY_CONNECT_TIMEOUT", "RAY_INSTALL_HINT",
    "BatchError", "BatchInterrupted", "BatchItem", "BatchSummary", "ManifestError", "ProgressCallback",
    "RayAnalyzer", "RayConnectError", "RayFaceStage", "_pin_to_core", "analyze_task", "as_items",
    "check_ray_address", "check_run_options", "dedupe", "default_workers", "error_line", "least_used_core",
    "make_analyzer", "observe_task", "read_done", "read_manifest", "run_batch", "usable_cores", "use_device",
]
