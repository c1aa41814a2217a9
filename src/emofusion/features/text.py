"""What the text net reads beside an utterance: its dialogue context."""

from __future__ import annotations

from typing import Any

from ..data.base import Item


def dialogue_contexts(items: list[Item], turns: int) -> list[str]:
    """For each utterance, the `turns` previous utterances of the same dialogue, joined ("" for the
    first, and for an item with no `dialogue_id`: a text on its own has no context)."""
    out: list[str] = []
    history: dict[Any, list[str]] = {}
    for item in items:
        key = item.meta.get("dialogue_id")
        if key is None:
            out.append("")
            continue
        past = history.setdefault(key, [])
        out.append(" ".join(past[-turns:]) if turns > 0 else "")
        past.append(item.text or "")
    return out
