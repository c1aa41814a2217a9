"""Timeline plot: each modality's and the fused probabilities over time, one panel each, and,
given the input it was read from, a strip of the faces the analysis read."""

from __future__ import annotations

import io
import logging
import os
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

# The face strip: at most this many thumbnails, each read at most this many pixels on its
# longer side, in a row this many inches tall below the panels.
FACE_THUMBNAILS = 6
THUMBNAIL_MAX_SIDE = 320
STRIP_INCHES = 2.2

COLORS = {
    "neutral": "#9e9e9e",
    "happy": "#f4b400",
    "sad": "#4285f4",
    "angry": "#db4437",
    "fearful": "#8e24aa",
    "disgust": "#0f9d58",
    "surprised": "#ff6d00",
}


def timeline_figure(analysis: dict[str, Any], source: Any = None, thumbnails: int = FACE_THUMBNAILS):
    """A matplotlib Figure of an analysis (its `to_dict()` form): face, voice, text and fused panels.

    With `source` (the input analysed: a path or bytes) a strip below them shows the face read
    in up to `thumbnails` windows, evenly spread over those with a face, each the frame at the
    window's middle with the analysed face's box drawn. Without a source, or when no window has
    a face or its frames cannot be read, the figure is as without the strip."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    faces = face_thumbnails(analysis, source, thumbnails) if source is not None else []
    panels = [("face", "Face"), ("voice", "Voice"), ("text", "Text"), ("fused", "Fused")]
    if faces:
        fig = plt.figure(figsize=(11, 8.5 + STRIP_INCHES))
        grid = fig.add_gridspec(len(panels) + 1, 1, height_ratios=[1.0] * len(panels) + [STRIP_INCHES / 1.6])
        axes = []
        for row in range(len(panels)):
            axes.append(fig.add_subplot(grid[row, 0], sharex=axes[0] if axes else None))
        for ax in axes[:-1]:
            ax.tick_params(labelbottom=False)
        _draw_strip(fig, grid[len(panels), 0], faces)
        return _draw_panels(fig, axes, analysis, panels)
    fig, axes = plt.subplots(len(panels), 1, figsize=(11, 8.5), sharex=True)
    return _draw_panels(fig, axes, analysis, panels)


def _draw_panels(fig, axes, analysis: dict[str, Any], panels: list[tuple[str, str]]):
    labels = analysis["labels"]
    segments = analysis["segments"]
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


def face_thumbnails(analysis: dict[str, Any], source: Any,
                    count: int = FACE_THUMBNAILS) -> list[tuple[float, np.ndarray, list[float], str | None]]:
    """(time, RGB frame, face box in that frame's pixels, the face's top label) for up to `count`
    windows with a face, evenly spread over them; the frame is read from `source` at the middle of
    the window. Empty when no window has a face box or the frames cannot be read."""
    from .media import iter_frames

    with_face = [s for s in analysis.get("segments", [])
                 if s.get("face") and len(s["face"].get("box") or []) == 4]
    if not with_face or count <= 0:
        return []
    picks = sorted({int(round(i)) for i in np.linspace(0, len(with_face) - 1, min(count, len(with_face)))})
    chosen = {(with_face[i]["start"] + with_face[i]["end"]) / 2: with_face[i] for i in picks}
    media = analysis.get("media") or {}
    out = []
    try:
        for t, frame in iter_frames(source, sorted(chosen), fmt="rgb", max_side=THUMBNAIL_MAX_SIDE):
            segment = chosen[t]
            height, width = frame.shape[:2]
            # the box is in displayed-frame pixels of the media's (upright) width x height
            sx = width / media["width"] if media.get("width") else 1.0
            sy = height / media["height"] if media.get("height") else 1.0
            x, y, w, h = segment["face"]["box"]
            probs = segment["face"].get("probs") or {}
            top = max(probs, key=probs.get) if probs else None
            out.append((t, frame, [x * sx, y * sy, w * sx, h * sy], top))
    except Exception as exc:  # a plot is never worth failing the analysis for
        log.warning("no face strip: cannot read the frames of the input (%s)", exc)
        return []
    return out


def _draw_strip(fig, cell, faces) -> None:
    from matplotlib.patches import Rectangle

    row = cell.subgridspec(1, len(faces), wspace=0.05)
    for k, (t, frame, (x, y, w, h), top) in enumerate(faces):
        ax = fig.add_subplot(row[0, k])
        ax.imshow(frame)
        ax.add_patch(Rectangle((x, y), w, h, fill=False, edgecolor="#00e676", linewidth=2))
        ax.set_title(f"{t:.1f} s" + (f"  {top}" if top else ""), fontsize=8)
        ax.set_axis_off()


def save_timeline(analysis: dict[str, Any], path: str | os.PathLike, source: Any = None) -> None:
    """Write the timeline plot of an analysis dict to a PNG file; with `source` (the input the
    analysis read) a strip of the faces it read is added below (see `timeline_figure`)."""
    import matplotlib.pyplot as plt

    fig = timeline_figure(analysis, source)
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
