"""emofusion: emotion in video from the face, the voice and the words, fused over time."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["Analyzer", "Analysis", "AnalysisOptions", "EmofusionError", "load_model", "__version__"]


def __getattr__(name: str):
    # Lazy so that `import emofusion` (and the CLI's start) stays cheap.
    if name in ("Analyzer", "Analysis"):
        from . import analysis

        return getattr(analysis, name)
    if name == "AnalysisOptions":
        from .options import AnalysisOptions

        return AnalysisOptions
    if name == "EmofusionError":
        from .errors import EmofusionError

        return EmofusionError
    if name == "load_model":
        from .models import load_model

        return load_model
    raise AttributeError(name)
