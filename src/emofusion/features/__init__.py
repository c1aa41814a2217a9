"""Preprocessing shared by training and inference: the log-mel, acoustic functionals, the face
crop, dialogue context and fitting audio to a length.

Training code and the analysis pipeline both call these functions and nothing else, so
the two cannot drift apart. Their parameters travel in each model's config. One module per
thing made: `mel`, `functionals` (with `opensmile`), `audio`, `face`, `text`.
"""

from .audio import fit_length, rms_dbfs, speech_fraction
from .face import FaceConfig, align_face, crop_face, eye_framed, load_face_images, normalize_faces
from .functionals import (ACOUSTIC_FEATURE_SETS, SPECTRAL_DIM, SPECTRAL_SET, acoustic_functionals, matmul_in_torch,
                          spectral_band_level_columns, spectral_functionals)
from .mel import SAMPLE_RATE, MelConfig, log_mel, mel_filterbank, num_mel_frames, power_spectrogram
from .opensmile import OPENSMILE_FEATURE_SETS, AcousticFeaturesUnavailable
from .text import dialogue_contexts

__all__ = [
    "ACOUSTIC_FEATURE_SETS",
    "AcousticFeaturesUnavailable",
    "FaceConfig",
    "MelConfig",
    "OPENSMILE_FEATURE_SETS",
    "SAMPLE_RATE",
    "SPECTRAL_DIM",
    "SPECTRAL_SET",
    "acoustic_functionals",
    "align_face",
    "crop_face",
    "eye_framed",
    "dialogue_contexts",
    "fit_length",
    "load_face_images",
    "log_mel",
    "matmul_in_torch",
    "mel_filterbank",
    "normalize_faces",
    "num_mel_frames",
    "power_spectrogram",
    "rms_dbfs",
    "spectral_band_level_columns",
    "spectral_functionals",
    "speech_fraction",
]
