"""What one analysis may ask for: bounds on window, hop, frame rate and the number of windows.

The Python API (`Analyzer`), the CLI, batch and the service all check options here, so the
same bad input gets the same answer everywhere. Why these bounds:

- window 0.5-60 s: the voice path reads nothing from less than 0.5 s of audio, and a window
  longer than a minute is no longer a moment of emotion but a summary (use the summary).
- hop 0.1-60 s: finer hops only repeat neighbouring windows (at 0.1 s a 2 s window is already
  analysed 20 times over) and multiply the work and the result's size.
- frames per second above 0 and at most 30: beyond a video's own frame rate the same frames are
  sampled again.
- at most 20,000 windows per analysis (5.5 hours at the default 1 s hop): each window is a segment
  of the result, kept in memory and stored, so the count bounds memory and result size.
"""

from __future__ import annotations

import math

DEFAULT_WINDOW_SECONDS, DEFAULT_HOP_SECONDS, DEFAULT_FRAMES_PER_SECOND = 2.0, 1.0, 2.0
MIN_WINDOW_SECONDS = 0.5
MAX_WINDOW_SECONDS = 60.0
MIN_HOP_SECONDS = 0.1
MAX_HOP_SECONDS = 60.0
MAX_FRAMES_PER_SECOND = 30.0
MAX_WINDOWS = 20_000


class AnalysisError(ValueError):
    """The analysis cannot run with these inputs or options (one-line reason); `code` names the
    reason for the service and batch (`invalid_request` unless a subclass says otherwise)."""

    code = "invalid_request"


class InvalidOptions(AnalysisError):
    """An option outside its bounds, or of the wrong kind; `option` names it when there is one."""

    code = "invalid_options"

    def __init__(self, message: str, option: str | None = None):
        super().__init__(message)
        self.option = option


class TooManyWindows(AnalysisError):
    """The input is long enough that the options would make more than MAX_WINDOWS windows."""

    code = "too_many_windows"


def shown(value: object) -> str:
    """A short rendering of a user's value for an error message."""
    try:
        text = repr(value)
    except ValueError:  # an integer too long to print
        return "a number too large to print"
    return text if len(text) <= 40 else text[:37] + "..."


def _bounded(name: str, value: object, low: float, high: float, unit: str, *, low_inclusive: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidOptions(f"{name} must be a number (got {shown(value)})", name)
    try:
        number = float(value)
    except OverflowError:  # an integer beyond float's range
        number = math.inf
    if not math.isfinite(number):
        raise InvalidOptions(f"{name} must be a finite number (got {shown(value)})", name)
    if number < low or (number == low and not low_inclusive) or number > high:
        low_text = f">= {low:g}" if low_inclusive else f"> {low:g}"
        raise InvalidOptions(f"{name} must be {low_text} and <= {high:g}{unit} (got {shown(value)})", name)
    return number


def check_options(window: object, hop: object, frames_per_second: object) -> tuple[float, float, float]:
    """The three numbers as floats, or InvalidOptions naming the first one out of bounds."""
    return (
        _bounded("window", window, MIN_WINDOW_SECONDS, MAX_WINDOW_SECONDS, " seconds"),
        _bounded("hop", hop, MIN_HOP_SECONDS, MAX_HOP_SECONDS, " seconds"),
        _bounded("frames_per_second", frames_per_second, 0.0, MAX_FRAMES_PER_SECOND, "", low_inclusive=False),
    )


def window_count(duration: float, window: float, hop: float) -> int:
    """How many windows [k*hop, k*hop + window) cover [0, duration) (0 for no duration)."""
    if duration <= 0:
        return 0
    return max(1, math.ceil(max(0.0, duration - window) / hop - 1e-9) + 1)


def check_window_count(duration: float, window: float, hop: float) -> int:
    """The window count, or TooManyWindows when it is over MAX_WINDOWS."""
    count = window_count(duration, window, hop)
    if count > MAX_WINDOWS:
        raise TooManyWindows(
            f"{duration:.0f} s with hop {hop:g} s makes {count} windows; at most {MAX_WINDOWS} are allowed "
            f"per analysis (raise the hop, or split the input)")
    return count
