"""Word error rate: word-level Levenshtein distance over the reference's length."""

from __future__ import annotations

import re
import unicodedata

_PUNCT = re.compile(r"[^\w\s']|(?<!\w)'|'(?!\w)")


def normalise_words(text: str) -> list[str]:
    """Lowercased words with punctuation stripped (apostrophes inside words kept: "don't")."""
    text = unicodedata.normalize("NFKC", text).lower().replace("\u2019", "'")
    return _PUNCT.sub(" ", text).split()


def word_edits(reference: str, hypothesis: str) -> tuple[int, int]:
    """(substitutions + deletions + insertions, reference length in words)."""
    ref, hyp = normalise_words(reference), normalise_words(hypothesis)
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1], len(ref)


def wer(reference: str, hypothesis: str) -> float:
    """Word error rate of ``hypothesis`` against ``reference`` (0 is perfect; can exceed 1).
    An empty reference gives 0 for an empty hypothesis and 1 otherwise."""
    edits, n = word_edits(reference, hypothesis)
    if n == 0:
        return 0.0 if edits == 0 else 1.0
    return edits / n


def corpus_wer(pairs) -> float:
    """WER over many (reference, hypothesis) pairs: total edits over total reference words."""
    edits = words = 0
    for reference, hypothesis in pairs:
        e, n = word_edits(reference, hypothesis)
        edits, words = edits + e, words + n
    return edits / words if words else 0.0
