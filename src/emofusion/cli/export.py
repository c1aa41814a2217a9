"""`emofusion export`: a model's nets to ONNX (FP32, optionally INT8) for ONNX Runtime."""

from __future__ import annotations

from pathlib import Path

import typer

from ..export import DEFAULT_OPSET, FORMATS
from ..models.export_folder import MANIFEST_NAME
from .common import fail, fail_with, warn_untrained


def export(
    fmt: str = typer.Option(..., "--format", help="Export format: onnx."),
    out: Path = typer.Option(..., "--out", help="Output folder (created; must be empty unless --force)."),
    model: str = typer.Option("default", "--model", help="Bundled model name, model folder, or hub id."),
    int8: bool = typer.Option(False, "--int8", help="Also write INT8 nets (face.int8.onnx, text_heads.int8.onnx; the voice net stays FP32) and make INT8 the export's default precision."),
    opset: int = typer.Option(DEFAULT_OPSET, "--opset", help="ONNX opset version."),
    force: bool = typer.Option(False, "--force", help="Replace an export in a non-empty --out folder (other files are kept)."),
) -> None:
    """Export a model's face and voice nets and text heads to ONNX (FP32, optionally INT8) for ONNX Runtime."""
    from ..errors import EmofusionError, ExportError, ModelLoadError
    from ..export import check_out, export_onnx, require_onnx
    from ..models import load_model

    if fmt.lower() not in FORMATS:
        fail(fmt, f"unknown export format; supported: {', '.join(FORMATS)}")
    out_dir = out.expanduser()
    try:
        require_onnx()
    except ExportError as exc:
        fail_with(exc, "export")
    try:
        check_out(out_dir, force)
    except ExportError as exc:
        fail_with(exc, str(out))
    try:
        loaded = load_model(model, "torch", load_text_encoder=False)
    except ModelLoadError as exc:
        fail_with(exc, model)
    try:
        manifest = export_onnx(loaded, out_dir, int8=int8, opset=opset, force=force, source=model)
    except EmofusionError as exc:
        fail_with(exc, str(out))
    except OSError as exc:  # no space, no permission, ...
        fail(str(out), exc.strerror or str(exc))
    warn_untrained(loaded, "the export carries their random weights")
    for name, info in manifest["files"].items():
        typer.echo(f"{out_dir / name}  {info['bytes'] / 1e6:.2f} MB")
    typer.echo(f"{out_dir / MANIFEST_NAME}")
    parts = ", ".join(manifest["nets"])
    typer.echo(
        f"exported {manifest['source']['name']} {manifest['source']['version']} ({parts}) to ONNX opset {opset}"
        + (", FP32 + INT8 (default INT8)" if int8 else ", FP32")
        + "; the text encoder stays PyTorch (only its heads are exported)" * ("text" in manifest["nets"]),
        err=True,
    )
