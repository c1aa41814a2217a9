"""Reading and writing a net's settings (a frozen dataclass of defaults) as a part of config.json."""

from __future__ import annotations

from dataclasses import fields
from typing import Any, Mapping, TypeVar

Settings = TypeVar("Settings")


def settings_from_part(cls: type[Settings], part: Mapping[str, Any] | None, **defaults: Any) -> Settings:
    """`cls` with each field the part gives, cast to the type of the field's default; the other
    fields take `defaults[name]` when given there, else the class default."""
    part = part or {}
    values = {}
    for f in fields(cls):  # type: ignore[arg-type]
        default = defaults.get(f.name, getattr(cls, f.name))
        value = part.get(f.name, default)
        values[f.name] = tuple(value) if isinstance(default, tuple) else type(default)(value)
    return cls(**values)


def settings_to_part(settings: Any) -> dict[str, Any]:
    """The settings as config.json values (tuples as lists)."""
    return {f.name: list(v) if isinstance(v := getattr(settings, f.name), tuple) else v for f in fields(settings)}
