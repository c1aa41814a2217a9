"""The text path: the transcript text overlapping each window and the turns before it
(preprocess) -> the sentence encoder and the text heads (forward) -> a TextResult with emotion
and sentiment. Each distinct (text, context) is read once per input."""

from __future__ import annotations

import numpy as np

from ..models.interfaces import LateFusionModel
from .results import TextResult
from .windows import Window, window_texts
from .words import Words


class TextPath:
    """The text path of a late-fusion model over one input (its cache lives as long as the input)."""

    def __init__(self, model: LateFusionModel, words: Words, duration: float):
        self.model, self.words, self.duration = model, words, duration
        self._cache: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}

    def results_for(self, block: list[Window]) -> list[TextResult | None]:
        """Per window: the text heads' emotion and sentiment, or None where no text overlaps."""
        turns = self.model.config.text_net.context_turns
        texts, contexts = window_texts(block, self.words.until(block[-1].end), self.duration, turns)
        unique = sorted({(t, c) for t, c in zip(texts, contexts) if t is not None})
        todo = [pair for pair in unique if pair not in self._cache]
        if todo:
            emo, sent = self.model.text_probs([t for t, _ in todo], [c for _, c in todo])
            for pair, e, s in zip(todo, emo, sent):
                self._cache[pair] = (e, s)
        labels, sentiment_labels = self.model.labels, self.model.config.sentiment_labels
        out: list[TextResult | None] = []
        for t, c in zip(texts, contexts):
            if t is None:
                out.append(None)
                continue
            e, s = self._cache[(t, c)]
            out.append(TextResult(labels, e, text=t, sentiment=s, sentiment_labels=sentiment_labels))
        return out
