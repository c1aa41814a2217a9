"""`emofusion info`: what this installation can do (encoders, fusion types, heads, dataset
readers, bundled models, backends, batch engines, optional extras)."""

from __future__ import annotations

import importlib.util
import json
from typing import Any

import typer

EXTRAS = {"train": "lightning", "postgres": "psycopg", "s3": "boto3", "ray": "ray", "onnx": "onnxruntime",
          "asr": "faster_whisper"}


def collect() -> dict[str, Any]:
    """Everything `info` reports, as plain data."""
    from . import __version__
    from .data.registry import DATASETS
    from .models import bundled_models, load_model
    from .models.onnx_backend import BACKENDS
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
    }


def info_command(as_json: bool = typer.Option(False, "--json", help="JSON on stdout instead of text.")) -> None:
    """List the encoders, fusion types, heads, dataset readers, bundled models and backends available."""
    data = collect()
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        return
    typer.echo(f"emofusion {data['version']}")
    for modality, names in data["encoders"].items():
        typer.echo(f"{modality} encoders: {', '.join(names)}")
    typer.echo(f"fusion: {', '.join(data['fusion'])}")
    typer.echo(f"heads: {', '.join(data['heads'])}")
    typer.echo("datasets: " + ", ".join(f"{n} ({m})" for n, m in data["datasets"].items()))
    for name, m in data["bundled_models"].items():
        parts = ", ".join(f"{p}{'' if trained else ' (untrained)'}" for p, trained in m["parts"].items())
        typer.echo(f"bundled model: {name} {m['version']} ({parts}; {len(m['labels'])} labels)")
    typer.echo(f"backends: {', '.join(data['backends'])}; batch engines: {', '.join(data['batch_engines'])}")
    typer.echo("extras: " + ", ".join(f"{e} {'yes' if ok else 'no'}" for e, ok in data["extras"].items()))
