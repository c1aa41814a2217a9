"""The Analyzer: media -> windows -> the model's runner (late fusion, or one joint network) ->
segments -> Analysis.

Long inputs are processed as a stream: windows are handled in blocks, frames are sampled on a
fixed grid and decoded in one forward pass (seeking over long gaps), audio is read once through a
bounded buffer. Memory does not grow with the input's length (beyond the small per-window results,
which `iter_segments` hands out instead of keeping).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from ..errors import AnalysisError, ExternalAudioError, MediaError, TranscriptionUnavailable
from ..media import AudioWindowReader, MediaInfo, Source, probe
from ..models.interfaces import InferenceModel, is_joint
from ..models.loading import ModelSource, load_model
from ..options import AnalysisOptions, check_text_inputs, check_transcribe
from ..transcript import TranscriptSegment, from_text, read_transcript
from ..transcription import Transcriber
from .face import FaceObservation
from .fusion import summarise
from .joint import JointRunner
from .late import LateFusionRunner
from .results import Analysis, Segment
from .voice import VoiceCalibration, calibrate_voice, check_calibration
from .windows import make_windows
from .words import GivenWords, LiveTranscript, NoWords, Words

ProgressCallback = Callable[[int, int], None]
MIN_PROGRESS_BLOCK = 4  # windows per block at the least when progress is asked for in steps


@dataclass
class _Input:
    """One input as probed: its media, where its audio comes from (None: none), its words."""

    source: Source
    info: MediaInfo
    audio: Source | None
    external_audio: bool
    duration: float
    words: Words  # given, recognised while the windows are analysed, or none (and why)
    calibration: VoiceCalibration | None = None  # decided when the windows are analysed


class Analyzer:
    """Analyse a video or audio file (a path or its bytes) into a timeline of emotions.

    >>> Analyzer("default").analyze("clip.mp4").to_dict()
    >>> for segment in Analyzer("default").iter_segments("long.mp4"): ...

    `model`: a name, a folder (model, seed checkpoint or ONNX export) or a loaded model.
    `options`: an AnalysisOptions, or its fields as keywords (window, hop, modalities,
    frames_per_second, transcribe, calibrate, faces, max_faces, face_detector); not both.

    Speech is transcribed as `options.transcribe` says ("auto": when no words are given and a
    model is available offline); the Whisper model is resolved once per Analyzer and loaded once
    per process. The result's `media.transcript` says where the words came from.
    """

    def __init__(
        self,
        model: ModelSource = "default",
        *,
        options: AnalysisOptions | None = None,
        detect_max_side: int = 640,
        detect_side: int = 480,
        min_speech_fraction: float = 0.2,
        block_windows: int = 64,
        **option_fields: Any,
    ):
        if options is not None and option_fields:
            raise AnalysisError(f"give options or {', '.join(option_fields)}, not both")
        self.options = options if options is not None else AnalysisOptions(**_known_fields(option_fields))
        self.model: InferenceModel = load_model(model, load_text_encoder=False)
        self.model.prepare_inference()
        self.modalities = list(self.options.for_model(self.model.modalities, self.model.config.name))
        self.labels = self.model.labels
        self.block_windows = max(1, block_windows)
        self.min_speech_fraction = min_speech_fraction
        check_calibration(self.options.calibrate, self.modalities, self.model)
        self._transcribers: dict[bool, Transcriber] = {}  # by allow_download
        self.joint = is_joint(self.model)
        self.runner: JointRunner | LateFusionRunner
        if self.joint:
            self.runner = JointRunner(self.model, min_speech_fraction=min_speech_fraction)  # type: ignore[arg-type]
        else:
            self.runner = LateFusionRunner(self.model, self.modalities,  # type: ignore[arg-type]
                                           face_detector=self.options.face_detector,
                                           frames_per_second=self.options.frames_per_second,
                                           detect_max_side=detect_max_side, detect_side=detect_side,
                                           max_faces=self.options.faces_per_frame,
                                           min_speech_fraction=min_speech_fraction)

    @property
    def window(self) -> float:
        return self.options.window

    @property
    def hop(self) -> float:
        return self.options.hop

    @property
    def frames_per_second(self) -> float:
        return self.options.frames_per_second

    # ------------------------------------------------------------------------------------
    def analyze(self, source: Source, *, audio: Source | None = None,
                transcript: str | os.PathLike | list[TranscriptSegment] | None = None, text: str | None = None,
                transcribe_audio: bool | str | None = None, progress: ProgressCallback | None = None,
                progress_steps: int | None = None, face_observations: list[FaceObservation] | None = None) -> Analysis:
        """Analyse one input. `audio` replaces the input's own audio track; `transcript` is a
        .txt/.srt/.vtt path or segments; `text` a plain string for the whole input.
        `transcribe_audio` overrides `options.transcribe` for this input: "auto", "on", "off"
        (True is "on", False "off"; None keeps the options').
        `progress_steps`: report progress about this many times over the input (smaller blocks
        of windows, at least MIN_PROGRESS_BLOCK; the result is the same), instead of once per block.
        `face_observations` (from `observe_faces` on the same input, possibly in another
        process) replace decoding and face detection here; the result is the same.

        Raises MediaError (unreadable media), TranscriptError, TranscriptionUnavailable (transcribe
        "on" without a model), or AnalysisError (all EmofusionErrors).
        """
        given = self._prepare(source, audio, transcript, text, transcribe_audio)
        ended: dict[str, Any] = {}
        segments = list(self._segments(given, progress, progress_steps, face_observations, ended))
        duration = ended.get("duration", given.duration)
        people, left_out = ended.get("people", ([], 0))
        return Analysis(
            model={
                "name": self.model.config.name,
                "version": self.model.config.version,
                "trained": self.model.is_trained,
                "parts": {m: bool(self.model.config.trained.get(m, False)) for m in self.model.modalities},
                **self.model_runtime(),
            },
            media={
                **given.info.to_dict(),
                "duration": round(duration, 3),
                "has_audio": given.audio is not None,
                "external_audio": given.external_audio,
                "has_transcript": bool(given.words.until(math.inf)),
                "transcript": given.words.info(),
                "voice_calibration": (given.calibration or VoiceCalibration(self.options.calibrate, used=False)).info(),
                "people": self._people_info(given, left_out),
            },
            labels=list(self.labels),
            segments=segments,
            summary=summarise(segments, self.labels, self.model.config.sentiment_labels, self.runner.text_sentiment),
            options={"window": self.window, "hop": self.hop, "modalities": list(self.modalities),
                     "frames_per_second": self.frames_per_second, "faces": self.options.faces,
                     "max_faces": self.options.max_faces, "face_detector": self.options.face_detector},
            people=people,
        )

    def _people_info(self, given: _Input, left_out: int) -> dict[str, Any]:
        """The JSON's `media.people`: how people were found, how many were left out of the list,
        and whether who speaks could be told (and why not)."""
        reason = None
        if self.joint:
            reason = "the model reads one face per window (a joint network)"
        elif "face" not in self.modalities:
            reason = "faces are not analysed"
        elif not given.info.has_video:
            reason = "the input has no video"
        elif given.audio is None:
            reason = "the input has no audio"
        elif self.runner.face is not None and not self.runner.face.detector.gives_landmarks:  # type: ignore[union-attr]
            reason = f"the {self.options.face_detector} detector gives no landmarks to watch mouths with"
        return {"detector": self.options.face_detector, "faces": self.options.faces,
                "max_faces": self.options.faces_per_frame, "left_out": left_out,
                "speaker_attribution": {"used": reason is None, "reason": reason}}

    def iter_segments(self, source: Source, *, audio: Source | None = None,
                      transcript: str | os.PathLike | list[TranscriptSegment] | None = None, text: str | None = None,
                      transcribe_audio: bool | str | None = None, progress: ProgressCallback | None = None,
                      progress_steps: int | None = None) -> Iterator[Segment]:
        """The input's segments in time order, each as soon as its block of windows is done
        (the same segments `analyze` returns, without keeping them; each with its `speaker`, but
        the people are listed only by `analyze`, which keeps their windows)."""
        given = self._prepare(source, audio, transcript, text, transcribe_audio)
        yield from self._segments(given, progress, progress_steps, None, {})

    def observe_faces(self, source: Source, *, audio: Source | None = None) -> list[FaceObservation]:
        """The CPU stage of the face path on its own: decode the sampled frames of `source`, find
        and crop the faces, in time order (no net runs). Empty when faces are not analysed (no
        face modality, no video, a seed model). Raises MediaError as `analyze` does."""
        info, _, duration = self._probe(source, audio)
        face = self.runner.face
        if face is None or not info.has_video:
            return []
        return list(face.observe(face.sampled_frames(source, duration), info))

    # ------------------------------------------------------------------------------------
    def _prepare(self, source: Source, audio: Source | None, transcript: Any, text: str | None,
                 transcribe_audio: bool | str | None) -> _Input:
        info, audio_source, duration = self._probe(source, audio)
        mode = _transcribe_mode(transcribe_audio, self.options.transcribe)
        check_text_inputs(transcript, text, mode)
        words: Words
        if isinstance(transcript, list):
            words = GivenWords(transcript)
        elif transcript is not None:
            words = GivenWords(read_transcript(transcript))
        elif text is not None:
            words = GivenWords(from_text(text))
        else:
            words = self._speech_words(audio_source, mode)
        return _Input(source, info, audio_source, audio is not None, duration, words)

    def _speech_words(self, audio_source: Source | None, mode: str) -> Words:
        """The words of the input's speech as `mode` says: recognised while the windows are
        analysed, or none and why. A missing model is an error only when mode is "on"."""
        if mode == "off":
            return NoWords("transcription is off")
        if "text" not in self.modalities:
            if mode == "on":
                raise AnalysisError("transcribe is 'on' but the text modality is not analysed "
                                    f"(modalities: {', '.join(self.modalities)})")
            return NoWords("the text modality is not analysed")
        if audio_source is None:
            if mode == "on":
                raise AnalysisError("cannot transcribe: the input has no audio")
            return NoWords("the input has no audio")
        try:
            transcriber = self.transcriber(allow_download=mode == "on")
        except TranscriptionUnavailable as exc:
            if mode == "on":
                raise
            return NoWords(f"no ASR model available offline ({exc})")
        return LiveTranscript(transcriber, audio_source)

    def transcriber(self, *, allow_download: bool = False) -> Transcriber:
        """This Analyzer's Transcriber, resolved (and its model loaded) on first use; raises
        TranscriptionUnavailable when no model is found (downloads only if `allow_download`)."""
        found = self._transcribers.get(allow_download) or self._transcribers.get(False)
        if found is None:
            found = Transcriber(allow_download=allow_download).load()
            self._transcribers[allow_download] = found
        return found

    def model_runtime(self) -> dict[str, str]:
        """How the model ran, for the JSON's `model`: `backend` ("torch", "onnx" or "seed"), and
        `precision` ("fp32" or "int8") for ONNX."""
        runtime = {"backend": str(getattr(self.model, "backend", "torch"))}
        precision = getattr(self.model, "precision", None)
        if runtime["backend"] == "onnx" and precision is not None:
            runtime["precision"] = str(precision)
        return runtime

    def _segments(self, given: _Input, progress: ProgressCallback | None, progress_steps: int | None,
                  face_observations: list[FaceObservation] | None, ended: dict[str, Any]) -> Iterator[Segment]:
        """Segments block by block. When every stream read has ended before the duration the
        headers claimed, the windows past that end are dropped and `ended["duration"]` says where.
        Once every window is done, `ended["people"]` holds (the people listed, how many were left out)."""
        use_face = "face" in self.modalities and given.info.has_video
        use_voice = "voice" in self.modalities and given.audio is not None
        use_text = "text" in self.modalities and given.words.has_words()
        windows = make_windows(given.duration, self.window, self.hop)
        reader = AudioWindowReader(given.audio) if use_voice else None
        run = None
        try:
            if use_text:
                given.words.start()  # recognition runs beside the face and voice paths
            given.calibration = calibrate_voice(self.model, windows, given.audio if use_voice else None,
                                                self.min_speech_fraction, self.options.calibrate,
                                                voice_analysed="voice" in self.modalities)
            run = self.runner.start(given.source, given.info, given.duration, windows, use_face=use_face, reader=reader,
                                    words=given.words if use_text else None,
                                    face_observations=face_observations, calibration=given.calibration)
            if progress:
                progress(0, len(windows))
            size = self.block_windows
            if progress_steps:
                size = max(MIN_PROGRESS_BLOCK, min(size, math.ceil(len(windows) / progress_steps)))
            for block_start in range(0, len(windows), size):
                block = windows[block_start : block_start + size]
                out = run.segments_for(block)
                done = block_start + len(block)
                end = _decoded_end([*run.stream_ends, *([reader.end] if reader is not None else [])])
                if end is not None and done < len(windows) and windows[done].start >= end:
                    # every stream read has ended (the headers claimed more): later windows would be empty
                    windows = [w for w in windows[:done] if w.start < end]
                    out = out[: max(0, len(windows) - block_start)]
                    ended["duration"] = windows[-1].end if windows else 0.0
                yield from out
                if progress:
                    progress(min(len(windows), done), len(windows))
                if done >= len(windows):
                    break
            ended["people"] = run.people()
        finally:
            given.words.close()
            if reader is not None:
                reader.close()
            if run is not None:
                run.close()

    def _probe(self, source: Source, audio: Source | None) -> tuple[MediaInfo, Source | None, float]:
        """The input's media info, where its audio comes from (None: no audio) and the duration analysed."""
        info = probe(source)
        audio_source: Source | None = source if info.has_audio else None
        audio_info: MediaInfo | None = info if info.has_audio else None
        if audio is not None:
            try:
                audio_info = probe(audio)
            except MediaError as exc:
                raise ExternalAudioError(str(exc)) from None
            if not audio_info.has_audio:
                raise MediaError("the --audio file has no audio stream")
            audio_source = audio
        return info, audio_source, max(info.duration, audio_info.duration if audio_info else 0.0)


def _known_fields(fields: dict[str, Any]) -> dict[str, Any]:
    """Keyword options as AnalysisOptions fields (None: the default); TypeError for other keywords."""
    from ..options import OPTION_NAMES

    unknown = [k for k in fields if k not in OPTION_NAMES]
    if unknown:
        raise TypeError(f"Analyzer() got an unexpected keyword argument {unknown[0]!r}")
    chosen = {k: v for k, v in fields.items() if v is not None}
    if "modalities" in chosen and not isinstance(chosen["modalities"], str):
        chosen["modalities"] = tuple(chosen["modalities"])
    return chosen


def _transcribe_mode(override: bool | str | None, default: str) -> str:
    """The transcribe mode for one input: the override (True "on", False "off") or the options'."""
    if override is None:
        return default
    if isinstance(override, bool):
        return "on" if override else "off"
    return check_transcribe(override)


def _decoded_end(ends: list[float | None]) -> float | None:
    """Where the media read ended (seconds) once every stream read has reached its end; None
    while one has not, or when none is read (text alone)."""
    if not ends or None in ends:
        return None
    return max(e for e in ends if e is not None)
