"""Speech recognition for the words channel: model resolution, a Transcriber, word error rate.

    from emofusion.transcription import Transcriber, resolve_model
    transcriber = Transcriber()                 # EMOFUSION_ASR_MODEL or the offline default
    for segment in transcriber.transcribe_source("clip.mp4"):
        print(segment.start, segment.end, segment.text, segment.words)
"""

from .models import (
    DEFAULT_REGISTRY_MODEL,
    ENV_HOME,
    ENV_MODEL,
    REGISTRY_MODELS,
    SIZE_NAMES,
    RegistryModel,
    ResolvedModel,
    check_model_folder,
    how_to_get_a_model,
    registry_model,
    resolve_model,
)
from .transcriber import SAMPLE_RATE, Transcriber, transcribe, unload_all
from .wer import corpus_wer, normalise_words, wer

__all__ = [
    "DEFAULT_REGISTRY_MODEL", "ENV_HOME", "ENV_MODEL", "REGISTRY_MODELS", "SIZE_NAMES", "RegistryModel",
    "ResolvedModel", "check_model_folder", "how_to_get_a_model", "registry_model", "resolve_model",
    "SAMPLE_RATE", "Transcriber", "transcribe", "unload_all", "corpus_wer", "normalise_words", "wer",
]
