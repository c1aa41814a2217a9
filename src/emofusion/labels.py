"""The one label table: canonical emotions, sentiments, and dataset synonyms."""

from __future__ import annotations

from .errors import UnknownLabelError  # noqa: F401  (re-exported: the error family lives in emofusion.errors)


EMOTIONS: tuple[str, ...] = ("neutral", "happy", "sad", "angry", "fearful", "disgust", "surprised")
SENTIMENTS: tuple[str, ...] = ("negative", "neutral", "positive")

# Dataset spellings -> canonical emotion. A value of None means "no target": the item is
# dropped (and counted) rather than forced onto a wrong class.
EMOTION_SYNONYMS: dict[str, str | None] = {
    # canonical names map to themselves
    **{name: name for name in EMOTIONS},
    # FER-2013
    "fear": "fearful",
    "surprise": "surprised",
    # RAVDESS
    "calm": "neutral",
    # MELD
    "joy": "happy",
    "anger": "angry",
    "sadness": "sad",
    # CREMA-D codes
    "ang": "angry",
    "dis": "disgust",
    "fea": "fearful",
    "hap": "happy",
    "neu": "neutral",
    "sad": "sad",
    # common variants
    "happiness": "happy",
    "disgusted": "disgust",
    "scared": "fearful",
    "afraid": "fearful",
    "mad": "angry",
    # no target in our label set
    "contempt": None,
    "boredom": None,
    "bored": None,
}

# EmoDB: sixth character of the file name (German initials).
EMODB_CODES: dict[str, str | None] = {
    "W": "angry",  # Wut
    "L": None,  # Langeweile (boredom): no target
    "E": "disgust",  # Ekel
    "A": "fearful",  # Angst
    "F": "happy",  # Freude
    "T": "sad",  # Trauer
    "N": "neutral",
}

# RAVDESS: third field of the file name.
RAVDESS_CODES: dict[str, str] = {
    "01": "neutral",
    "02": "calm",
    "03": "happy",
    "04": "sad",
    "05": "angry",
    "06": "fearful",
    "07": "disgust",
    "08": "surprised",
}

# Used for the summary's sentiment when no text is present: the valence each emotion
# expresses. Surprise is ambiguous in valence and counts as neutral.
EMOTION_TO_SENTIMENT: dict[str, str] = {
    "neutral": "neutral",
    "happy": "positive",
    "sad": "negative",
    "angry": "negative",
    "fearful": "negative",
    "disgust": "negative",
    "surprised": "neutral",
}


def canonical_emotion(name: str) -> str | None:
    """Map a dataset's emotion spelling to a canonical label; None when it has no target.

    Raises UnknownLabelError for a spelling the table does not know.
    """
    key = name.strip().lower()
    if key not in EMOTION_SYNONYMS:
        raise UnknownLabelError(f"unknown emotion label {name!r}; known: {sorted(EMOTION_SYNONYMS)}")
    return EMOTION_SYNONYMS[key]


def canonical_sentiment(name: str) -> str:
    """Map a sentiment spelling (e.g. MELD's) to one of SENTIMENTS."""
    key = name.strip().lower()
    aliases = {"neg": "negative", "pos": "positive", "neu": "neutral"}
    key = aliases.get(key, key)
    if key not in SENTIMENTS:
        raise UnknownLabelError(f"unknown sentiment label {name!r}; known: {list(SENTIMENTS)}")
    return key
