"""One error family for the library: every error a user can cause is an `EmofusionError` with a
stable `code`, and `ERROR_CODES` is the one table that turns a code into a CLI exit status and an
HTTP status. The CLI, batch and the service all render errors from it, so the same bad input gets
the same code everywhere.

A message is one line saying what is wrong with the user's input (never a traceback); `subject`
names what is at fault when the caller knows better than the message (a file, an option).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ErrorCode:
    """What a code means to the CLI (exit status) and to the service (HTTP status)."""

    exit_status: int
    http_status: int
    meaning: str


EXIT_USAGE = 2  # the user's input or options are at fault
EXIT_FAILURE = 1  # the run could not go on (a cluster that does not answer, some inputs failed)

ERROR_CODES: dict[str, ErrorCode] = {
    "invalid_request": ErrorCode(EXIT_USAGE, 422, "the request cannot be analysed as given"),
    "invalid_options": ErrorCode(EXIT_USAGE, 422, "an analysis option is unknown or out of bounds"),
    "too_many_windows": ErrorCode(EXIT_USAGE, 422, "the options would cut the input into too many windows"),
    "invalid_media": ErrorCode(EXIT_USAGE, 422, "the input is not readable audio or video"),
    "invalid_audio": ErrorCode(EXIT_USAGE, 422, "the separate audio file is not readable audio"),
    "invalid_transcript": ErrorCode(EXIT_USAGE, 422, "the transcript is not readable text, SRT or VTT"),
    "not_found": ErrorCode(EXIT_USAGE, 404, "a file or resource does not exist"),
    "model_unavailable": ErrorCode(EXIT_USAGE, 503, "the model cannot be loaded"),
    "face_detector_unavailable": ErrorCode(EXIT_USAGE, 503, "the face detector cannot be loaded"),
    "transcription_unavailable": ErrorCode(EXIT_USAGE, 503, "speech recognition is not installed or has no model"),
    "invalid_dataset": ErrorCode(EXIT_USAGE, 422, "a dataset folder does not have the expected layout"),
    "unknown_dataset": ErrorCode(EXIT_USAGE, 422, "no dataset reader has this name"),
    "invalid_recipe": ErrorCode(EXIT_USAGE, 422, "a training recipe is not valid"),
    "invalid_evaluation": ErrorCode(EXIT_USAGE, 422, "the evaluation cannot run with these data and model"),
    "export_failed": ErrorCode(EXIT_USAGE, 422, "the model cannot be exported as asked"),
    "invalid_manifest": ErrorCode(EXIT_USAGE, 422, "a batch manifest cannot be read"),
    "invalid_manifest_row": ErrorCode(EXIT_USAGE, 422, "one row of a batch manifest is not usable"),
    "invalid_batch_options": ErrorCode(EXIT_USAGE, 422, "a batch option is not usable"),
    "cluster_unreachable": ErrorCode(EXIT_USAGE, 503, "the Ray cluster does not answer"),
    "batch_failed": ErrorCode(EXIT_FAILURE, 500, "a batch run stopped midway (what was done is in its output)"),
    "invalid_settings": ErrorCode(EXIT_USAGE, 500, "a server setting is not valid"),
    "storage_unavailable": ErrorCode(EXIT_FAILURE, 503, "uploads cannot be stored right now"),
    "invalid_callback": ErrorCode(EXIT_USAGE, 422, "the callback address is refused"),
    "unknown_label": ErrorCode(EXIT_USAGE, 422, "a dataset label has no canonical emotion"),
    "acoustic_features_unavailable": ErrorCode(EXIT_USAGE, 503, "the openSMILE library cannot be loaded"),
    "invalid_retraining_data": ErrorCode(EXIT_USAGE, 422, "new labelled data cannot be used for retraining"),
    "registry_unavailable": ErrorCode(EXIT_USAGE, 503, "the model registry cannot be read or written"),
    "internal_error": ErrorCode(EXIT_FAILURE, 500, "a fault in emofusion, not in the input"),
}


class EmofusionError(Exception):
    """Base of every error emofusion raises for a user's input or environment."""

    code = "internal_error"

    def __init__(self, message: str, *, subject: str | None = None, code: str | None = None):
        super().__init__(" ".join(str(message).split()))
        self.subject = subject
        if code is not None:
            if code not in ERROR_CODES:
                raise KeyError(f"unknown error code {code!r}")
            self.code = code

    @property
    def message(self) -> str:
        return str(self)

    def __reduce__(self):  # pickled whole (worker processes, Ray actors), whatever __init__ takes
        return (_rebuild, (type(self), str(self), dict(self.__dict__)))

    @property
    def exit_status(self) -> int:
        return exit_status(self.code)

    @property
    def http_status(self) -> int:
        return http_status(self.code)


def _rebuild(cls: type, message: str, state: dict) -> "EmofusionError":
    error = Exception.__new__(cls)
    Exception.__init__(error, message)
    error.__dict__.update(state)
    return error


def is_server_fault(code: str) -> bool:
    """Whether an error is the server's or its environment's (5xx), not the request's: its message
    may name internals (paths, buckets, packages) and goes to the log, not to a client."""
    return http_status(code) >= 500


def exit_status(code: str) -> int:
    """The CLI's exit status for an error code."""
    return ERROR_CODES.get(code, ERROR_CODES["internal_error"]).exit_status


def http_status(code: str) -> int:
    """The service's HTTP status for an error code."""
    return ERROR_CODES.get(code, ERROR_CODES["internal_error"]).http_status


# --- analysis -----------------------------------------------------------------------------


class AnalysisError(EmofusionError, ValueError):
    """The analysis cannot run with these inputs or options (one-line reason)."""

    code = "invalid_request"


class InvalidOptions(AnalysisError):
    """An option outside its bounds, or of the wrong kind; `option` names it when there is one."""

    code = "invalid_options"

    def __init__(self, message: str, option: str | None = None):
        super().__init__(message, subject=option)
        self.option = option


class TooManyWindows(AnalysisError):
    """The input is long enough that the options would make more than MAX_WINDOWS windows."""

    code = "too_many_windows"


class MediaError(EmofusionError):
    """The input cannot be read as audio or video (one-line reason for the user)."""

    code = "invalid_media"


class ExternalAudioError(MediaError):
    """The separate audio file given beside the input cannot be read."""

    code = "invalid_audio"


class TranscriptError(EmofusionError, ValueError):
    """A transcript that cannot be read or parsed."""

    code = "invalid_transcript"


class TranscriptionUnavailable(EmofusionError, RuntimeError):
    """Speech recognition was asked for but is not installed or has no model."""

    code = "transcription_unavailable"


class FaceDetectorError(EmofusionError, RuntimeError):
    """The face detector cannot be loaded."""

    code = "face_detector_unavailable"


# --- models, data, training, evaluation, export --------------------------------------------


class ModelLoadError(EmofusionError, RuntimeError):
    """A model name, folder or hub id that cannot be loaded (one-line reason)."""

    code = "model_unavailable"


class DatasetLayoutError(EmofusionError, ValueError):
    """A dataset folder does not look like the reader expects."""

    code = "invalid_dataset"


class UnknownDatasetError(EmofusionError, ValueError):
    """A dataset name no reader has."""

    code = "unknown_dataset"


class UnknownLabelError(EmofusionError, ValueError):
    """A dataset label with no canonical emotion."""

    code = "unknown_label"


class RecipeError(EmofusionError, ValueError):
    """A recipe file that is missing, not TOML, or has invalid values."""

    code = "invalid_recipe"


class EvaluationError(EmofusionError, ValueError):
    """The evaluation cannot run (one-line reason)."""

    code = "invalid_evaluation"


class ExportError(EmofusionError, RuntimeError):
    """The model cannot be exported as asked."""

    code = "export_failed"


class AcousticFeaturesUnavailable(EmofusionError, RuntimeError):
    """The openSMILE library the voice functionals need cannot be loaded."""

    code = "acoustic_features_unavailable"


# --- batch and service ---------------------------------------------------------------------


class BatchError(EmofusionError):
    """A batch run cannot start or cannot go on; `subject` names the option or file at fault."""

    code = "invalid_batch_options"

    def __init__(self, subject: str, reason: str, *, code: str | None = None):
        super().__init__(reason, subject=subject, code=code)


class ManifestError(BatchError):
    """The manifest as a whole cannot be read (missing, not text, no `path` column)."""

    code = "invalid_manifest"


class RayConnectError(BatchError):
    """The Ray cluster at --ray-address does not answer."""

    code = "cluster_unreachable"


class SettingsError(EmofusionError, ValueError):
    """A server setting (environment variable) that is not valid."""

    code = "invalid_settings"


class StorageError(EmofusionError, RuntimeError):
    """Uploads or results cannot be stored or read back."""

    code = "storage_unavailable"


class CallbackRefused(EmofusionError, ValueError):
    """A callback address the service will not call."""

    code = "invalid_callback"


class RetrainingDataError(EmofusionError, ValueError):
    """New labelled data that retraining cannot use (unknown labels, unreadable files, speakers
    shared with the validation sets, no speaker to hold out)."""

    code = "invalid_retraining_data"


class RegistryError(EmofusionError, RuntimeError):
    """A model registry that cannot be read or changed as asked."""

    code = "registry_unavailable"
