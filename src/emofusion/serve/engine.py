"""The model, loaded once per process, and analysis with per-request options."""

from __future__ import annotations

import json
import os
import threading
from collections import OrderedDict
from typing import Any, Callable

from ..limits import (DEFAULT_FRAMES_PER_SECOND, DEFAULT_HOP_SECONDS, DEFAULT_WINDOW_SECONDS, AnalysisError,
                      InvalidOptions, check_options, shown)
from ..media import MediaError
from ..models import MODALITIES, EmotionModel
from ..models.onnx_backend import load_model_backend
from ..pipeline import Analyzer, choose_modalities
from ..transcript import TranscriptError, TranscriptSegment, from_text, parse_subtitles
from .batching import BatchedModel

ANALYZERS_PER_THREAD = 4
OPTION_KEYS = {"window": float, "hop": float, "frames_per_second": float, "modalities": list}


class InputError(ValueError):
    """A request the analysis cannot run on; `code` names the reason for the API."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


def parse_options(raw: str | dict | None) -> dict[str, Any]:
    """Options from a form field (JSON text) or a dict: only known keys, their types and bounds
    checked (`limits`), numbers finite. InputError `invalid_options` for anything else."""
    if raw in (None, ""):
        return {}
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except (ValueError, RecursionError):  # not JSON, an integer too long to read, nested too deep
            raise InputError("invalid_options", "options must be a JSON object, e.g. {\"window\": 2, \"hop\": 1}") from None
    if not isinstance(raw, dict):
        raise InputError("invalid_options", "options must be a JSON object")
    options: dict[str, Any] = {}
    for key, value in raw.items():
        kind = OPTION_KEYS.get(key)
        if kind is None:
            raise InputError("invalid_options", f"unknown option {shown(key)} (known: {', '.join(OPTION_KEYS)})")
        if kind is list and (not isinstance(value, list) or not value or len(value) > len(MODALITIES)
                             or not all(isinstance(v, str) for v in value)):
            raise InputError("invalid_options", f"option {key!r} must be a non-empty list of names "
                             f"({', '.join(MODALITIES)})")
        options[key] = value
    try:
        window, hop, fps = check_options(options.get("window", DEFAULT_WINDOW_SECONDS),
                                         options.get("hop", DEFAULT_HOP_SECONDS),
                                         options.get("frames_per_second", DEFAULT_FRAMES_PER_SECOND))
    except InvalidOptions as exc:
        raise InputError(exc.code, str(exc)) from None
    for key, value in (("window", window), ("hop", hop), ("frames_per_second", fps)):
        if key in options:
            options[key] = value
    return options


def parse_transcript(content: bytes) -> list[TranscriptSegment]:
    """A transcript upload: SRT/VTT when it has cues, else plain text for the whole input."""
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InputError("invalid_transcript", "the transcript is not UTF-8 text (.txt, .srt or .vtt)") from None
    try:
        return parse_subtitles(text) if "-->" in text else from_text(text)
    except TranscriptError as exc:
        raise InputError("invalid_transcript", str(exc)) from None


class Engine:
    """One loaded model shared by every thread; each thread keeps its own Analyzer per option set."""

    def __init__(self, model: str | os.PathLike | EmotionModel, *, batch_max: int = 64, batch_wait: float = 0.0):
        """`batch_wait` > 0: model calls of concurrent analyses are micro-batched (up to `batch_max` rows)."""
        # a name or folder is loaded (an ONNX export folder runs on ONNX Runtime); a model object is used as given
        self.model = load_model_backend(model, "auto") if isinstance(model, (str, os.PathLike)) else model
        self.model.prepare_inference()
        if self.model.text is not None:
            self.model.encoder  # load it now, not racing in the first requests' threads
        self.batched = BatchedModel(self.model, max_batch=batch_max, max_wait=batch_wait) if batch_wait > 0 else None
        self._local = threading.local()

    def batchers_calls(self) -> dict:
        """Micro-batchers by modality (empty without micro-batching)."""
        return dict(self.batched.batchers) if self.batched else {}

    @property
    def info(self) -> dict[str, Any]:
        cfg = self.model.config
        return {"name": cfg.name, "version": cfg.version, "trained": self.model.is_trained,
                "modalities": list(self.model.modalities), "labels": list(self.model.labels)}

    def check_modalities(self, modalities: list[str] | None) -> None:
        """InputError `invalid_options` for a modality that does not exist or the model lacks."""
        try:
            choose_modalities(self.model, modalities)
        except InvalidOptions as exc:
            raise InputError(exc.code, str(exc)) from None

    def analyzer(self, options: dict[str, Any]) -> Analyzer:
        """This thread's Analyzer for these options; the ANALYZERS_PER_THREAD most recently used
        option sets are kept, so clients sending ever new numbers cannot grow memory."""
        cache: OrderedDict[str, Analyzer] = self._local.__dict__.setdefault("analyzers", OrderedDict())
        key = json.dumps(options, sort_keys=True)
        if key not in cache:
            try:
                cache[key] = Analyzer(self.batched or self.model, **options)
            except AnalysisError as exc:
                raise InputError("invalid_options", str(exc)) from None
            while len(cache) > ANALYZERS_PER_THREAD:
                cache.popitem(last=False)
        cache.move_to_end(key)
        return cache[key]

    def analyze(
        self,
        source: str | os.PathLike | bytes,
        *,
        audio: str | os.PathLike | bytes | None = None,
        transcript: list[TranscriptSegment] | None = None,
        text: str | None = None,
        options: dict[str, Any] | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> dict[str, Any]:
        """The analysis contract (a dict); InputError for media or options it cannot use."""
        analyzer = self.analyzer(options or {})
        try:
            return analyzer.analyze(source, audio=audio, transcript=transcript, text=text or None,
                                    progress=progress).to_dict()
        except MediaError as exc:
            raise InputError("invalid_media", str(exc)) from None
        except TranscriptError as exc:
            raise InputError("invalid_request", str(exc)) from None
        except AnalysisError as exc:
            raise InputError(exc.code, str(exc)) from None
