"""Windows of time over an input, the instants at which frames are sampled, and the transcript
text spoken in each window."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import AnalysisError
from ..options import check_window_count, window_plan
from ..transcript import TranscriptSegment


@dataclass(frozen=True)
class Window:
    """[start, end) in seconds."""

    start: float
    end: float


def make_windows(duration: float, window: float, hop: float) -> list[Window]:
    """Windows [k*hop, k*hop + window) over [0, duration): every window that fits, then a last one
    cut at the end only when it covers at least max(0.5 s, min(window, hop)/2) that no other does;
    an input shorter than one window gets one. The duration is first rounded to 50 ms so that the
    same content in any container gets the same windows. The rule and why:
    `emofusion.options.window_plan` (which `options.window_count`, and so the service's check
    before an analysis, follows too).
    TooManyWindows (an AnalysisError) when there would be more than `options.MAX_WINDOWS`."""
    if window <= 0 or hop <= 0:
        raise AnalysisError("window and hop must be positive")
    count = check_window_count(duration, window, hop)
    _, last_end = window_plan(duration, window, hop)
    return [Window(k * hop, min(k * hop + window, last_end)) for k in range(count)]


def frame_times(duration: float, fps: float) -> list[float]:
    """The grid of instants at which frames are sampled: the middle of each 1/fps interval."""
    step = 1.0 / fps
    return [(k + 0.5) * step for k in range(max(1, int(math.floor(duration * fps + 1e-9))))]


def window_texts(block: list[Window], segments: list[TranscriptSegment], duration: float,
                 turns: int = 0) -> tuple[list[str | None], list[str]]:
    """Per window: the transcript text spoken in it (None: none) and the `turns` segments
    before that text as context ("" without).

    A segment with `words` (from speech recognition) contributes the words whose midpoint lies
    in the window, so a window reads what was said inside it; a segment without words (a text,
    subtitles) contributes its whole text to every window it overlaps."""
    texts: list[str | None] = []
    contexts: list[str] = []
    for w in block:
        parts: list[str] = []
        first: int | None = None
        for k, s in enumerate(segments):
            if s.words:  # by the words' own times (a word may end a little past its segment)
                if s.words[-1].end < w.start or s.words[0].start >= w.end:
                    continue
                inside = [x.text for x in s.words if w.start <= (x.start + x.end) / 2 < w.end]
                if not inside:
                    continue
                parts.append(" ".join(inside))
            elif s.start < w.end and (s.end if s.end is not None else duration + 1) > w.start:
                parts.append(s.text)
            else:
                continue
            if first is None:
                first = k
        if first is None:
            texts.append(None)
            contexts.append("")
            continue
        texts.append(" ".join(parts))
        contexts.append(" ".join(s.text for s in segments[max(0, first - turns) : first]) if turns else "")
    return texts, contexts
