"""Tasks: what each modality trains on, how batches are made, and how a model is scored.

A task owns its data (decoded once into a feature cache), its augmentation, its loss and
its validation predictions; the loop in `loop.py` is the same for all of them.
"""

from __future__ import annotations

from .base import Task, _cache_key
from .face import FaceTask
from .text import TextBatch, TextFinetune, TextTask, top_layer_tensors
from .voice import VoiceTask

TASKS: dict[str, type[Task]] = {"face": FaceTask, "voice": VoiceTask, "text": TextTask}

__all__ = ["TASKS", "FaceTask", "Task", "TextBatch", "TextFinetune", "TextTask", "VoiceTask", "_cache_key",
           "top_layer_tensors"]
