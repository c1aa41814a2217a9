"""The Ray Data engine: a decode stage and a model stage of actors, the GPU wrappers they use,
and a bounded check that a Ray cluster answers."""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Optional

from ..errors import BatchError, RayConnectError
from .manifest import BatchItem
from .task import analyze_task, limit_threads, make_analyzer, observe_task

RAY_CONNECT_TIMEOUT = 25.0  # seconds to decide that a --ray-address does not answer
RAY_INSTALL_HINT = "ray is not installed (pip install 'emofusion[ray]')"


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
    """The sentence encoder moved to `device`, taking and returning CPU tensors."""
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
        limit_threads()
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
        limit_threads()
        self.analyzer = make_analyzer(model, options, backend, precision, threads=1)
        if use_gpu and self.analyzer.model.backend != "onnx":
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


def import_ray():
    """The ray module (with ray.data), or BatchError when Ray is not installed."""
    try:
        import ray  # noqa: F401
        import ray.data  # noqa: F401
    except ImportError:
        raise BatchError("--engine", RAY_INSTALL_HINT) from None
    return ray


def _split_address(address: str) -> tuple[str, int]:
    """(host, port) of a Ray address (`ray://` default port 10001, else 6379)."""
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


def run_ray(todo: list[BatchItem], emit: Callable[[str, bool, str], None], *, workers: int,
             model: str, options: dict[str, Any], ray_address: Optional[str], backend: str = "auto",
             precision: Optional[str] = None) -> None:
    """Analyse `todo` on Ray Data (decode actors, then model actors); emit(key, ok, line) as rows stream back."""
    ray = import_ray()
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
