"""One analysis, in the order it happens:

    windows.py   the input cut into windows of time (and the frames and words each one holds)
    face.py      face path: sampled frames -> detection + crop -> face net -> per-window mean
    voice.py     voice path: window audio -> speech gate -> log-mel -> voice net
    text.py      text path: overlapping transcript -> sentence encoder + heads
    late.py      the three paths of a late-fusion model, fused per window (fusion.py)
    joint.py     one seed network over each window's frames, audio and words
    fusion.py    per-window fusion and the input's summary
    results.py   typed results (float arrays, rounded only in their JSON form)
    analyzer.py  the Analyzer: chooses the runner once and drives it over blocks of windows
    threads.py   how the nets share the cores with the face path's worker threads
"""

from .analyzer import Analyzer, ProgressCallback
from .face import FaceObservation
from .results import Analysis, FaceResult, Segment, Summary, TextResult, Verdict, VoiceResult
from .windows import Window, frame_times, make_windows

__all__ = ["Analysis", "Analyzer", "FaceObservation", "FaceResult", "ProgressCallback", "Segment", "Summary",
           "TextResult", "Verdict", "VoiceResult", "Window", "frame_times", "make_windows"]
