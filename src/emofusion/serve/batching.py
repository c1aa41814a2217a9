"""Micro-batching: model calls from concurrent analyses coalesced into one call per modality.

Each analysis already sends its windows in blocks; when several analyses run at once (the
service's sync routes and job workers), their blocks wait up to `max_wait` seconds for each
other and go through the net together, up to `max_batch` rows. Inputs of different shapes
(e.g. log-mels of different lengths) are never mixed in one call.
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future
from typing import Any, Callable

import numpy as np
import torch


class MicroBatcher:
    """Call `fn(batch)` from one thread on rows gathered from many callers; each caller gets its rows back."""

    def __init__(self, fn: Callable[[Any], Any], *, max_batch: int = 64, max_wait: float = 0.005,
                 join: Callable[[list], Any], split: Callable[[Any, list[int]], list], size: Callable[[Any], int],
                 shape: Callable[[Any], Any] = lambda x: None, name: str = "batcher"):
        self.fn, self.max_batch, self.max_wait = fn, max(1, max_batch), max(0.0, max_wait)
        self.join, self.split, self.size, self.shape = join, split, size, shape
        self.calls = 0  # model calls made (for tests and metrics)
        self._queue: queue.Queue[tuple[Any, Future] | None] = queue.Queue()
        self._lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def __call__(self, item: Any):
        with self._lock:
            closed = self._closed
            if not closed:
                future: Future = Future()
                self._queue.put((item, future))
        if closed:  # a caller that started before the model was swapped: served alone
            return self.split(self.fn(self.join([item])), [self.size(item)])[0]
        return future.result()

    def close(self) -> None:
        """Serve what is queued, then end the thread; later calls run unbatched in their caller."""
        with self._lock:
            self._closed = True
            self._queue.put(None)

    def _loop(self) -> None:
        pending: list[tuple[Any, Future]] = []
        stopping = False
        while not (stopping and not pending):
            if not pending and not stopping:
                entry = self._queue.get()
                if entry is None:
                    break
                pending.append(entry)
            first_shape = self.shape(pending[0][0])
            group: list[tuple[Any, Future]] = []
            rest: list[tuple[Any, Future]] = []
            rows = 0

            def take(entry: tuple[Any, Future] | None) -> None:
                nonlocal rows, stopping
                if entry is None:
                    stopping = True
                    return
                fits = not group or rows + self.size(entry[0]) <= self.max_batch  # one oversized call runs alone
                if self.shape(entry[0]) == first_shape and fits:
                    group.append(entry)
                    rows += self.size(entry[0])
                else:
                    rest.append(entry)

            for entry in pending:
                take(entry)
            deadline = time.monotonic() + self.max_wait
            while rows < self.max_batch and not stopping:
                try:
                    take(self._queue.get(timeout=max(0.0, deadline - time.monotonic())))
                except queue.Empty:
                    break
            pending = rest
            self._run(group)

    def _run(self, group: list[tuple[Any, Future]]) -> None:
        try:
            self.calls += 1
            out = self.fn(self.join([item for item, _ in group]))
            parts = self.split(out, [self.size(item) for item, _ in group])
        except BaseException as exc:  # every waiting caller gets the error, the loop lives on
            for _, future in group:
                future.set_exception(exc)
            return
        for (_, future), part in zip(group, parts):
            future.set_result(part)


def _split_rows(out: np.ndarray, sizes: list[int]) -> list[np.ndarray]:
    return np.split(out, np.cumsum(sizes)[:-1])


def tensor_batcher(fn: Callable[[torch.Tensor], np.ndarray], **kwargs) -> MicroBatcher:
    return MicroBatcher(fn, join=lambda xs: torch.cat(xs) if len(xs) > 1 else xs[0], split=_split_rows,
                        size=len, shape=lambda x: tuple(x.shape[1:]), **kwargs)


def text_batcher(fn: Callable[[list[str], list[str] | None], tuple[np.ndarray, np.ndarray]], **kwargs) -> MicroBatcher:
    def join(items: list[tuple[list[str], list[str] | None]]) -> tuple[list[str], list[str]]:
        texts = [t for ts, _ in items for t in ts]
        contexts = [c for ts, cs in items for c in (cs if cs is not None else [""] * len(ts))]
        return texts, contexts

    def split(out: tuple[np.ndarray, np.ndarray], sizes: list[int]) -> list[tuple[np.ndarray, np.ndarray]]:
        return list(zip(_split_rows(out[0], sizes), _split_rows(out[1], sizes)))

    return MicroBatcher(lambda pair: fn(*pair), join=join, split=split, size=lambda item: len(item[0]), **kwargs)


class BatchedModel:
    """An EmotionModel seen through micro-batchers: same attributes, batched face/voice/text calls."""

    def __init__(self, model, *, max_batch: int = 64, max_wait: float = 0.005):
        self._model = model
        opts = {"max_batch": max_batch, "max_wait": max_wait}
        self.batchers: dict[str, MicroBatcher] = {}
        if model.face is not None:
            self.batchers["face"] = tensor_batcher(model.face_probs, name="emofusion-batch-face", **opts)
        if model.voice is not None:
            self.batchers["voice"] = tensor_batcher(model.voice_probs, name="emofusion-batch-voice", **opts)
        if model.text is not None:
            self.batchers["text"] = text_batcher(model.text_probs, name="emofusion-batch-text", **opts)

    def __getattr__(self, name: str):
        return getattr(self._model, name)

    def close(self) -> None:
        """End the batchers' threads (after a model swap); calls still running finish unbatched."""
        for batcher in self.batchers.values():
            batcher.close()

    def face_probs(self, faces: torch.Tensor) -> np.ndarray:
        return self.batchers["face"](faces)

    def voice_probs(self, mels: torch.Tensor) -> np.ndarray:
        return self.batchers["voice"](mels)

    def text_probs(self, texts: list[str], contexts: list[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
        return self.batchers["text"]((texts, contexts))
