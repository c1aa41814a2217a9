"""Timeline plot: each modality's and the fused probabilities over time, one panel each."""

from __future__ import annotations

import io
import os
from typing import Any

COLORS = {
    "neutral": "#9e9e9e",
    "happy": "#f4b400",
    "sad": "#4285f4",
    "angry": "#db4437",
    "fearful": "#8e24aa",
    "disgust": "#0f9d58",
    "surprised": "#ff6d00",
}


def timeline_figure(analysis: dict[str, Any]):
    """A matplotlib Figure of an analysis (its `to_dict()` form): face, voice, text and fused panels."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    labels = analysis["labels"]
    segments = analysis["segments"]
    panels = [("face", "Face"), ("voice", "Voice"), ("text", "Text"), ("fused", "Fused")]
    fig, axes = plt.subplots(len(panels), 1, figsize=(11, 8.5), sharex=True)
    duration = analysis["media"].get("duration") or (segments[-1]["end"] if segments else 1.0)
    for ax, (key, title) in zip(axes, panels):
        centers = [(s["start"] + s["end"]) / 2 for s in segments]
        present = [s[key] is not None for s in segments]
        for label in labels:
            ys = [s[key]["probs"][label] if s[key] is not None else float("nan") for s in segments]
            ax.plot(centers, ys, label=label, color=COLORS.get(label), linewidth=1.6, marker="." if len(segments) < 60 else None)
        missing = sum(1 for p in present if not p)
        note = f" (absent in {missing}/{len(segments)} windows)" if missing else ""
        ax.set_title(f"{title}{note}", loc="left", fontsize=10)
        ax.set_ylim(0, 1)
        ax.set_xlim(0, max(duration, 1e-3))
        ax.set_ylabel("p")
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("time (s)")
    axes[0].legend(ncol=len(labels), fontsize=8, loc="upper center", bbox_to_anchor=(0.5, 1.45), frameon=False)
    summary = analysis.get("summary") or {}
    model = analysis.get("model") or {}
    trained = "" if model.get("trained", True) else "  [UNTRAINED MODEL: random output]"
    headline = f"summary: {summary.get('top')} ({summary.get('score') or 0:.2f})" if summary.get("top") else "summary: no modality present"
    fig.suptitle(f"{headline}  model: {model.get('name')}{trained}", fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    return fig


def save_timeline(analysis: dict[str, Any], path: str | os.PathLike) -> None:
    """Write the timeline plot of an analysis dict to a PNG file."""
    import matplotlib.pyplot as plt

    fig = timeline_figure(analysis)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def timeline_png(analysis: dict[str, Any]) -> bytes:
    """The timeline plot as PNG bytes."""
    import matplotlib.pyplot as plt

    fig = timeline_figure(analysis)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()
