"""What one analysis may ask for: `AnalysisOptions` (window, hop, frame rate, modalities), its
bounds, and the rules on what text an input may come with.

The Python API (`Analyzer`), the CLI, batch and the service all build their options here, from
keyword arguments, CLI flags, a manifest row or the service's `options` JSON, so the same bad
input gets the same answer everywhere. Why these bounds:

- window 0.5-60 s: the voice path reads nothing from less than 0.5 s of audio, and a window
  longer than a minute is no longer a moment of emotion but a summary (use the summary).
- hop 0.1-60 s: finer hops only repeat neighbouring windows (at 0.1 s a 2 s window is already
  analysed 20 times over) and multiply the work and the result's size.
- frames per second above 0 and at most 30: beyond a video's own frame rate the same frames are
  sampled again.
- at most 20 faces per frame (`max_faces`): each is a crop through the face net and a row of the
  result per window; a crowd beyond it is counted, not read.
- at most 20,000 windows per analysis (5.5 hours at the default 1 s hop): each window is a segment
  of the result, kept in memory and stored, so the count bounds memory and result size.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from typing import Any, Mapping

from .errors import AnalysisError, InvalidOptions, TooManyWindows

DEFAULT_WINDOW_SECONDS, DEFAULT_HOP_SECONDS, DEFAULT_FRAMES_PER_SECOND = 2.0, 1.0, 2.0
MIN_WINDOW_SECONDS = 0.5
MAX_WINDOW_SECONDS = 60.0
MIN_HOP_SECONDS = 0.1
MAX_HOP_SECONDS = 60.0
MAX_FRAMES_PER_SECOND = 30.0
MAX_WINDOWS = 20_000

MODALITIES: tuple[str, ...] = ("face", "voice", "text")
#: When an analysis transcribes the input's speech (see `AnalysisOptions.transcribe`).
TRANSCRIBE_MODES: tuple[str, ...] = ("auto", "on", "off")
DEFAULT_TRANSCRIBE = "auto"
#: When the voice readings are calibrated to the recording's own speaker (see `AnalysisOptions.calibrate`).
CALIBRATE_MODES: tuple[str, ...] = ("auto", "on", "off")
DEFAULT_CALIBRATE = "auto"
#: Which faces an analysis reads (see `AnalysisOptions.faces`).
FACES_MODES: tuple[str, ...] = ("all", "largest")
DEFAULT_FACES = "all"
DEFAULT_MAX_FACES = 6
MAX_FACES = 20
#: The face detectors an analysis can use (`emofusion.media.faces.FaceDetector`; see `AnalysisOptions.face_detector`).
FACE_DETECTORS: tuple[str, ...] = ("yunet", "haar")
DEFAULT_FACE_DETECTOR = "yunet"


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


# The duration that is windowed is the input's rounded to this grid (seconds): the same content
# in another container differs by a few to a few tens of milliseconds (Opus pre-skip and 20 ms
# packets, AAC's 1024-sample frames, where the last video frame is said to end), and must give
# the same windows, ends included.
DURATION_GRID_SECONDS = 0.05
# A last, cut window is made only when what it alone covers is at least this long (seconds) and
# at least half of min(window, hop): see `window_plan`.
MIN_TAIL_SECONDS = 0.5


def windowed_duration(duration: float) -> float:
    """`duration` on the 50 ms grid (DURATION_GRID_SECONDS), so that the few milliseconds by which
    containers disagree on the same content do not move a window; an input shorter than half a
    grid step keeps its own duration (it still gets its one window)."""
    if not duration > 0:
        return 0.0
    steps = round(duration / DURATION_GRID_SECONDS)
    return steps / round(1 / DURATION_GRID_SECONDS) if steps else duration


def window_plan(duration: float, window: float, hop: float) -> tuple[int, float]:
    """(how many windows, where the last one ends) for an input of `duration` seconds.

    Window k is [k*hop, k*hop + window), on the duration rounded by `windowed_duration`, d:

    - every window that fits in d is made (a full window);
    - after them, one more window [k*hop, d), cut at the end, only when the time it alone covers
      (d minus the end of the last full window, or minus its own start when hops leave gaps) is
      at least max(MIN_TAIL_SECONDS, min(window, hop) / 2). A shorter tail would be a window
      that mostly repeats its neighbour for a sliver of new content (an 8.001 s or an 8.008 s
      WebM of 8 s of content got a 7.0-8.0 stub); below 0.5 s the voice path reads nothing of
      its own (MIN_WINDOW_SECONDS), and with the default 2 s window and 1 s hop the dropped end
      is under half a second, already inside the last full window's neighbourhood;
    - an input shorter than one window gets one window, [0, d).

    The rule's thresholds (50 ms grid, 0.5 s tail) are far apart from the container jitter (a
    few tens of ms), so the same content gives the same windows in MP4, WebM, MKV or WAV; a
    content length right at a threshold (e.g. 8.475 s) can still fall either way.
    `window_count` and `emofusion.analysis.make_windows` both follow this plan.
    """
    d = windowed_duration(duration)
    if d <= 0:
        return 0, 0.0
    if d < window:
        return 1, d
    full = int(math.floor((d - window) / hop + 1e-9)) + 1
    last_end = (full - 1) * hop + window
    tail = d - max(last_end, full * hop)
    if tail > 0 and tail + 1e-9 >= max(MIN_TAIL_SECONDS, min(window, hop) / 2):
        return full + 1, d
    return full, last_end


def window_count(duration: float, window: float, hop: float) -> int:
    """How many windows an input of `duration` seconds gets (0 for no duration): see `window_plan`."""
    return window_plan(duration, window, hop)[0]


def check_window_count(duration: float, window: float, hop: float) -> int:
    """The window count, or TooManyWindows when it is over MAX_WINDOWS."""
    count = window_count(duration, window, hop)
    if count > MAX_WINDOWS:
        raise TooManyWindows(
            f"{duration:.0f} s with hop {hop:g} s makes {count} windows; at most {MAX_WINDOWS} are allowed "
            f"per analysis (raise the hop, or split the input)")
    return count


@dataclass(frozen=True)
class AnalysisOptions:
    """How one analysis cuts and reads its input; validated when made (InvalidOptions otherwise).

    `modalities` None means every modality the model has; a model-independent check (known
    names, no repeats) happens here, the model's own (`for_model`) when the model is known.

    `transcribe` says when the input's speech is turned into words for the text channel:
    "auto" (the default) when the input has audio, no transcript or text was given, "text" is
    read, and a speech-recognition model is available without a download (otherwise no words,
    and the result's `media.transcript.reason` says why); "on" always (a model may be downloaded; no
    model, or a transcript or text given as well, is an error); "off" never.

    `calibrate` says when the voice part reads each window relative to the recording's own voice:
    its functionals standardised over the recording's voiced windows (a baseline of the speaker,
    `analysis.voice.VoiceCalibration`). "auto" (the default) when the model's voice part can and
    the input has at least `MIN_CALIBRATION_WINDOWS` voiced windows; "on" always (too few voiced
    windows, no audio or a voice part without a calibrated regression is an error); "off" never.
    The result's `media.voice_calibration` says whether it was used, and why not.

    `faces`: "all" (the default) reads up to `max_faces` faces per frame, the largest first, each
    followed as a person (the result's `people`, and who speaks in each window); "largest" only the
    largest face of each frame (one face read per frame, as before people were tracked).
    `face_detector`: "yunet" (the default; gives landmarks, so crops are aligned and mouths
    watched) or "haar" (OpenCV's frontal cascade: boxes only, no speaker attribution).
    """

    window: float = DEFAULT_WINDOW_SECONDS
    hop: float = DEFAULT_HOP_SECONDS
    frames_per_second: float = DEFAULT_FRAMES_PER_SECOND
    modalities: tuple[str, ...] | None = None
    transcribe: str = DEFAULT_TRANSCRIBE
    calibrate: str = DEFAULT_CALIBRATE
    faces: str = DEFAULT_FACES
    max_faces: int = DEFAULT_MAX_FACES
    face_detector: str = DEFAULT_FACE_DETECTOR

    def __post_init__(self) -> None:
        window, hop, fps = check_options(self.window, self.hop, self.frames_per_second)
        object.__setattr__(self, "window", window)
        object.__setattr__(self, "hop", hop)
        object.__setattr__(self, "frames_per_second", fps)
        object.__setattr__(self, "modalities", _checked_modalities(self.modalities))
        object.__setattr__(self, "transcribe", check_transcribe(self.transcribe))
        object.__setattr__(self, "calibrate", check_calibrate(self.calibrate))
        object.__setattr__(self, "faces", _one_of("faces", self.faces, FACES_MODES))
        object.__setattr__(self, "max_faces", check_max_faces(self.max_faces))
        object.__setattr__(self, "face_detector", _one_of("face_detector", self.face_detector, FACE_DETECTORS))

    @property
    def faces_per_frame(self) -> int:
        """How many faces of a frame are read: 1 for "largest", else max_faces."""
        return 1 if self.faces == "largest" else self.max_faces

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any] | str | None) -> "AnalysisOptions":
        """Options from the service's `options` JSON (text or a parsed object) or a manifest row's:
        only the field names, their kinds and bounds are accepted."""
        raw = options_mapping(raw)
        for key in raw:
            if key not in OPTION_NAMES:
                raise InvalidOptions(f"unknown option {shown(key)} (known: {', '.join(OPTION_NAMES)})")
        modalities = raw.get("modalities")
        if modalities is not None and (not isinstance(modalities, (list, tuple)) or not modalities
                                       or not all(isinstance(m, str) for m in modalities)):
            raise InvalidOptions(f"option 'modalities' must be a non-empty list of names ({', '.join(MODALITIES)})",
                                 "modalities")
        return cls(window=raw.get("window", DEFAULT_WINDOW_SECONDS), hop=raw.get("hop", DEFAULT_HOP_SECONDS),
                   frames_per_second=raw.get("frames_per_second", DEFAULT_FRAMES_PER_SECOND),
                   modalities=tuple(modalities) if modalities is not None else None,
                   transcribe=raw.get("transcribe", DEFAULT_TRANSCRIBE),
                   calibrate=raw.get("calibrate", DEFAULT_CALIBRATE), faces=raw.get("faces", DEFAULT_FACES),
                   max_faces=raw.get("max_faces", DEFAULT_MAX_FACES),
                   face_detector=raw.get("face_detector", DEFAULT_FACE_DETECTOR))

    @classmethod
    def from_flags(cls, window: float, hop: float, frames_per_second: float,
                   modalities: str | None, transcribe: str = DEFAULT_TRANSCRIBE,
                   calibrate: str = DEFAULT_CALIBRATE, faces: str = DEFAULT_FACES,
                   max_faces: int = DEFAULT_MAX_FACES, face_detector: str = DEFAULT_FACE_DETECTOR) -> "AnalysisOptions":
        """Options from command-line flags (`--modalities` is comma-separated)."""
        return cls(window=window, hop=hop, frames_per_second=frames_per_second,
                   modalities=parse_modalities(modalities), transcribe=transcribe, calibrate=calibrate,
                   faces=faces, max_faces=max_faces, face_detector=face_detector)

    def for_model(self, model_modalities: "list[str] | tuple[str, ...]", model_name: str) -> tuple[str, ...]:
        """The modalities an analysis with this model reads: the ones asked for (all the model
        has when None), or InvalidOptions naming one the model lacks."""
        if self.modalities is None:
            return tuple(model_modalities)
        missing = [m for m in self.modalities if m not in model_modalities]
        if missing:
            raise InvalidOptions(f"model {model_name!r} has no {missing[0]} net "
                                 f"(it has: {', '.join(model_modalities)})", "modalities")
        return self.modalities

    def to_dict(self) -> dict[str, Any]:
        """The fields as JSON values (modalities a list, or None for every one the model has)."""
        d = asdict(self)
        d["modalities"] = list(self.modalities) if self.modalities is not None else None
        return d


OPTION_NAMES: tuple[str, ...] = ("window", "hop", "frames_per_second", "modalities", "transcribe", "calibrate",
                                  "faces", "max_faces", "face_detector")


def options_mapping(raw: Mapping[str, Any] | str | None) -> Mapping[str, Any]:
    """The options a caller gave as a mapping: JSON text parsed, None or "" empty; InvalidOptions
    for anything that is not a JSON object."""
    if raw is None or raw == "":
        return {}
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except (ValueError, RecursionError):  # not JSON, an integer too long to read, nested too deep
            raise InvalidOptions('options must be a JSON object, e.g. {"window": 2, "hop": 1}') from None
    if not isinstance(raw, Mapping):
        raise InvalidOptions("options must be a JSON object")
    return raw


def given_options(raw: Mapping[str, Any] | str | None) -> dict[str, Any]:
    """Only the options a caller gave, checked and normalised as AnalysisOptions does (the
    service stores and shows these with a job)."""
    raw = options_mapping(raw)
    full = AnalysisOptions.from_mapping(raw).to_dict()
    return {key: full[key] for key in raw}


def parse_modalities(text: str | None) -> tuple[str, ...] | None:
    """A comma-separated list of modalities (None or blank: every one the model has)."""
    if text is None:
        return None
    names = tuple(m.strip() for m in text.split(",") if m.strip())
    return names or None


def _checked_modalities(modalities: object) -> tuple[str, ...] | None:
    if modalities is None:
        return None
    if isinstance(modalities, str) or not all(isinstance(m, str) for m in modalities):  # type: ignore[union-attr]
        raise InvalidOptions(f"modalities must be a list of names ({', '.join(MODALITIES)})", "modalities")
    names = tuple(dict.fromkeys(modalities))  # type: ignore[arg-type]  (a repeated name counts once)
    if not names:
        return None  # none named: every modality the model has
    for name in names:
        if name not in MODALITIES:
            raise InvalidOptions(f"unknown modality {shown(name)}; choose from {', '.join(MODALITIES)}", "modalities")
    return names


def _one_of(name: str, value: object, choices: tuple[str, ...]) -> str:
    """`value` when it is one of `choices`, else InvalidOptions naming the option `name`."""
    if not isinstance(value, str) or value not in choices:
        raise InvalidOptions(f"{name} must be one of {', '.join(choices)} (got {shown(value)})", name)
    return value


def check_transcribe(value: object) -> str:
    """The transcribe mode ("auto", "on" or "off"), or InvalidOptions."""
    return _one_of("transcribe", value, TRANSCRIBE_MODES)


def check_calibrate(value: object) -> str:
    """The calibrate mode ("auto", "on" or "off"), or InvalidOptions."""
    return _one_of("calibrate", value, CALIBRATE_MODES)


def check_max_faces(value: object) -> int:
    """The faces read per frame, 1 to MAX_FACES, or InvalidOptions."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_FACES:
        raise InvalidOptions(f"max_faces must be a whole number from 1 to {MAX_FACES} (got {shown(value)})", "max_faces")
    return value


def check_text_inputs(transcript: object, text: object, transcribe: str = DEFAULT_TRANSCRIBE) -> None:
    """AnalysisError when an input comes with both a transcript and a text (one source of words),
    or with either of them while transcription is "on" (words given and words to recognise)."""
    if transcript is not None and text is not None:
        raise AnalysisError("give a transcript or a text, not both")
    if transcribe == "on" and (transcript is not None or text is not None):
        given = "a transcript" if transcript is not None else "a text"
        raise AnalysisError(f"transcribe is 'on' but {given} was given: give words or ask for "
                            "transcription, not both (use transcribe 'auto' to keep the given words)")
