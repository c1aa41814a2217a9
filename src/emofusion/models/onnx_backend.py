"""Run an exported model (see `emofusion.export`) with ONNX Runtime instead of PyTorch.

An export folder holds `export.json` (the manifest), the model's `config.json`, the face and
voice nets and the text heads as ONNX files (`face.onnx`, `voice.onnx`, `text_heads.onnx`,
and `*.int8.onnx` when exported with INT8), and `text_encoder_delta.safetensors` when the
model fine-tuned its sentence encoder. The sentence encoder itself (MiniLM) stays PyTorch:
it is a dependency of its own, loaded from `config.text["encoder"]`; only the heads on its
embeddings are ONNX.

    model = OnnxModel("exports/default", precision="int8", threads=2)
    Analyzer(model).analyze("clip.mp4")

`OnnxModel` has the inference surface of `EmotionModel` the Analyzer, the evaluation and the
service use (`face_probs`, `voice_probs`, `clip_voice_probs`, `text_probs`, `fuse`, `config`,
`labels`, `modalities`, `is_trained`, `prepare_inference`, `encoder`, and `face` / `voice` /
`text`, which are None when the model has no such net). Outputs match PyTorch (FP32: within
float rounding; the face net's flip test-time augmentation is applied the same way).

`emofusion.load_model(name_or_path, backend="auto"|"torch"|"onnx")` picks the backend: `auto`
uses ONNX Runtime for an export folder (one with `export.json`) and PyTorch otherwise.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import ModelLoadError
from .config import CONFIG_NAME, ModelConfig
from .emotion_model import ModelParts
from .text import EncoderDelta
from .fusion import MODALITIES
from .export_folder import (ENCODER_DELTA_NAME, MANIFEST_FORMAT, MANIFEST_NAME, MANIFEST_VERSION, PRECISIONS,
                            VOICE_FUNCTIONALS_NAME)


def _import_ort():
    try:
        import onnxruntime
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ModelLoadError(f"the ONNX backend needs onnxruntime (pip install 'emofusion[onnx]'): {exc}") from None
    return onnxruntime


def _as_array(x: Any) -> np.ndarray:
    """A torch tensor or array-like -> contiguous float32 numpy array."""
    if hasattr(x, "detach"):  # torch.Tensor, without importing torch here
        x = x.detach().cpu().numpy()
    return np.ascontiguousarray(x, dtype=np.float32)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


def session_options(threads: int | None = None):
    """ONNX Runtime session options: `threads` intra-op threads (None: ORT's default, one per
    physical core), one inter-op thread, sequential execution, all graph optimisations."""
    ort = _import_ort()
    so = ort.SessionOptions()
    if threads is not None:
        if int(threads) < 1:
            raise ValueError(f"threads must be >= 1 (got {threads})")
        so.intra_op_num_threads = int(threads)
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3  # errors only
    return so


class OnnxNet:
    """One exported net in an ONNX Runtime session: `net(*arrays)` -> list of output arrays."""

    def __init__(self, path: str | os.PathLike, *, threads: int | None = None,
                 providers: Sequence[str] | None = None, precision: str = "fp32"):
        ort = _import_ort()
        self.path = Path(path)
        self.precision = precision
        if not self.path.is_file():
            raise ModelLoadError(f"{self.path}: no such ONNX file")
        try:
            self.session = ort.InferenceSession(
                str(self.path), session_options(threads), providers=list(providers or ["CPUExecutionProvider"])
            )
        except Exception as exc:  # onnxruntime raises its own error types
            raise ModelLoadError(f"{self.path}: cannot load: {' '.join(str(exc).split())[:300]}") from None
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    def __call__(self, *inputs: Any) -> list[np.ndarray]:
        if len(inputs) != len(self.input_names):
            raise ValueError(f"{self.path.name} takes {len(self.input_names)} inputs ({', '.join(self.input_names)}), got {len(inputs)}")
        feeds = {name: _as_array(x) for name, x in zip(self.input_names, inputs)}
        return self.session.run(None, feeds)

    def __repr__(self) -> str:
        return f"OnnxNet({self.path.name}, {self.precision})"


def read_manifest(directory: str | os.PathLike) -> dict[str, Any]:
    folder = Path(directory)
    path = folder / MANIFEST_NAME
    if not path.is_file():
        raise ModelLoadError(
            f"{folder}: no {MANIFEST_NAME}: not an ONNX export (create one with "
            f"`emofusion export --format onnx --model NAME --out DIR`)"
        )
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ModelLoadError(f"{path}: invalid JSON: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise ModelLoadError(f"{path}: not an emofusion ONNX manifest (format={manifest.get('format') if isinstance(manifest, dict) else None!r})")
    if int(manifest.get("format_version", 0)) > MANIFEST_VERSION:
        raise ModelLoadError(
            f"{path}: format_version {manifest['format_version']} is newer than this emofusion understands "
            f"({MANIFEST_VERSION}); upgrade emofusion"
        )
    return manifest



class OnnxModel(ModelParts):
    """An exported model run by ONNX Runtime, with EmotionModel's inference methods.

    precision: "fp32" or "int8" (None: the manifest's `default_precision`, "int8" when the
    folder was exported with --int8). threads: ONNX Runtime intra-op threads per net (None:
    its default). load_text_encoder: load the PyTorch sentence encoder now (otherwise on the
    first `text_probs`), as for EmotionModel.
    """

    backend = "onnx"
    training = False

    def __init__(self, directory: str | os.PathLike, *, precision: str | None = None, threads: int | None = None,
                 providers: Sequence[str] | None = None, load_text_encoder: bool = False):
        folder = Path(os.path.expanduser(str(directory)))
        self.directory = folder
        self.manifest = read_manifest(folder)
        cfg_path = folder / CONFIG_NAME
        if not cfg_path.is_file():
            raise ModelLoadError(f"{folder}: no {CONFIG_NAME} beside {MANIFEST_NAME}")
        try:
            self.config = ModelConfig.from_dict(json.loads(cfg_path.read_text()))
        except (json.JSONDecodeError, TypeError, KeyError) as exc:
            raise ModelLoadError(f"{cfg_path}: invalid config: {exc}") from None
        chosen = precision or self.manifest.get("default_precision", "fp32")
        if chosen not in PRECISIONS:
            raise ModelLoadError(f"unknown precision {chosen!r}; choose from {', '.join(PRECISIONS)}")
        self.precision = chosen
        self.threads = threads
        nets = self.manifest.get("nets", {})
        self.face: OnnxNet | None = None
        self.voice: OnnxNet | None = None
        self.text: OnnxNet | None = None
        for name in MODALITIES:
            if getattr(self.config, name) is None:
                continue
            entry = nets.get(name)
            if not entry:
                raise ModelLoadError(f"{folder}: the config has a {name} net but {MANIFEST_NAME} lists no {name} file")
            file = entry.get(chosen)
            if not file:
                raise ModelLoadError(
                    f"{folder}: no {chosen} {name} net (exported precisions: "
                    f"{', '.join(p for p in PRECISIONS if entry.get(p)) or 'none'})"
                )
            runs = "fp32" if file == entry.get("fp32") else chosen  # the INT8 precision may keep a net FP32
            setattr(self, name, OnnxNet(folder / file, threads=threads, providers=providers, precision=runs))
        self.voice_functionals = self._voice_functionals_head() if self.voice is not None else None
        self._encoder = None
        if load_text_encoder and self.text is not None:
            self._load_encoder()

    def prepare_inference(self) -> "OnnxModel":
        """Nothing to do: the exported nets already have BatchNorm folded in."""
        return self

    def eval(self) -> "OnnxModel":
        return self

    def _voice_functionals_head(self) -> Any:
        """The voice part's functionals head (NumPy inference in both backends), read beside the ONNX files."""
        cfg = self.voice_functionals_config
        if not cfg:
            return None
        from safetensors.torch import load_file

        from .voice import VoiceFunctionalsHead

        path = self.directory / ((self.manifest.get("nets", {}).get("voice") or {}).get("functionals") or VOICE_FUNCTIONALS_NAME)
        if not path.is_file():
            raise ModelLoadError(f"{self.directory}: the voice part has a functionals head but {path.name} is missing")
        head = VoiceFunctionalsHead(int(cfg["dim"]), len(self.config.labels), calibrated=bool(cfg.get("calibrated")))
        try:
            head.load_state_dict(load_file(str(path)))
        except (RuntimeError, KeyError) as exc:
            raise ModelLoadError(f"{path}: not this model's functionals head ({exc})") from None
        return head

    def _fine_tuned_encoder_layers(self) -> EncoderDelta | None:
        """The fine-tuned encoder layers travel beside the ONNX files (the encoder stays PyTorch)."""
        finetuned = (self.config.text or {}).get("finetuned")
        if not finetuned:
            return None
        path = self.directory / ((self.manifest.get("nets", {}).get("text") or {}).get("encoder_delta") or ENCODER_DELTA_NAME)
        if not path.is_file():
            raise ModelLoadError(f"{self.directory}: the text encoder was fine-tuned but {path.name} is missing")
        from safetensors.torch import load_file

        delta = EncoderDelta.from_config(finetuned)
        tensors = load_file(str(path))
        missing = [n for n in delta.names if n not in tensors]
        if missing:
            raise ModelLoadError(f"{path}: missing fine-tuned tensors: {missing[:3]}")
        for name in delta.names:
            getattr(delta, EncoderDelta.key(name)).copy_(tensors[name])
        return delta

    # -- inference ---------------------------------------------------------------------------
    def face_probs(self, faces: Any) -> np.ndarray:
        """(N, 1, S, S) normalised crops -> (N, C) probabilities (flip test-time augmentation as in PyTorch:
        the logits of each crop and its mirror image are averaged before the softmax)."""
        assert self.face is not None
        x = _as_array(faces)
        if len(x) == 0:
            return np.zeros((0, len(self.config.labels)), dtype=np.float32)
        if self.config.face_net.tta_flip:
            both = self.face(np.concatenate([x, x[..., ::-1]]))[0]
            logits = (both[: len(x)] + both[len(x):]) / 2
        else:
            logits = self.face(x)[0]
        return softmax(logits)

    def voice_probs(self, mels: Any) -> np.ndarray:
        """(N, n_mels, frames) log-mels -> (N, C) probabilities."""
        assert self.voice is not None
        x = _as_array(mels)
        if len(x) == 0:
            return np.zeros((0, len(self.config.labels)), dtype=np.float32)
        return softmax(self.voice(x)[0])

    def clip_voice_probs(self, wavs: list[np.ndarray], batch_size: int = 64,
                         speakers: list[str] | None = None) -> np.ndarray:
        """Whole clips (16 kHz mono) -> (N, C) probabilities, batched and calibrated as EmotionModel does."""
        from .emotion_model import EmotionModel

        # the same grouping code (it only uses config, voice_probs and the functionals head)
        return EmotionModel.clip_voice_probs(self, wavs, batch_size, speakers)  # type: ignore[arg-type]

    def text_probs(self, texts: list[str], contexts: list[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Texts (and optional preceding context) -> (emotion probs (N, C), sentiment probs (N, 3)).
        The sentence encoder runs in PyTorch; the heads in ONNX Runtime."""
        import torch

        assert self.text is not None
        n_sent = len(self.config.sentiment_labels)
        if not texts:
            return np.zeros((0, len(self.config.labels)), np.float32), np.zeros((0, n_sent), np.float32)
        with torch.inference_mode():
            emb = self.encoder.encode(texts)
            inputs = [emb]
            if len(self.text.input_names) == 2:  # the heads use the context embedding
                if contexts is None:
                    ctx = torch.zeros_like(emb)
                else:
                    ctx = self.encoder.encode(contexts)
                    empty = torch.tensor([not c for c in contexts])
                    ctx[empty] = 0.0
                inputs.append(ctx)
        emo, sent = self.text(*inputs)
        return softmax(emo), softmax(sent)

    def __repr__(self) -> str:
        return f"OnnxModel({str(self.directory)!r}, precision={self.precision!r}, nets={self.modalities})"

