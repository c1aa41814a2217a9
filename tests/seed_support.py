"""A tiny multimodal recipe (r3d18 video + mel_cnn audio) on a generated aligned dataset, for tests."""

from __future__ import annotations

import json
from pathlib import Path

from emofusion.data.aligned import ALIGNED_LABELS


def multimodal_recipe(path: Path, data: Path, *, fusion: str = "xattn", modalities: str = '["video", "audio"]',
                      name: str = "mm-test", val_speaker: str = "spk02", modality_dropout: float = 0.2,
                      epochs: int = 2, batch_size: int = 4) -> Path:
    """Write the recipe to `path` for the aligned dataset under `data` (its manifest.csv); returns `path`."""
    path.write_text(f"""
name = "{name}"
task = "multimodal"
[data]
sources = [{{ dataset = "manifest", root = "{data}/manifest.csv" }}]
val_speakers = ["{val_speaker}"]
[model]
labels = {json.dumps(list(ALIGNED_LABELS))}
modalities = {modalities}
preprocess = {{ frames = 4, size = 16, audio_seconds = 0.5 }}
heads = {{ emotion = 4 }}
fusion = {{ type = "{fusion}", dim = 8, heads = 2, modality_dropout = {modality_dropout} }}
[model.encoders.video]
type = "r3d18"
config = {{ width = 4 }}
proj_dim = 8
[model.encoders.audio]
type = "mel_cnn"
config = {{ channels = [4, 8], dim = 8 }}
[optim]
epochs = {epochs}
batch_size = {batch_size}
lr = 0.003
balance = "none"
""")
    return path
