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
# The people panel: one row per person, this many inches tall, at most this many rows.
PERSON_ROW_INCHES = 0.5
MAX_PEOPLE_ROWS = 12

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
    people = people_to_show(analysis)[:MAX_PEOPLE_ROWS]
    heights = [1.0] * len(panels)
    if people:
        heights.append(PERSON_ROW_INCHES * len(people) / 2.0 + 0.3)
    if faces:
        heights.append(STRIP_INCHES / 1.6)
    fig = plt.figure(figsize=(11, 8.5 * len(panels) / 4 + sum(heights[len(panels):]) * 2.0))
    grid = fig.add_gridspec(len(heights), 1, height_ratios=heights)
    axes = []
    for row in range(len(panels) + (1 if people else 0)):
        axes.append(fig.add_subplot(grid[row, 0], sharex=axes[0] if axes else None))
    for ax in axes[:-1]:
        ax.tick_params(labelbottom=False)
    if faces:
        _draw_strip(fig, grid[len(heights) - 1, 0], faces)
    if people:
        _draw_people(axes[-1], analysis, people)
    return _draw_panels(fig, axes[: len(panels)], analysis, panels, last=axes[-1])


def people_to_show(analysis: dict[str, Any]) -> list[dict[str, Any]]:
    """The people of an analysis worth a row of their own (the plot's panel, the CLI's table): all
    of them when there are several, else none (the face panel and the speaker column already
    show one person)."""
    people = analysis.get("people") or []
    return people if len(people) > 1 else []


def _draw_people(ax, analysis: dict[str, Any], people: list[dict[str, Any]]) -> None:
    """One row per person: their face (the thumbnail in the JSON) and their windows coloured by
    the fused reading, outlined where they spoke."""
    import base64

    import cv2
    from matplotlib.offsetbox import AnnotationBbox, OffsetImage
    from matplotlib.patches import Rectangle

    for row, person in enumerate(people):
        y = len(people) - 1 - row
        windows = person["windows"]
        for k, w in enumerate(windows):
            top = (w.get("fused") or {}).get("top")
            # windows overlap (hop < window): each is drawn until the next one starts
            end = min(w["end"], windows[k + 1]["start"]) if k + 1 < len(windows) else w["end"]
            ax.add_patch(Rectangle((w["start"], y - 0.3), end - w["start"], 0.6, facecolor=COLORS.get(top, "#bdbdbd"),
                                   edgecolor="black" if w["speaking"] else "none", linewidth=1.2, alpha=0.8))
        thumb = person.get("thumbnail") or ""
        if thumb.startswith("data:image/jpeg;base64,"):
            data = np.frombuffer(base64.b64decode(thumb.split(",", 1)[1]), np.uint8)
            img = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE)
            if img is not None:
                box = AnnotationBbox(OffsetImage(img, cmap="gray", zoom=0.45), (-0.005, y), xycoords=("axes fraction", "data"),
                                     frameon=False, box_alignment=(1.0, 0.5))
                ax.add_artist(box)
        ax.text(0.005, y, f"{person['id']}: {person['summary']['top'] or '-'}", transform=ax.get_yaxis_transform(),
                va="center", fontsize=8, bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "none", "pad": 1})
    ax.set_yticks([])
    ax.set_ylim(-0.6, len(people) - 0.4)
    left_out = ((analysis.get("media") or {}).get("people") or {}).get("left_out", 0)
    more = len(analysis.get("people") or []) - len(people) + left_out
    ax.set_title("People (fused reading per window; outlined: speaking)" + (f", {more} more not shown" if more else ""),
                 loc="left", fontsize=10)
    ax.grid(alpha=0.3, axis="x")


def _draw_panels(fig, axes, analysis: dict[str, Any], panels: list[tuple[str, str]], last=None):
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
    (last if last is not None else axes[-1]).set_xlabel("time (s)")
    if last is not None:
        last.set_xlim(0, max(duration, 1e-3))
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
