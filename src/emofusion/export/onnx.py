"""The export itself: the nets to ONNX (FP32, optionally INT8), checked against PyTorch, with the
manifest that `models.onnx_backend` reads."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ..checksums import file_sha256
from ..errors import ExportError
from ..models.export_folder import (ENCODER_DELTA_NAME, MANIFEST_FORMAT, MANIFEST_NAME, MANIFEST_VERSION,
                                    VOICE_FUNCTIONALS_NAME)
from .calibration import calibration_inputs
from .quantize import quantize_conv_net, quantize_linear_net

# (no torch or onnx import at module level: the CLI reads this module's defaults at start)
FORMATS = ("onnx",)
DEFAULT_OPSET = 17
NET_FILES = {"face": "face", "voice": "voice", "text": "text_heads"}
# every file an export may write: --force removes these (and nothing else) from the out folder
OWNED_FILES = tuple(
    [f"{stem}.onnx" for stem in NET_FILES.values()] + [f"{stem}.int8.onnx" for stem in NET_FILES.values()]
    + ["config.json", ENCODER_DELTA_NAME, VOICE_FUNCTIONALS_NAME, MANIFEST_NAME]
)
# nets quantized by --int8; the others run in FP32 under the INT8 precision too
DEFAULT_INT8_NETS = ("face", "text")
KEPT_FP32_REASON = {
    "voice": "INT8 measured no faster than FP32 for this small net (quantize/dequantize overhead; "
             "benchmarks/bench_export.py) and 0-1 point less accurate; export_onnx(int8_nets=...) quantizes it anyway",
}
FP32_CHECK_ATOL = 1e-3  # max |logit difference| ONNX vs PyTorch accepted at export (it is ~1e-6)


def require_onnx() -> None:
    """ExportError unless onnx and onnxruntime (with quantization) are installed."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
        from onnxruntime.quantization import quantize_static  # noqa: F401
    except ImportError as exc:
        raise ExportError(f"ONNX export needs onnx and onnxruntime (pip install 'emofusion[onnx]'): {exc}") from None


def _input_side(model) -> int:
    pre = model.config.face_preprocess
    return int(pre.input_size or pre.size)


def _voice_frames(model, seconds: float) -> int:
    from ..features import num_mel_frames

    return num_mel_frames(int(round(seconds * model.config.mel.sample_rate)), model.config.mel)


class _Heads:
    """The text heads as a module with positional inputs and a tuple output (for tracing)."""

    @staticmethod
    def wrap(heads):
        import torch

        class Wrapped(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.heads = heads

            def forward(self, utterance, context=None):
                return self.heads(utterance, context)

        return Wrapped().eval()


def _export_one(net, args: tuple, path: Path, input_names: list[str], output_names: list[str],
                dynamic_axes: dict, opset: int) -> None:
    import torch

    with warnings.catch_warnings():
        # the TorchScript-based exporter (dynamo=False) needs no onnxscript; it warns that it is legacy
        warnings.simplefilter("ignore")
        try:
            with torch.inference_mode(False), torch.no_grad():
                torch.onnx.export(
                    net, args, str(path), dynamo=False, opset_version=opset, input_names=input_names,
                    output_names=output_names, dynamic_axes=dynamic_axes, do_constant_folding=True,
                )
        except Exception as exc:  # the exporter's own error types
            raise ExportError(f"cannot export {path.name} at opset {opset}: {' '.join(str(exc).split())[:200]}") from None


def _check(name: str, got: list[np.ndarray], want: list[np.ndarray]) -> float:
    diff = max(float(np.abs(g - w).max()) for g, w in zip(got, want))
    if not diff <= FP32_CHECK_ATOL:
        raise ExportError(f"the exported {name} net differs from PyTorch by {diff:.3g} (max |logit difference|)")
    return diff


def check_out(out: Path, force: bool) -> None:
    """Raise ExportError unless `out` can take an export (absent or empty, or `force`)."""
    if out.exists() and not out.is_dir():
        raise ExportError("exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise ExportError("exists and is not empty (use --force to replace an export there)")
    if not out.parent.is_dir():
        raise ExportError(f"the folder {out.parent} does not exist")


def export_onnx(
    model: Any = "default",
    out: str | os.PathLike = "export",
    *,
    int8: bool = False,
    opset: int = DEFAULT_OPSET,
    force: bool = False,
    calibration: dict[str, np.ndarray] | None = None,
    source: str | None = None,
    int8_nets: tuple[str, ...] | list[str] | None = None,
) -> dict[str, Any]:
    """Export a model (an EmotionModel, or a bundled name / folder / hub id) to ONNX in `out`.

    int8: also write `*.int8.onnx` (static QDQ for the conv nets, dynamic for the text heads).
    calibration: optional {"face": (N,1,S,S), "voice": (N,n_mels,T)} preprocessed net inputs
    for the INT8 calibration (default: deterministic synthetic inputs). `out` must be absent or
    empty unless `force` (then only the files an export writes are replaced; others are kept).
    `source`: how the model was named, for the manifest. int8_nets: which nets the INT8
    precision quantizes (default: face and text; the voice net stays FP32, see the module
    docstring); the others are listed under INT8 with their FP32 file. Returns the manifest.
    Raises ExportError, or ModelLoadError for a model that cannot be loaded.
    """
    require_onnx()
    import onnx
    import onnxruntime
    import torch
    from safetensors.torch import save as save_tensors

    from .. import __version__
    from ..models import EmotionModel, is_joint, load_model
    from ..models.onnx_backend import OnnxNet

    out = Path(os.path.expanduser(str(out)))
    check_out(out, force)
    if isinstance(model, (str, os.PathLike)):
        source = source or str(model)
        model = load_model(model, "torch", load_text_encoder=False)
    if is_joint(model):
        raise ExportError(f"model {model.config.name!r} is a multimodal seed model: only face / voice / text "
                          "models export to ONNX")
    if not isinstance(model, EmotionModel):
        raise ExportError(f"model {model.config.name!r} runs on {model.backend}: only PyTorch models export to ONNX")
    source = source or model.config.name
    model.prepare_inference()
    if not model.modalities:
        raise ExportError(f"model {model.config.name!r} has no net to export")
    calibration = dict(calibration or {})
    rng = np.random.default_rng(0)
    n_labels = len(model.config.labels)

    work = Path(tempfile.mkdtemp(prefix=".emofusion-export-", dir=out.parent))
    try:
        nets: dict[str, Any] = {}
        checks: dict[str, Any] = {}
        quant: dict[str, Any] = {}
        if model.face is not None:
            side = _input_side(model)
            path = work / "face.onnx"
            net = model._net("face")
            _export_one(net, (torch.zeros(2, 1, side, side),), path, ["faces"], ["logits"],
                        {"faces": {0: "batch"}, "logits": {0: "batch"}}, opset)
            ort_net = OnnxNet(path)
            diffs = []
            for n in (1, 5):
                x = rng.normal(0, 1, (n, 1, side, side)).astype(np.float32)
                with torch.no_grad():
                    diffs.append(_check("face", ort_net(x), [net(torch.from_numpy(x)).numpy()]))
            checks["face"] = {"max_abs_logit_diff": max(diffs), "batches": [1, 5]}
            nets["face"] = {
                "fp32": "face.onnx",
                "inputs": [{"name": "faces", "shape": ["batch", 1, side, side], "dtype": "float32",
                            "what": "grayscale face crops normalised as config.face.preprocess says"}],
                "outputs": [{"name": "logits", "shape": ["batch", n_labels], "labels": "config.labels"}],
                "tta_flip": model.config.face_net.tta_flip,
            }
        if model.voice is not None:
            n_mels = model.config.mel.n_mels
            seconds = model.config.voice_net.segment_seconds
            frames = _voice_frames(model, seconds)
            path = work / "voice.onnx"
            net = model._net("voice")
            _export_one(net, (torch.zeros(2, n_mels, frames),), path, ["mels"], ["logits"],
                        {"mels": {0: "batch", 2: "frames"}, "logits": {0: "batch"}}, opset)
            ort_net = OnnxNet(path)
            diffs = []
            for n, t in ((1, frames), (5, frames), (3, _voice_frames(model, seconds * 2.3))):
                x = rng.normal(0, 1, (n, n_mels, t)).astype(np.float32)
                with torch.no_grad():
                    diffs.append(_check("voice", ort_net(x), [net(torch.from_numpy(x)).numpy()]))
            checks["voice"] = {"max_abs_logit_diff": max(diffs), "shapes": [[1, n_mels, frames], [5, n_mels, frames],
                                                                             [3, n_mels, _voice_frames(model, seconds * 2.3)]]}
            nets["voice"] = {
                "fp32": "voice.onnx",
                "inputs": [{"name": "mels", "shape": ["batch", n_mels, "frames"], "dtype": "float32",
                            "what": "per-clip normalised log-mel (emofusion.features.log_mel, config.voice.preprocess)"}],
                "outputs": [{"name": "logits", "shape": ["batch", n_labels], "labels": "config.labels"}],
                "min_frames": 2 ** len(model.config.voice_net.channels),
                "functionals": None,
            }
            if model.voice_functionals is not None:
                tensors = {k: v.detach().contiguous().cpu() for k, v in model.voice_functionals.state_dict().items()}
                (work / VOICE_FUNCTIONALS_NAME).write_bytes(save_tensors(tensors, metadata={"format": "emofusion"}))
                nets["voice"]["functionals"] = VOICE_FUNCTIONALS_NAME
        if model.text is not None:
            heads = model.text.eval()
            dim = int(model.config.text["embed_dim"])
            names = ["utterance", "context"] if heads.use_context else ["utterance"]
            path = work / "text_heads.onnx"
            args = tuple(torch.zeros(2, dim) for _ in names)
            n_sent = len(model.config.sentiment_labels)
            _export_one(_Heads.wrap(heads), args, path, names, ["emotion_logits", "sentiment_logits"],
                        {**{k: {0: "batch"} for k in names}, "emotion_logits": {0: "batch"}, "sentiment_logits": {0: "batch"}},
                        opset)
            ort_net = OnnxNet(path)
            diffs = []
            for n in (1, 5):
                xs = [rng.normal(0, 0.1, (n, dim)).astype(np.float32) for _ in names]
                with torch.no_grad():
                    want = [t.numpy() for t in heads(*[torch.from_numpy(x) for x in xs])]
                diffs.append(_check("text", ort_net(*xs), want))
            checks["text"] = {"max_abs_logit_diff": max(diffs), "batches": [1, 5]}
            entry = {
                "fp32": "text_heads.onnx",
                "inputs": [{"name": k, "shape": ["batch", dim], "dtype": "float32",
                            "what": "sentence embedding (unit vector) of the " + ("utterance" if k == "utterance" else
                                    "preceding context; zeros when there is none")} for k in names],
                "outputs": [{"name": "emotion_logits", "shape": ["batch", n_labels], "labels": "config.labels"},
                            {"name": "sentiment_logits", "shape": ["batch", n_sent], "labels": "config.sentiment_labels"}],
                "encoder": model.config.text.get("encoder"),
                "encoder_runtime": "pytorch (transformers); not exported",
                "encoder_delta": None,
            }
            if model.text_encoder_delta is not None:
                tensors = {k: v.detach().contiguous().cpu() for k, v in model.text_encoder_delta.tensors().items()}
                (work / ENCODER_DELTA_NAME).write_bytes(save_tensors(tensors, metadata={"format": "emofusion"}))
                entry["encoder_delta"] = ENCODER_DELTA_NAME
            nets["text"] = entry

        if int8:
            wanted = DEFAULT_INT8_NETS if int8_nets is None else tuple(int8_nets)
            unknown = [n for n in wanted if n not in NET_FILES]
            if unknown:
                raise ExportError(f"unknown net {unknown[0]!r} in int8_nets; choose from {', '.join(NET_FILES)}")
            qwork = work / "quant"
            qwork.mkdir()
            for name, input_name in (("face", "faces"), ("voice", "mels")):
                if name in nets and name in wanted:
                    data = calibration.get(name)
                    data = calibration_inputs(model, name) if data is None else np.asarray(data, np.float32)
                    quant[name] = quantize_conv_net(work / f"{name}.onnx", work / f"{name}.int8.onnx", input_name, data, qwork)
                    quant[name]["calibration_source"] = "given" if name in calibration else "synthetic"
                    nets[name]["int8"] = f"{name}.int8.onnx"
            if "text" in nets and "text" in wanted:
                quant["text"] = quantize_linear_net(work / "text_heads.onnx", work / "text_heads.int8.onnx", qwork)
                nets["text"]["int8"] = "text_heads.int8.onnx"
            shutil.rmtree(qwork)
            for name in quant:  # each INT8 file must load
                OnnxNet(work / nets[name]["int8"], precision="int8")
            for name, entry in nets.items():  # the INT8 precision runs these nets in FP32
                if name not in quant:
                    entry["int8"] = entry["fp32"]
                    entry["int8_kept_fp32"] = KEPT_FP32_REASON.get(name, "not in int8_nets")
                    quant[name] = {"method": "none (FP32)", "reason": entry["int8_kept_fp32"]}

        (work / "config.json").write_text(json.dumps(model.config.to_dict(), indent=2) + "\n")
        files = sorted(p.name for p in work.iterdir() if p.is_file())
        manifest = {
            "format": MANIFEST_FORMAT,
            "format_version": MANIFEST_VERSION,
            "source": {"model": source, "name": model.config.name, "version": model.config.version,
                       "trained": {m: bool(model.config.trained.get(m, False)) for m in model.modalities}},
            "config": "config.json",
            "opset": opset,
            "int8": bool(int8),
            "default_precision": "int8" if int8 else "fp32",
            "nets": nets,
            "quantization": quant or None,
            "batchnorm_folded": True,
            "outputs_are": "logits: apply softmax; face with tta_flip: average the logits of the crops and of "
                           "their mirror images (flipped along the width) before the softmax",
            "checks": checks,
            "created_with": {"emofusion": __version__, "torch": torch.__version__, "onnx": onnx.__version__,
                             "onnxruntime": onnxruntime.__version__,
                             "exporter": "torch.onnx.export, TorchScript-based (dynamo=False)"},
            "files": {name: {"bytes": (work / name).stat().st_size, "sha256": file_sha256(work / name)} for name in files},
        }
        (work / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")
        out.mkdir(exist_ok=True)
        for name in OWNED_FILES:  # a replaced export leaves no stale file (only what an export writes)
            (out / name).unlink(missing_ok=True)
        for name in [*files, MANIFEST_NAME]:
            os.replace(work / name, out / name)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return manifest
