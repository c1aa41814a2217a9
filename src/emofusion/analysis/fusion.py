"""Fusion over time: each window's verdict from the modalities present in it, and the summary
of a whole input (the mean fused distribution, and sentiment)."""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from ..labels import EMOTION_TO_SENTIMENT
from ..options import MODALITIES
from .results import Distribution, FaceResult, Segment, Summary, TextResult, Verdict, VoiceResult
from .windows import Window

Fuse = Callable[[dict[str, "np.ndarray | None"]], "np.ndarray | None"]


def fused_segment(window: Window, labels: Sequence[str], fuse: Fuse, face: FaceResult | None,
                  voice: VoiceResult | None, text: TextResult | None) -> Segment:
    """The window's segment: what each modality said and their fusion (absent modalities take no part)."""
    present = {"face": face.probs if face else None, "voice": voice.probs if voice else None,
               "text": text.probs if text else None}
    fused = fuse(present)
    return Segment(window.start, window.end, face, voice, text, Verdict(labels, fused) if fused is not None else None)


def emotion_sentiment(labels: Sequence[str], sentiment_labels: Sequence[str], probs: np.ndarray) -> np.ndarray:
    """Emotion probabilities (in `labels` order) mapped to valence, in `sentiment_labels` order."""
    sentiment_labels = list(sentiment_labels)
    sent = np.zeros(len(sentiment_labels))
    for label, p in zip(labels, probs):
        target = EMOTION_TO_SENTIMENT.get(label)
        if target in sentiment_labels:
            sent[sentiment_labels.index(target)] += p
    return sent


def summarise(segments: list[Segment], labels: Sequence[str], sentiment_labels: Sequence[str],
              text_sentiment: bool) -> Summary:
    """The input's summary. Sentiment is the mean of the text results' sentiment when the model's
    text part has a sentiment head (`text_sentiment`) and text was read, else the fused emotions
    mapped to valence."""
    counts = {m: sum(1 for s in segments if getattr(s, m) is not None) for m in MODALITIES}
    counts["fused"] = sum(1 for s in segments if s.fused is not None)
    fused = [s.fused.probs for s in segments if s.fused is not None]
    if not fused:
        return Summary(None, None, None, counts)
    mean = np.mean(fused, axis=0)
    mean = mean / mean.sum()
    texts = [s.text for s in segments if s.text is not None] if text_sentiment else []
    if texts:
        sent = np.mean([t.sentiment for t in texts], axis=0)
        source = "text"
    else:
        sent = emotion_sentiment(labels, sentiment_labels, mean)
        source = "emotion"
    sent = sent / sent.sum() if sent.sum() > 0 else sent
    return Summary(Verdict(labels, mean), Distribution(sentiment_labels, sent), source, counts)
