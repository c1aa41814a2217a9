"""One input, the same code in this process, in a worker process and in a Ray actor."""

from __future__ import annotations

import json
import os
from typing import Any, Optional

from ..errors import EmofusionError, ExternalAudioError
from ..models.loading import load_model
from ..options import AnalysisOptions
from .output import error_line


def make_analyzer(model: Any, options: dict[str, Any], backend: str = "auto", precision: Optional[str] = None,
                  threads: Optional[int] = None):
    """An Analyzer for `model` (a name, folder or loaded model) with options (`AnalysisOptions.to_dict()`)."""
    from ..analysis import Analyzer

    return Analyzer(load_model(model, backend, precision=precision, threads=threads, load_text_encoder=False),
                    options=AnalysisOptions.from_mapping(options))


def observe_task(analyzer, task: dict[str, Any]) -> Optional[list]:
    """The decode stage of one task (`Analyzer.observe_faces`), or None when it cannot be done
    here: the model stage then analyses the input whole and reports its error as usual."""
    path = task.get("path")
    try:
        if not path or not os.path.exists(path):
            return None
        return analyzer.observe_faces(path, audio=task.get("audio") or None)
    except Exception:  # the same failure comes back, with its error line, from analyze_task
        return None


def analyze_task(analyzer, task: dict[str, Any], face_observations: Optional[list] = None) -> tuple[bool, str]:
    """Analyse one task (BatchItem.task()) -> (ok, the JSON line). Never raises for a bad input."""
    key = task["input"]
    path, audio, transcript = task.get("path"), task.get("audio"), task.get("transcript")
    try:
        if not path or not os.path.exists(path):
            return False, error_line(key, "not_found", "no such file")
        if audio and not os.path.exists(audio):
            return False, error_line(key, "not_found", f"audio file {audio}: no such file")
        if transcript and not os.path.exists(transcript):
            return False, error_line(key, "not_found", f"transcript {transcript}: no such file")
        analysis = analyzer.analyze(path, audio=audio or None, transcript=transcript or None,
                                    text=task.get("text") or None, face_observations=face_observations)
    except ExternalAudioError as exc:
        return False, error_line(key, exc.code, f"audio file {audio}: {exc}")
    except EmofusionError as exc:
        return False, error_line(key, exc.code, str(exc))
    except Exception as exc:  # one input must never stop the run
        return False, error_line(key, "internal_error", f"{type(exc).__name__}: {exc}")
    return True, json.dumps({"input": key, **analysis.to_dict()})


def limit_threads() -> None:
    """Torch and OpenCV on one thread each in this process (a worker or an actor is one core)."""
    import torch

    torch.set_num_threads(1)
    try:
        import cv2

        cv2.setNumThreads(1)
    except Exception:  # OpenCV without threading support
        pass
