"""Training recipes: one TOML file per trained model, read into a typed config."""

from __future__ import annotations

import json
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..data import default_data_root
from ..errors import RecipeError  # noqa: F401  (re-exported: the error family lives in emofusion.errors)


TASK_NAMES = ("face", "voice", "text", "multimodal")


@dataclass
class OptimConfig:
    epochs: int = 20
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.1
    balance: str = "weights"  # "weights" (class-weighted loss), "sampler" (balanced sampling) or "none"
    patience: int = 6  # early stopping: epochs without improvement of the selection metric
    select_on: str = "accuracy"  # metric on validation data that picks the best checkpoint
    seed: int = 0
    sentiment_weight: float = 0.5  # text only: weight of the sentiment loss beside the emotion loss


@dataclass
class Recipe:
    """What to train, on which data, and how."""

    name: str
    task: str  # "face" | "voice" | "text" | "multimodal"
    data: dict[str, Any]
    model: dict[str, Any] = field(default_factory=dict)
    augment: dict[str, Any] = field(default_factory=dict)
    optim: OptimConfig = field(default_factory=OptimConfig)
    path: Path | None = None
    tune: dict[str, Any] = field(default_factory=dict)  # hyperparameter search ranges (`emofusion tune`)


_VAR = re.compile(r"\$\{([A-Z0-9_]+)\}")


def _expand(value: Any) -> Any:
    """Expand ${VAR} in strings; EMOFUSION_DATA defaults to ../shared/data beside the repo."""
    if isinstance(value, str):
        def sub(match: re.Match) -> str:
            name = match.group(1)
            if name == "EMOFUSION_DATA":
                return str(default_data_root())
            if name not in os.environ:
                raise RecipeError(f"recipe uses ${{{name}}} but it is not set in the environment")
            return os.environ[name]

        return _VAR.sub(sub, value)
    if isinstance(value, list):
        return [_expand(v) for v in value]
    if isinstance(value, dict):
        return {k: _expand(v) for k, v in value.items()}
    return value


def apply_setting(raw: dict[str, Any], setting: str) -> None:
    """Apply one `dotted.key=VALUE` setting to a parsed recipe; VALUE is read as a TOML value
    (`3`, `0.5`, `true`, `["video"]`, `"late"`), else taken as a plain string."""
    key, sep, value = setting.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise RecipeError(f"--set {setting!r}: expected KEY=VALUE, e.g. model.fusion.type=late")
    try:
        parsed = tomllib.loads(f"v = {value.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value.strip()
    *parents, last = key.split(".")
    node = raw
    for part in parents:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise RecipeError(f"--set {setting!r}: {part!r} is not a table in the recipe")
        node = child
    node[last] = parsed


def load_recipe(path: str | Path, overrides: dict[str, Any] | None = None, settings: list[str] | None = None) -> Recipe:
    """Read a recipe TOML; `overrides` replace keys of its [optim] table (e.g. epochs for a quick run);
    `settings` are `dotted.key=VALUE` changes to any table (see `apply_setting`)."""
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"{path}: no such recipe file")
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise RecipeError(f"{path}: not valid TOML: {exc}") from None
    for setting in settings or []:
        apply_setting(raw, setting)
    raw = _expand(raw)
    for key in ("name", "task", "data"):
        if key not in raw:
            raise RecipeError(f"{path}: missing required key {key!r}")
    if raw["task"] not in TASK_NAMES:
        raise RecipeError(f"{path}: task must be one of {', '.join(TASK_NAMES)}, not {raw['task']!r}")
    optim_raw = dict(raw.get("optim", {}))
    optim_raw.update({k: v for k, v in (overrides or {}).items() if v is not None})
    known = set(OptimConfig.__dataclass_fields__)
    unknown = set(optim_raw) - known
    if unknown:
        raise RecipeError(f"{path}: unknown [optim] keys {sorted(unknown)}; known: {sorted(known)}")
    unknown_top = set(raw) - {"name", "task", "data", "model", "augment", "optim", "tune"}
    if unknown_top:
        raise RecipeError(f"{path}: unknown top-level keys {sorted(unknown_top)}")
    return Recipe(
        name=raw["name"],
        task=raw["task"],
        data=raw["data"],
        model=raw.get("model", {}),
        augment=raw.get("augment", {}),
        optim=OptimConfig(**optim_raw),
        path=path,
        tune=raw.get("tune", {}),
    )


_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def toml_value(value: Any) -> str:
    """`value` as a TOML literal (tables inline): what `apply_setting` and `write_recipe` write."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string: the same escapes
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_toml_key(k)} = {toml_value(v)}" for k, v in value.items()) + " }"
    raise RecipeError(f"cannot write {value!r} ({type(value).__name__}) as a TOML value")


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.match(key) else json.dumps(key)


def write_recipe(raw: dict[str, Any], path: str | Path, header: str = "") -> None:
    """Write a parsed (unexpanded) recipe back as TOML: top-level values, then one table each."""
    lines = [f"# {line}" if line else "#" for line in header.splitlines()]
    for key, value in raw.items():
        if not isinstance(value, dict):
            lines.append(f"{_toml_key(key)} = {toml_value(value)}")
    for key, value in raw.items():
        if isinstance(value, dict):
            lines += ["", f"[{_toml_key(key)}]"]
            lines += [f"{_toml_key(k)} = {toml_value(v)}" for k, v in value.items()]
    Path(path).write_text("\n".join(lines) + "\n")
