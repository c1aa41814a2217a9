"""The model, loaded once per process, and analysis with per-request options."""

from __future__ import annotations

import json
import os
import threading
from collections import OrderedDict
from typing import Any, Callable

from ..analysis import Analyzer
from ..errors import TranscriptError
from ..models.interfaces import InferenceModel, is_joint
from ..models.loading import ModelSource, load_model
from ..options import AnalysisOptions
from ..transcript import TranscriptSegment, from_text, parse_subtitles
from .batching import BatchedModel

ANALYZERS_PER_THREAD = 4


def parse_transcript(content: bytes) -> list[TranscriptSegment]:
    """A transcript upload: SRT/VTT when it has cues, else plain text for the whole input;
    TranscriptError (`invalid_transcript`) when it is not UTF-8 or not readable."""
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise TranscriptError("the transcript is not UTF-8 text (.txt, .srt or .vtt)") from None
    return parse_subtitles(text) if "-->" in text else from_text(text)


class Engine:
    """One loaded model shared by every thread; each thread keeps its own Analyzer per option set."""

    def __init__(self, model: ModelSource, *, batch_max: int = 64, batch_wait: float = 0.0):
        """`batch_wait` > 0: model calls of concurrent analyses are micro-batched (up to `batch_max` rows)."""
        self._batch_max, self._batch_wait = batch_max, batch_wait
        self._local = threading.local()
        self._swap_lock = threading.Lock()
        self.generation = 0  # bumped by each swap; each thread's Analyzers belong to one generation
        self.model, self.batched = self._loaded(model)

    def _loaded(self, model: ModelSource) -> tuple[InferenceModel, BatchedModel | None]:
        loaded = load_model(model, load_text_encoder=False)
        loaded.prepare_inference()
        if not is_joint(loaded) and loaded.text is not None:
            loaded.encoder  # load it now, not racing in the first requests' threads
        batched = (BatchedModel(loaded, max_batch=self._batch_max, max_wait=self._batch_wait)
                   if self._batch_wait > 0 else None)
        return loaded, batched

    def swap(self, model: ModelSource) -> None:
        """Serve `model` from now on: it is loaded first (a ModelLoadError leaves the old one in
        place), then replaces the old one at once. Analyses already running finish on the old one."""
        loaded, batched = self._loaded(model)
        with self._swap_lock:
            retired = self.batched
            self.model, self.batched = loaded, batched
            self.generation += 1
        if retired is not None:  # its threads end; analyses still on the old model finish unbatched
            retired.close()

    def batchers_calls(self) -> dict:
        """Micro-batchers by modality (empty without micro-batching)."""
        return dict(self.batched.batchers) if self.batched else {}

    @property
    def info(self) -> dict[str, Any]:
        cfg = self.model.config
        return {"name": cfg.name, "version": cfg.version, "trained": self.model.is_trained,
                "modalities": list(self.model.modalities), "labels": list(self.model.labels)}

    def check_options(self, options: AnalysisOptions) -> None:
        """InvalidOptions for a modality the model lacks; AnalysisError for calibrate "on" that no
        input could satisfy with this model."""
        from ..analysis.voice import check_calibration

        modalities = options.for_model(self.model.modalities, self.model.config.name)
        check_calibration(options.calibrate, modalities, self.model)

    def analyzer(self, options: AnalysisOptions | dict[str, Any] | None = None) -> Analyzer:
        """This thread's Analyzer for these options; the ANALYZERS_PER_THREAD most recently used
        option sets are kept, so clients sending ever new numbers cannot grow memory."""
        chosen = options if isinstance(options, AnalysisOptions) else AnalysisOptions.from_mapping(options or {})
        cache: OrderedDict[str, Analyzer] = self._local.__dict__.setdefault("analyzers", OrderedDict())
        if self._local.__dict__.get("generation") != self.generation:  # the model was swapped
            cache.clear()
            self._local.generation = self.generation
        key = json.dumps(chosen.to_dict(), sort_keys=True)
        if key not in cache:
            cache[key] = Analyzer(self.batched or self.model, options=chosen)
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
        options: AnalysisOptions | dict[str, Any] | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> dict[str, Any]:
        """The analysis contract (a dict); an EmofusionError for media or options it cannot use."""
        return self.analyzer(options).analyze(source, audio=audio, transcript=transcript, text=text or None,
                                              progress=progress).to_dict()
