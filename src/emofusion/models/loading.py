"""The one way to load a model: `load_model(name_or_path, backend=...)`.

A model is a folder. Which folder: a bundled name (`default`), a local path, or a Hugging Face
hub id (`owner/name`, downloaded with huggingface_hub; a local path never touches the network).
How it runs is chosen from what the folder holds and the `backend` asked for:

- an `emofusion` config + `model.safetensors`: face / voice / text nets in PyTorch (EmotionModel);
- an `emofusion-seed/1` config: one multimodal seed network (SeedBackend);
- an export folder (`export.json`, from `emofusion export --format onnx`): the nets on ONNX
  Runtime (OnnxModel), chosen by `backend="auto"` or `"onnx"`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Union

from ..errors import ModelLoadError
from .export_folder import MANIFEST_NAME as EXPORT_MANIFEST_NAME
from .export_folder import PRECISIONS
from .interfaces import InferenceModel

BACKENDS = ("auto", "torch", "onnx")

ModelSource = Union[str, os.PathLike, InferenceModel]


def load_model(name_or_path: ModelSource = "default", backend: str = "auto", *, load_text_encoder: bool = True,
               precision: str | None = None, threads: int | None = None) -> InferenceModel:
    """A model ready for inference (`models.interfaces`); a model object is returned as given.

    backend "torch": PyTorch weights (a model or seed folder); "onnx": an export folder run by
    ONNX Runtime; "auto": ONNX for an export folder, PyTorch otherwise. `precision` ("fp32" or
    "int8"; None: what the export was made with) and `threads` (intra-op threads per net) apply
    to ONNX only. `load_text_encoder` loads the sentence encoder now instead of on first use.
    ModelLoadError (one line) for anything that cannot be loaded.
    """
    if backend not in BACKENDS:
        raise ModelLoadError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
    if precision is not None and precision not in PRECISIONS:
        raise ModelLoadError(f"unknown precision {precision!r}; choose from {', '.join(PRECISIONS)}")
    if not isinstance(name_or_path, (str, os.PathLike)):
        if not isinstance(name_or_path, InferenceModel):
            raise ModelLoadError(f"not a model, a model name or a folder: {type(name_or_path).__name__}")
        return name_or_path
    if backend == "onnx" and not Path(os.path.expanduser(str(name_or_path))).is_dir():
        raise ModelLoadError(f"{name_or_path}: not an ONNX export folder (no such folder); create one with "
                             "`emofusion export --format onnx --model NAME --out DIR`")
    folder = resolve_model_folder(name_or_path)
    export = (folder / EXPORT_MANIFEST_NAME).is_file()
    if backend == "onnx" or (backend == "auto" and export):
        if not export:
            raise ModelLoadError(
                f"{name_or_path}: not an ONNX export folder (no {EXPORT_MANIFEST_NAME}); create one with "
                f"`emofusion export --format onnx --model {name_or_path} --out DIR`")
        from .onnx_backend import OnnxModel

        return OnnxModel(folder, precision=precision, threads=threads, load_text_encoder=load_text_encoder)
    if export:
        raise ModelLoadError(f"{name_or_path}: an ONNX export folder holds no PyTorch weights; use the onnx backend")
    if precision not in (None, "fp32"):
        raise ModelLoadError("precision 'int8' needs the onnx backend")
    return _load_torch_folder(folder, load_text_encoder)


def resolve_model_folder(name_or_path: str | os.PathLike) -> Path:
    """The local folder of a bundled name, a path, or a hub id (downloaded)."""
    from .config import CONFIG_NAME, WEIGHTS_NAME, bundled_models

    text = str(name_or_path)
    bundled = bundled_models()
    if text in bundled:
        return bundled[text]
    path = Path(os.path.expanduser(text))
    if path.exists():
        return path
    looks_like_hub_id = text.count("/") == 1 and not text.startswith((".", "/", "~"))
    if not looks_like_hub_id:
        names = ", ".join(bundled) or "none"
        raise ModelLoadError(f"no model {text!r}: not a bundled name ({names}), a folder, or a hub id")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(text, allow_patterns=[CONFIG_NAME, WEIGHTS_NAME, "*.md", "tokenizer_*/*"]))
    except Exception as exc:  # offline, unknown repo, ...
        raise ModelLoadError(f"cannot fetch model {text!r} from the Hugging Face hub: {exc}") from exc


def _load_torch_folder(folder: Path, load_text_encoder: bool) -> InferenceModel:
    """A model folder by its config's `format`: "emofusion" (EmotionModel) or "emofusion-seed/1"
    (SeedBackend); any other format is a ModelLoadError naming the ones understood."""
    from .config import CONFIG_NAME, FORMAT
    from .emotion_model import EmotionModel
    from .seed.model import FORMAT as SEED_FORMAT

    try:
        fmt = json.loads((folder / CONFIG_NAME).read_text()).get("format")
    except (OSError, ValueError, AttributeError):
        fmt = FORMAT  # a missing or unreadable config: EmotionModel.from_pretrained says what is wrong
    if fmt == SEED_FORMAT:
        from .seed_backend import SeedBackend

        return SeedBackend.from_pretrained(folder)
    if fmt != FORMAT:
        raise ModelLoadError(f"{folder / CONFIG_NAME}: not an emofusion config (unknown format {fmt!r}; "
                             f"this emofusion reads {FORMAT!r} and {SEED_FORMAT!r} model folders)")
    return EmotionModel.from_pretrained(folder, load_text_encoder=load_text_encoder)
