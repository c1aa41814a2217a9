"""`emofusion info`: what this installation can do."""

from __future__ import annotations

import json

import typer


def info(as_json: bool = typer.Option(False, "--json", help="JSON on stdout instead of text.")) -> None:
    """List the encoders, fusion types, heads, dataset readers, bundled models and backends available."""
    from ..info import collect

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
    asr = data["speech_recognition"]
    if asr["model"]:
        typer.echo(f"speech recognition: Whisper {asr['model']} ({asr['source']}: {asr['path']})")
    else:
        typer.echo(f"speech recognition: none ({asr['reason']})")
